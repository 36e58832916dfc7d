"""bench.py: each mode runs on a tiny CPU configuration and writes what it claims to measure."""
import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import bench

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--device=cpu"]


def test_train_mode(tmp_path, monkeypatch):
    """Checked against what the steps really did: the calls, the tokens of each step's batches, the
    wall-clock time, a by-hand FLOP count. Bugs caught: tokens without grad_accum, a warm-up step
    timed, MFU from the wrong FLOPs."""
    import train
    calls = []
    step_once = train.train_step

    def counted(model, raw, optimizers, scaler, batches, step, cfg, **kw):
        calls.append(sum(batches.get(step, m, 0)[0].numel() for m in range(cfg.grad_accum)))
        return step_once(model, raw, optimizers, scaler, batches, step, cfg, **kw)

    monkeypatch.setattr(train, "train_step", counted)
    monkeypatch.setattr(train, "peak_flops", lambda device: 1e12)  # a made-up accelerator, so that MFU shows
    out = tmp_path / "b.json"
    t0 = time.perf_counter()
    assert bench.main(["--mode=train", *TINY, "--batch_size=4", "--grad_accum=2", "--steps=3", "--warmup=1",
                       "--vocab_size=50", f"--json={out}"]) == 0
    wall = time.perf_counter() - t0
    r = json.loads(out.read_text())
    assert calls == [4 * 2 * 16] * 4  # 1 warm-up + 3 timed steps of 2 micro-batches of 4 x 16 tokens
    assert r["steps"] == 3 and r["ms_min"] <= r["ms_per_step"] <= r["ms_max"] and 3 * r["ms_min"] / 1000 < wall
    assert r["tokens_per_s"] * r["ms_per_step"] / 1000 == pytest.approx(calls[-1])
    C, V, T = 32, 50, 16  # bench's GPT-2 shape: no biases, learned positions
    n = (12 * C * C + 2 * C) + C + V * C  # one block, ln_f, the tied embedding; not the position table
    assert r["mfu"] * 1e12 / r["tokens_per_s"] == pytest.approx(6 * n + 12 * 1 * T * C)  # 6 N + 12 L T C
    assert r["params"] == n + T * C and r["compile"] is False


def test_train_mode_profile(tmp_path):
    out = tmp_path / "p.json"
    assert bench.main(["--mode=train", *TINY, "--batch_size=4", "--steps=1", "--warmup=1", "--vocab_size=50",
                       "--profile=true", f"--json={out}"]) == 0
    prof = json.loads(out.read_text())["profile"]
    assert prof and all(p["ms_per_step"] >= 0 and 0 <= p["share"] <= 1 for p in prof)
    assert any("addmm" in p["name"] or "mm" in p["name"] for p in prof)  # the matrix products show up
    assert [p["ms_per_step"] for p in prof] == sorted((p["ms_per_step"] for p in prof), reverse=True)


def test_matmul_mode(tmp_path):
    out = tmp_path / "m.json"
    assert bench.main(["--mode=matmul", *TINY, "--n_layer=2", "--batch_size=4", "--steps=2", "--warmup=1",
                       "--vocab_size=48", f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    rows = {row["layer"]: row for row in r["rows"]}
    assert set(rows) == {"c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "lm_head"}
    assert (rows["c_attn"]["M"], rows["c_attn"]["K"], rows["c_attn"]["N"], rows["c_attn"]["per_step"]) == (64, 32, 96, 2)
    assert (rows["lm_head"]["N"], rows["lm_head"]["per_step"]) == (48, 1)
    assert r["per_step_ms"] == pytest.approx(sum(row["ms"] * row["per_step"] for row in r["rows"]))
    assert r["per_step_fp8_ms"] == pytest.approx(sum(row["fp8_ms"] * row["per_step"] for row in r["rows"]))


def test_generate_mode(tmp_path, tiny_data):
    out = tmp_path / "g.json"
    assert bench.main([f"--json={out}", "--mode=generate", "--dataset=shakespeare_char", f"--data_dir={tiny_data}",
                       *TINY, "--max_new_tokens=40", "--repeats=1", "--batch_n=3"]) == 0
    rows = {(r["kind"], r["batch"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("kv_cache", 1), ("kv_cache", 3), ("no_cache", 1), ("no_cache", 3)}
    assert rows[("kv_cache", 1)]["dtype"] == "bfloat16"  # one CPU sample: bf16 (memory-bound)
    assert rows[("kv_cache", 3)]["dtype"] == "float32"


def test_time_to_loss_mode(tmp_path, tiny_data):
    out = tmp_path / "t.json"
    args = ["--dataset=shakespeare_char", f"--data_dir={tiny_data}", *TINY, "--batch_size=8", "--max_iters=200",
            "--warmup_iters=5", "--eval_interval=10", "--learning_rate=3e-3"]
    assert bench.main(["--mode=time_to_loss", "--target=3.2", f"--json={out}", *args]) == 0
    r = json.loads(out.read_text())
    assert r["reached"] and r["val_loss"] <= 3.2 and r["step"] < 200
    assert 0 < r["seconds_to_target"] <= r["wall_s"]
    # the start-up breakdown: imports (an interpreter's start costs well over 0.1 s), then train.py's
    # stages, which together end before the target is reached
    stages = r["startup_s"]
    assert list(stages) == ["imports", "device", "data", "model", "parallelize", "optimizers", "first_step"]
    assert stages["imports"] > 0.1 and all(v >= 0 for v in stages.values())
    assert sum(stages.values()) < r["seconds_to_target"]


def test_bad_mode():
    assert bench.main(["--mode=fast"]) == 1


def test_attention_mode(tmp_path, monkeypatch):
    """Each length gets batch_size x block_size tokens and both kernels, timed on what they claim:
    the manual kernel really is model.manual_attention (a swapped-in fake shows in its time).
    Bugs caught: a batch that does not shrink with T, the two kernels' times swapped."""
    import model
    real = model.manual_attention

    def slow(*a, **kw):
        time.sleep(0.02)
        return real(*a, **kw)

    monkeypatch.setattr(model, "manual_attention", slow)
    out = tmp_path / "a.json"
    assert bench.main(["--mode=attention", *TINY, "--batch_size=4", "--steps=2", "--warmup=1", "--vocab_size=50",
                       "--lengths=8,16,32", f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    assert [(row["T"], row["batch"]) for row in r["rows"]] == [(8, 8), (16, 4), (32, 2)]
    assert all(row["manual_ms"] > 20 > row["sdpa_ms"] for row in r["rows"])
    assert all(row["speedup"] == pytest.approx(row["manual_ms"] / row["sdpa_ms"]) for row in r["rows"])


class Clock:
    """Stands in for bench's time module: the clock moves only when a fake step moves it."""

    def __init__(self):
        self.t = 1000.0

    def perf_counter(self):
        return self.t

    def time(self):
        return self.t

    def strftime(self, fmt):
        return time.strftime(fmt)


def test_build_vocabulary_and_seed(monkeypatch):
    """Without a config file the vocabulary is GPT-2's padded one (50304); with one, the data set's,
    padded as train.py pads it (1500 -> 1536); --vocab_size wins over both; the same seed gives
    the same weights. Catches: a config file among --keys not recognised, the data set's vocabulary
    left unpadded, GPT-2's 50257 unpadded, the model's initialisation left unseeded."""
    import train
    monkeypatch.setattr(train, "load_data",
                        lambda cfg, quiet: SimpleNamespace(meta={"vocab_size": 1500}))
    config = str(Path(bench.__file__).with_name("config") / "shakespeare_cpu.py")

    def model(*argv):
        opts, rest = bench.split_args(list(argv))
        return bench.build(rest, opts)[1]

    assert model(*TINY).config.vocab_size == 50304
    assert model(config, *TINY).config.vocab_size == 1536
    assert model(config, *TINY, "--vocab_size=50").config.vocab_size == 50
    a, b = model(*TINY, "--vocab_size=50"), model(*TINY, "--vocab_size=50")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_median_ms_times_only_the_steps_after_the_warmup(monkeypatch):
    """warmup untimed calls, then the median of steps timed ones. Catches: a warm-up call timed, or
    the warm-up calls taken out of the timed ones."""
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)
    seconds = [0.5, 0.5, 0.001, 0.003, 0.002]
    calls = []

    def fn():
        clock.t += seconds[len(calls)]
        calls.append(1)

    assert bench.median_ms(fn, torch.device("cpu"), warmup=2, steps=3) == pytest.approx(2.0)
    assert len(calls) == 5


def fake_train_steps(monkeypatch, seconds):
    """train.train_step replaced by a step that only moves bench's clock by seconds[step]."""
    import train
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)

    def step(model, raw, optimizers, scaler, batches, step, cfg, **kw):
        clock.t += seconds[step]

    monkeypatch.setattr(train, "train_step", step)
    return clock


def test_train_mode_reports_the_median_step(tmp_path, monkeypatch):
    """ms_per_step is the median of the timed steps (one slow step does not move it), tokens/s
    follows from it, and the warm-up's time is reported apart. Catches: the mean in place of the
    median."""
    fake_train_steps(monkeypatch, {0: 2.0, 1: 0.010, 2: 0.050, 3: 0.020})  # 1 warm-up, 3 timed
    out = tmp_path / "b.json"
    assert bench.main(["--mode=train", *TINY, "--batch_size=4", "--grad_accum=2", "--steps=3",
                       "--warmup=1", "--vocab_size=50", f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    assert (r["ms_per_step"], r["ms_min"], r["ms_max"]) == pytest.approx((20, 10, 50))
    assert r["tokens_per_s"] == pytest.approx(4 * 2 * 16 / 0.020)
    assert r["warmup_s"] == pytest.approx(2.0)


def test_profile_per_step_times_and_shares(monkeypatch):
    """The profile's times are per step and its shares parts of one whole. Catches: times summed
    over the n steps, shares relative to the largest entry (adding up to more than 1)."""
    import train

    def step(*a, **kw):
        with torch.profiler.record_function("one_step"):
            time.sleep(0.01)
            torch.ones(64, 64) @ torch.ones(64, 64)

    monkeypatch.setattr(train, "train_step", step)
    prof = bench.profile_steps(*[None] * 8, torch.device("cpu"), first=0, n=5)
    [one] = [p for p in prof if p["name"] == "one_step"]
    # 45: a loaded machine's margin, still below the 50 ms of 10 ms summed over the 5 steps
    assert one["calls_per_step"] == 1 and 10 <= one["ms_per_step"] < 45
    assert sum(p["share"] for p in prof) <= 1 + 1e-9


def test_the_cacheless_reference_decodes_greedily_past_the_context():
    """generate_without_cache gives model.generate's greedy tokens, past block_size with learned
    positions. Catches: the text not cropped to the context, the argmax taken at the wrong
    position."""
    from model import Transformer, TransformerConfig
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2,
                                          n_embd=16, pos_encoding="learned")).eval()
    prompt = torch.randint(50, (2, 3))
    with torch.no_grad():
        want = model.generate(prompt, 12, temperature=0)
        assert torch.equal(bench.generate_without_cache(model, prompt, 12), want)


def fake_generation(monkeypatch, seconds):
    """model.generate and the cache-less loop replaced by fakes that move bench's clock by the next
    of seconds[kind, batch] and record (kind, prompt shape, new tokens, temperature)."""
    import model as model_module
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)
    seen = []

    def run(kind, idx, n, temperature):
        seen.append((kind, tuple(idx.shape), n, temperature))
        clock.t += seconds[kind, idx.shape[0]].pop(0)
        return idx

    monkeypatch.setattr(model_module.Transformer, "generate",
                        lambda self, idx, n, temperature, compile: run("kv_cache", idx, n,
                                                                       temperature))
    monkeypatch.setattr(bench, "generate_without_cache",
                        lambda model, idx, n: run("no_cache", idx, n, 0))
    return seen


def test_generate_mode_times_each_setting(tmp_path, monkeypatch):
    """Each setting decodes greedily at its batch size: one untimed first run, then repeats timed
    runs, whose median gives tokens/s for the whole batch; a reference run that would take over
    two minutes in all is timed once. Catches: the batch size not used, a repeat missing, the
    first run in the median, tokens/s of one sequence, the slow-reference test inverted."""
    monkeypatch.chdir(tmp_path)  # no checkpoint here: random weights
    seconds = {("kv_cache", 1): [4.0, 0.2, 0.1, 0.3], ("kv_cache", 3): [4.0, 0.3, 0.3, 0.9],
               ("no_cache", 1): [50.0], ("no_cache", 3): [2.0, 1.0, 1.0, 1.0]}
    seen = fake_generation(monkeypatch, seconds)
    out = tmp_path / "g.json"
    assert bench.main(["--mode=generate", *TINY, "--vocab_size=50", "--max_new_tokens=10",
                       "--repeats=3", "--batch_n=3", f"--json={out}"]) == 0
    assert all(left == [] for left in seconds.values())
    assert {(shape, n, t) for _, shape, n, t in seen} == {((1, 1), 10, 0), ((3, 1), 10, 0)}
    rows = {(r["kind"], r["batch"]): r for r in json.loads(out.read_text())["rows"]}
    want = {("kv_cache", 1): (4.0, 10 / 0.2), ("kv_cache", 3): (4.0, 30 / 0.3),
            ("no_cache", 1): (50.0, 10 / 50), ("no_cache", 3): (2.0, 30 / 1.0)}
    for key, (first_s, tokens_per_s) in want.items():
        row = rows[key]
        assert (row["first_s"], row["tokens_per_s"]) == pytest.approx((first_s, tokens_per_s)), key
        assert row["first_tokens_per_s"] == pytest.approx(key[1] * 10 / first_s), key


def fake_training(clock, returncode=0, losses=(3.5, 3.25, 3.0)):
    """subprocess.run for train.py: writes the log a run would write, with evaluations at steps
    10, 20, 30 (10, 20, 30 s after launch) of the given val losses, and takes 40 s."""
    commands = []

    def run(cmd, capture_output, text):
        commands.append(cmd)
        out = Path(next(a for a in cmd if a.startswith("--out_dir=")).split("=", 1)[1])
        out.mkdir(parents=True)
        records = [{"kind": "startup", "step": 0, "unix_start": 1000.5, "time": 1.0,
                    "stages_s": {"device": 0.25, "data": 0.5}},
                   {"kind": "train", "step": 5, "loss": 3.6}]
        records += [{"kind": "eval", "step": 10 * k, "loss": loss, "unix_time": 1000.0 + 10 * k,
                     "time": 10.0 * k - 1} for k, loss in enumerate(losses, 1)]
        (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        clock.t += 40
        return subprocess.CompletedProcess(cmd, returncode, stdout="training\n", stderr="oops\n")

    return commands, run


def test_time_to_loss_reads_the_first_evaluation_at_the_target(tmp_path, monkeypatch, capsys):
    """The target is reached by the first evaluation at or below it (equality counts), timed from
    launch; the best loss is the lowest; train.py is told to stop there, into a fresh directory;
    a failed training is an error line. Catches: equality not counting, the time measured from
    the start of training, the highest loss as the best, --stop_at_loss not passed, a failure
    raised as a traceback."""
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)
    commands, run = fake_training(clock)
    monkeypatch.setattr(bench, "subprocess", SimpleNamespace(run=run))
    out = tmp_path / "t.json"
    assert bench.main(["--mode=time_to_loss", "--target=3.25", f"--json={out}", *TINY]) == 0
    r = json.loads(out.read_text())
    assert (r["reached"], r["step"], r["val_loss"]) == (True, 20, 3.25)
    assert (r["seconds_to_target"], r["time_in_train_s"], r["wall_s"]) == (20.0, 19.0, 40.0)
    assert r["best_val_loss"] == 3.0
    assert r["startup_s"] == {"imports": 0.5, "device": 0.25, "data": 0.5}
    [cmd] = commands
    assert cmd[2:2 + len(TINY)] == TINY and cmd[-3] == "--stop_at_loss=3.25"
    assert cmd[-2].startswith("--out_dir=") and cmd[-1] == "--overwrite=true"

    _, run = fake_training(clock, returncode=1)
    monkeypatch.setattr(bench, "subprocess", SimpleNamespace(run=run))
    assert bench.main(["--mode=time_to_loss", "--target=3.25", f"--json={out}", *TINY]) == 1
    assert "error: training failed" in capsys.readouterr().err


def test_matmul_mode_shapes_and_flops_of_every_layer(tmp_path):
    """Every layer's product shape and count per step, the MLP's width from mlp_ratio, and
    TFLOP/s from the three products (forward, two backward). Catches: a width of 4 x n_embd
    assumed, a per-layer product counted once, the FLOPs of the forward product alone."""
    out = tmp_path / "m.json"
    assert bench.main(["--mode=matmul", *TINY, "--n_layer=3", "--mlp_ratio=2", "--batch_size=2",
                       "--steps=1", "--warmup=0", "--vocab_size=48", f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    M = 2 * 16
    assert {row["layer"]: (row["M"], row["K"], row["N"], row["per_step"]) for row in r["rows"]} == {
        "c_attn": (M, 32, 96, 3), "attn.c_proj": (M, 32, 32, 3), "mlp.c_fc": (M, 32, 64, 3),
        "mlp.c_proj": (M, 64, 32, 3), "lm_head": (M, 32, 48, 1)}
    for row in r["rows"]:
        flop = 3 * 2 * row["M"] * row["K"] * row["N"]
        assert row["tflops"] == pytest.approx(flop / row["ms"] / 1e9)
        assert row["fp8_tflops"] == pytest.approx(flop / row["fp8_ms"] / 1e9)


def test_attention_mode_batch_of_at_least_one_and_default_output(tmp_path, monkeypatch):
    """A length longer than batch_size x block_size still runs, at batch 1; without --json the
    results go to bench_attention.json, with the command line. Catches: batch 0 at that length,
    another default file name."""
    monkeypatch.chdir(tmp_path)
    argv = ["--mode=attention", *TINY, "--batch_size=2", "--steps=1", "--warmup=0",
            "--vocab_size=50", "--lengths=16,64"]
    assert bench.main(argv) == 0
    r = json.loads((tmp_path / "bench_attention.json").read_text())
    assert [(row["T"], row["batch"]) for row in r["rows"]] == [(16, 2), (64, 1)]
    assert r["argv"] == argv


@pytest.mark.parametrize("stop, says", [
    (["--max_iters=0", "--warmup_iters=0"], "logged no step"),
    (["--max_iters=20", "--warmup_iters=2", "--stop_after=3"], "before its first evaluation")])
def test_time_to_loss_of_a_run_that_never_evaluates_is_an_error_line(tmp_path, tiny_data, stop,
                                                                     says, capsys):
    """A training that takes no step (no log at all) or stops before its first evaluation has
    nothing to time: an error line that says so, not a traceback (FileNotFoundError on the log,
    min() of no evaluations)."""
    args = ["--dataset=shakespeare_char", f"--data_dir={tiny_data}", *TINY, "--batch_size=4",
            "--eval_interval=10", *stop]
    assert bench.main(["--mode=time_to_loss", "--target=1.0", f"--json={tmp_path / 't.json'}",
                       *args]) == 1
    err = capsys.readouterr().err
    assert "error: training" in err and says in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()


# ---- mutation sweep 2026-12-07f ---------------------------------------------------------------


def test_median_ms_is_the_median_not_the_mean(monkeypatch):
    """Timed calls of 1, 3 and 11 ms: the median is 3 ms, the mean 5. Catches: the mean (the
    median test above has a mean equal to its median)."""
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)
    seconds = iter([0.001, 0.003, 0.011])

    def fn():
        clock.t += next(seconds)

    assert bench.median_ms(fn, torch.device("cpu"), warmup=0, steps=3) == pytest.approx(3.0)


def test_train_mode_min_and_max_are_over_all_timed_steps(tmp_path, monkeypatch):
    """ms_min and ms_max are the fastest and slowest timed steps wherever they fall, and the median
    of an even count is the middle pair's mean. Catches: the first timed step as the minimum, the
    last as the maximum."""
    fake_train_steps(monkeypatch, {0: 2.0, 1: 0.030, 2: 0.050, 3: 0.010, 4: 0.020})
    out = tmp_path / "b.json"
    assert bench.main(["--mode=train", *TINY, "--batch_size=4", "--steps=4", "--warmup=1",
                       "--vocab_size=50", f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    assert (r["ms_per_step"], r["ms_min"], r["ms_max"]) == pytest.approx((25, 10, 50))


def test_generate_mode_names_the_checkpoint_it_timed(tmp_path, monkeypatch):
    """With out_dir/ckpt_best.pt present, the trained model is timed and the JSON names its file.
    Catches: 'random weights' reported for a loaded checkpoint."""
    import checkpoint
    from model import Transformer, TransformerConfig
    (tmp_path / "ckpt_best.pt").write_bytes(b"")
    small = Transformer(TransformerConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2,
                                          n_embd=8))
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: {"path": path})
    monkeypatch.setattr(checkpoint, "model_from_checkpoint", lambda ckpt, dropout: small)
    fake_generation(monkeypatch, {("kv_cache", 1): [1.0, 1.0], ("kv_cache", 2): [1.0, 1.0]})
    out = tmp_path / "g.json"
    assert bench.main(["--mode=generate", *TINY, "--vocab_size=50", f"--out_dir={tmp_path}",
                       "--max_new_tokens=4", "--repeats=1", "--batch_n=2", "--no_cache=false",
                       f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    assert r["weights"] == str(tmp_path / "ckpt_best.pt") and r["params"] == small.num_params()


def test_time_to_loss_best_loss_and_a_target_not_reached(tmp_path, monkeypatch):
    """The best val loss is the lowest evaluation, not the last; a target never reached is
    reported as such, with no time or step. Catches: the last evaluation as the best, a target
    reported reached by a later, worse evaluation."""
    clock = Clock()
    monkeypatch.setattr(bench, "time", clock)
    out = tmp_path / "t.json"
    for target, reached in ((3.1, (True, 20, 20.0)), (2.5, (False, None, None))):
        _, run = fake_training(clock, losses=(3.5, 3.0, 3.25))
        monkeypatch.setattr(bench, "subprocess", SimpleNamespace(run=run))
        assert bench.main(["--mode=time_to_loss", f"--target={target}", f"--json={out}",
                           *TINY]) == 0
        r = json.loads(out.read_text())
        assert (r["reached"], r["step"], r["seconds_to_target"]) == reached
        assert r["best_val_loss"] == 3.0


def test_attention_mode_times_causal_attention_of_the_head_shape(tmp_path, monkeypatch):
    """Both kernels get (batch, n_head, T, head_dim) inputs and causal attention, each kernel's
    first call starts without gradients left by the other, the row names the shape, and the JSON
    ends in a newline. Catches: n_embd as the head dim, a non-causal sdpa or manual kernel, the
    gradients carried from one kernel to the next, the file's last line unterminated."""
    import model
    calls = []
    functional = torch.nn.functional
    real_manual, real_sdpa = model.manual_attention, functional.scaled_dot_product_attention

    def spy(name, real, causal_key):
        def attend(q, k, v, **kw):
            calls.append((name, tuple(q.shape), kw.get(causal_key), q.grad is None))
            return real(q, k, v, **kw)
        return attend

    monkeypatch.setattr(model, "manual_attention", spy("manual", real_manual, "causal"))
    monkeypatch.setattr(functional, "scaled_dot_product_attention",
                        spy("sdpa", real_sdpa, "is_causal"))
    out = tmp_path / "a.json"
    assert bench.main(["--mode=attention", *TINY, "--batch_size=2", "--steps=1", "--warmup=1",
                       "--vocab_size=50", "--lengths=8", f"--json={out}"]) == 0
    assert calls == [("manual", (4, 2, 8, 16), True, True), ("manual", (4, 2, 8, 16), True, False),
                     ("sdpa", (4, 2, 8, 16), True, True), ("sdpa", (4, 2, 8, 16), True, False)]
    [row] = json.loads(out.read_text())["rows"]
    assert (row["n_head"], row["head_dim"]) == (2, 16)
    assert out.read_text().endswith("}\n")


def test_generate_mode_times_a_slow_reference_once_by_its_total(tmp_path, monkeypatch):
    """The cache-less reference stops after one timed run when repeats + 1 runs of it would pass
    120 s: a 35 s run with --repeats=3 (140 s in all) is run once, a 25 s one (100 s) four times.
    Bug caught: the untimed first run left out of the total (35 s x 3 = 105 s, run again)."""
    monkeypatch.chdir(tmp_path)
    seconds = {("kv_cache", 1): [1.0] * 4, ("kv_cache", 2): [1.0] * 4,
               ("no_cache", 1): [35.0], ("no_cache", 2): [25.0] * 4}
    fake_generation(monkeypatch, seconds)
    out = tmp_path / "g.json"
    assert bench.main(["--mode=generate", *TINY, "--vocab_size=50", "--max_new_tokens=10",
                       "--repeats=3", "--batch_n=2", f"--json={out}"]) == 0
    assert all(left == [] for left in seconds.values())


def test_attention_mode_a_kernel_out_of_memory_is_a_row_without_speedup(tmp_path, monkeypatch):
    """sdpa out of memory at a length: its time is None, the row has no speedup, the run goes on.
    Bug caught: the speedup computed from the manual time alone, dividing by None."""
    from torch.nn import functional

    def oom(*a, **kw):
        raise torch.OutOfMemoryError("fake")

    monkeypatch.setattr(functional, "scaled_dot_product_attention", oom)
    out = tmp_path / "a.json"
    assert bench.main(["--mode=attention", *TINY, "--batch_size=2", "--steps=1", "--warmup=0",
                       "--vocab_size=50", "--lengths=8", f"--json={out}"]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert row["sdpa_ms"] is None and row["manual_ms"] > 0 and "speedup" not in row
