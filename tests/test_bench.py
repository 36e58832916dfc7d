"""bench.py: each mode runs on a tiny CPU configuration and writes what it claims to measure."""
import json
import time

import pytest

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
