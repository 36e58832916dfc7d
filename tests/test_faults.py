"""Faults a user can run into: bad inputs at the edges, damaged or unwritable files, a run
directory's life, signals. Every one must end in one clear line (no traceback) and lose nothing."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sample
import checkpoint
import train


def config_error(*argv):
    with pytest.raises(train.ConfigError) as info:
        train.parse_args(list(argv))
    return str(info.value)


# ---- inputs at the edges -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_everywhere(value, tmp_path):
    for key in ("learning_rate", "grad_clip", "dropout", "rope_base", "stop_at_loss", "muon_momentum"):
        assert f"{key}={float(value)} (command line) is not a finite number" in config_error(f"--{key}={value}")
    conf = tmp_path / "c.py"
    conf.write_text(f"weight_decay = float('{value}')\n")
    assert "is not a finite number" in config_error(str(conf))
    with pytest.raises(sample.SampleError, match="not a finite number"):
        sample.parse_args([f"--temperature={value}"])


def test_ranges_of_keys_without_an_obvious_bound():
    text = config_error("--seed=-1", "--muon_momentum=1", "--norm_eps=0", "--out_dir=", "--data_dir= ")
    assert "seed=9223372036854775808 must be in [0, 2**63)" in config_error(f"--seed={2**63}")
    assert train.parse_args([f"--seed={2**63 - 1}"])[0].seed == 2**63 - 1  # the largest allowed
    for expected in ["seed=-1 must be in", "muon_momentum=1.0 must be in [0, 1)", "norm_eps=0.0 must be",
                     "out_dir='' is empty", "data_dir=' ' is empty"]:
        assert expected in text, expected
    with pytest.raises(sample.SampleError, match="out_dir='' is empty"):
        sample.parse_args(["--out_dir="])


def test_every_model_key_is_reported_with_the_rest():
    # an unknown data set hid the model keys, and a bad choice hid the shape errors
    text = config_error("--dataset=imagenet", "--pos_encoding=rotary", "--n_embd=30", "--n_head=4")
    for expected in ["dataset='imagenet'", "pos_encoding='rotary'", "n_embd=30 must be divisible by n_head=4"]:
        assert expected in text, expected


def test_config_file_that_does_not_parse_or_raises(tmp_path, capsys):
    broken, raising = tmp_path / "broken.py", tmp_path / "raising.py"
    broken.write_text("n_layer = 2\nx = (\n")
    raising.write_text("import math\n\nn_layer = int(math.sqrt(-1))\n")
    text = config_error(str(broken), str(raising), "--batch_size=0")
    assert f"config file {broken}, line 2:" in text and "was never closed" in text
    assert f"config file {raising}, line 3: ValueError: math domain error" in text
    assert "batch_size=0 must be >= 1" in text  # and the other problems in the same message
    assert train.main([str(raising)]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_and_cpu_float16_are_config_errors():
    assert "this machine has no CUDA GPU" in config_error("--device=cuda")
    assert "dtype='float16' on a CPU" in config_error("--device=cpu", "--dtype=float16")
    with pytest.raises(sample.SampleError, match="no CUDA GPU"):
        sample.get_device("cuda:1")


# ---- a run directory's life ----------------------------------------------------------------------

from test_train import run, tiny_args  # noqa: E402  (the tiny run of the training tests)


def test_overwrite_leaves_nothing_of_the_old_run(tiny_data, tmp_path):
    run(tiny_data, tmp_path)
    assert (tmp_path / "ckpt_best.pt").exists()
    run(tiny_data, tmp_path, "--overwrite=true", "--save_checkpoints=false", "--max_iters=3", "--seed=5")
    assert not (tmp_path / "ckpt_best.pt").exists()  # sample.py and eval_only would have used the old model
    assert checkpoint.load_checkpoint(tmp_path / "ckpt_last.pt")["step"] == 3


def test_a_fresh_run_keeps_no_line_of_the_old_log(tmp_path):
    """trim_log at step 0 (a fresh run, say with --overwrite=true) removes the whole old log, its
    step-0 evaluation too; at a resumed step it keeps that step's evaluation, not its training
    record. Bug caught: the step == 0 case left to the filter, which keeps the old run's step-0
    evaluation record in the new run's log."""
    old = [{"kind": "eval", "step": 0}, {"kind": "train", "step": 0}, {"kind": "eval", "step": 2},
           {"kind": "train", "step": 2}]
    log = tmp_path / "log.jsonl"
    for step, kept in ((2, old[:3]), (0, [])):
        log.write_text("".join(json.dumps(r) + "\n" for r in old))
        checkpoint.trim_log(tmp_path, step)
        lines = log.read_text().splitlines() if log.exists() else []
        assert [json.loads(line) for line in lines] == kept, step


def test_a_log_line_of_bytes_that_are_not_utf8_is_dropped_on_resume(tmp_path):
    """A log.jsonl line damaged into bytes that are not UTF-8 (a disk error, a crash mid-write)
    is dropped by trim_log, and the good lines kept. Bug caught: the log read without
    errors="replace": UnicodeDecodeError, and the run cannot resume."""
    good = [json.dumps({"kind": "eval", "step": 1}), json.dumps({"kind": "train", "step": 1})]
    (tmp_path / "log.jsonl").write_bytes(("\n".join(good) + "\n").encode() + b"\xff\xfe{\n")
    checkpoint.trim_log(tmp_path, 2)
    assert (tmp_path / "log.jsonl").read_text().splitlines() == good


def test_run_killed_before_its_first_checkpoint_is_no_dead_end(tiny_data, tmp_path):
    (tmp_path / "config.json").write_text("{}")  # what a run killed during its first steps leaves
    with pytest.raises(train.ConfigError) as info:
        run(tiny_data, tmp_path)
    assert "stopped before its first checkpoint" in str(info.value) and "--init_from=resume" not in str(info.value)
    with pytest.raises(checkpoint.CheckpointError, match="stopped before its first checkpoint.*--overwrite=true"):
        run(tiny_data, tmp_path, "--init_from=resume")
    run(tiny_data, tmp_path, "--overwrite=true", "--max_iters=2")


def test_resume_on_another_data_set_is_refused_before_writing(tiny_data, tmp_path, capsys):
    run(tiny_data, tmp_path, "--max_iters=2")
    before = (tmp_path / "config.json").read_bytes()
    assert train.main(tiny_args(tiny_data, tmp_path, "--init_from=resume", "--dataset=trec")) == 1
    err = capsys.readouterr().err
    assert "was trained on 'shakespeare_char', not 'trec'" in err and "Traceback" not in err
    assert (tmp_path / "config.json").read_bytes() == before


def test_second_run_in_the_same_out_dir_is_refused(tiny_data, tmp_path):
    from contextlib import ExitStack
    tmp_path.mkdir(exist_ok=True)
    with ExitStack() as earlier:  # a finished run leaves its lock file, with its pid, behind
        checkpoint.lock_out_dir(tmp_path, earlier)
    with ExitStack() as other:
        checkpoint.lock_out_dir(tmp_path, other)  # as another process's run would hold it
        # the holder's pid alone, not every pid that ever held the file
        with pytest.raises(train.ConfigError, match=rf"in use by another training run \(pid {os.getpid()}\)"):
            run(tiny_data, tmp_path)
        assert not (tmp_path / "config.json").exists()
    run(tiny_data, tmp_path, "--max_iters=2")  # released: the next run proceeds


def test_out_dir_that_cannot_be_created(tiny_data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert train.main(tiny_args(tiny_data, tmp_path / "file" / "run")) == 1
    err = capsys.readouterr().err
    assert f"cannot write to out_dir '{tmp_path / 'file' / 'run'}'" in err and "is a file" in err
    assert "Traceback" not in err


# ---- files damaged in place, writes that fail ------------------------------------------------------


def test_checkpoint_with_bytes_changed_in_place_is_refused(tiny_data, tmp_path):
    run(tiny_data, tmp_path, "--max_iters=2")
    path = tmp_path / "ckpt_last.pt"
    blob = bytearray(path.read_bytes())
    weights = checkpoint.load_checkpoint(path)["model"]["transformer.wte.weight"]
    i = blob.find(weights.numpy().tobytes()[:64])  # a weight's bytes: same size, still a valid zip
    assert i > 0
    blob[i + 3] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(checkpoint.CheckpointError, match="is damaged"):
        checkpoint.load_checkpoint(path)


@pytest.mark.parametrize("error, said", [
    (OSError(28, "No space left on device"), "No space left on device"),  # a write into the file
    (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"),
     "RuntimeError: [enforce fail"),  # torch's own zip writer
])
def test_disk_full_during_a_checkpoint(tiny_data, tmp_path, monkeypatch, capsys, error, said):
    run(tiny_data, tmp_path, "--max_iters=10")
    good = (tmp_path / "ckpt_last.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # what torch.save does when the disk fills half-way
        f.write(b"PK\x03\x04" + b"\0" * 100)
        raise error
    monkeypatch.setattr(torch, "save", full_disk)
    assert train.main(tiny_args(tiny_data, tmp_path, "--init_from=resume")) == 1
    err = capsys.readouterr().err
    assert f"cannot write checkpoint {tmp_path / 'ckpt_last.pt'}: {said}" in err
    assert "MiB free there" in err
    assert f"the last good checkpoint is {tmp_path / 'ckpt_last.pt'}" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / "ckpt_last.pt").read_bytes() == good
    monkeypatch.setattr(torch, "save", real_save)
    assert run(tiny_data, tmp_path, "--init_from=resume")["step"] == 20  # and the run goes on from there


def test_checkpoint_reaches_the_disk_before_its_rename(tmp_path, syncs):
    """The checkpoint is synced, renamed, then its directory synced (data.write_atomic). Bug caught:
    the rename before the bytes are synced (after a power cut ckpt_last.pt could be an empty file
    where the last good checkpoint was), or no directory fsync after it."""
    from types import SimpleNamespace
    from configurator import TrainConfig
    from model import TransformerConfig
    checkpoint.save_checkpoint(tmp_path / "c.pt", {}, [], None, 3, 1.0, TrainConfig(),
                               TransformerConfig(vocab_size=8), SimpleNamespace(name="x", meta={}), {})
    assert syncs == [("fsync", (tmp_path / "c.pt").stat().st_ino), ("replace", "c.pt"),
                     ("fsync", tmp_path.stat().st_ino)]
    assert checkpoint.load_checkpoint(tmp_path / "c.pt")["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_temporary_file_of_a_killed_write_is_removed(tiny_data, tmp_path):
    run(tiny_data, tmp_path, "--max_iters=10")
    (tmp_path / ".ckpt_last.pt.tmp").write_bytes(b"PK half")  # kill -9 during torch.save
    (tmp_path / "ckpt_best.pt.tmp").write_bytes(b"PK half")  # ... under its former name
    (tmp_path / ".metrics.json.tmp").write_bytes(b"{")  # ... or during data.write_atomic
    run(tiny_data, tmp_path, "--init_from=resume", "--max_iters=10")  # which writes no checkpoint
    assert not list(tmp_path.glob("*.tmp"))


def test_log_write_failure_names_the_file_and_the_checkpoint(tiny_data, tmp_path, monkeypatch):
    run(tiny_data, tmp_path, "--max_iters=10")

    def full(out_dir, record):
        raise OSError(28, "No space left on device", str(Path(out_dir) / "log.jsonl"))
    monkeypatch.setattr(train, "log_line", full)
    with pytest.raises(train.Stop) as info:
        run(tiny_data, tmp_path, "--init_from=resume")
    assert str(info.value) == (f"cannot write {tmp_path / 'log.jsonl'}: No space left on device; "
                               f"the last good checkpoint is {tmp_path / 'ckpt_last.pt'}")


def test_atomic_writer_names_the_target_and_leaves_no_temporary_file(tmp_path):
    from data import write_atomic
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.json").mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError) as info:
        write_atomic(tmp_path / "d" / "x.json", "{}")
    assert info.value.filename == str(tmp_path / "d" / "x.json") and list((tmp_path / "d").iterdir()) == [
        tmp_path / "d" / "x.json"]


# ---- processes -----------------------------------------------------------------------------------


def test_signal_is_acknowledged_at_once(tiny_data, tmp_path):
    import signal
    args = tiny_args(tiny_data, tmp_path, "--max_iters=100000", "--eval_interval=100000", "--log_interval=1000")
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=train.Path(train.__file__).parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # wait until it trains
        lines.append(line)
        if line.startswith("step "):
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + out
    assert "SIGTERM: stopping after this step" in out and "stopped at step" in out


def damaged_copy(tiny_data, tmp_path):
    import shutil
    shutil.copytree(tiny_data, tmp_path / "data")
    return tmp_path / "data"


@pytest.mark.parametrize("name, file", [("shakespeare_char", "train.bin"), ("trec", "val.labels.bin"),
                                        ("trec", "test.offsets.bin")])
def test_data_file_with_bytes_changed_in_place(tiny_data, tmp_path, name, file):
    from data import DataError, load
    data_dir = damaged_copy(tiny_data, tmp_path)
    path = data_dir / name / file
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # same size, so a size check passes
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError,
                       match=f"{path} is damaged.*python prepare.py {name} --data_dir .* --force"):
        load(name, data_dir)


def test_meta_json_changed_in_place(tiny_data, tmp_path):
    import json

    import prepare
    from data import DataError, load
    data_dir = damaged_copy(tiny_data, tmp_path)
    path = data_dir / "shakespeare_char" / "meta.json"
    meta = json.loads(path.read_text())
    chars = meta["tokenizer"]["chars"]
    meta["tokenizer"]["chars"] = chars[1] + chars[0] + chars[2:]  # two characters swapped: decodes wrongly
    path.write_text(json.dumps(meta, indent=1))
    with pytest.raises(DataError, match="meta.json was changed after it was written.*--force"):
        load("shakespeare_char", data_dir)
    assert not prepare._up_to_date(data_dir / "shakespeare_char", "shakespeare_char")  # and prepare rebuilds it
    del meta["sha256"]  # a data set prepared before meta.json had its own checksum is read as it is
    meta["tokenizer"]["chars"] = chars
    path.write_text(json.dumps(meta, indent=1))
    assert load("shakespeare_char", data_dir).vocab_size == len(chars)


def test_failed_download_leaves_no_empty_directories(tmp_path):
    import prepare
    with pytest.raises(prepare.DataError):
        prepare.prepare("trec", source=tmp_path / "no-such-mirror", data_dir=tmp_path / "data", quiet=True)
    assert not (tmp_path / "data").exists()
    (tmp_path / "data2" / "trec").mkdir(parents=True)  # what was there before stays
    with pytest.raises(prepare.DataError):
        prepare.prepare("trec", source=tmp_path / "no-such-mirror", data_dir=tmp_path / "data2", quiet=True)
    assert (tmp_path / "data2" / "trec").is_dir()


def test_a_log_line_of_json_that_is_not_a_record_is_dropped_on_resume(tmp_path):
    """A log.jsonl line damaged into valid JSON that is not a record (null, a number, a string, a
    list, a record whose step is null) has no step: trim_log drops it, as it drops a line cut off
    mid-write, and keeps the records before the checkpoint. Bug caught: line_step catching only
    ValueError and KeyError, so the resume stops with a TypeError on such a line."""
    good = [{"kind": "eval", "step": 0}, {"kind": "train", "step": 1}]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in good)
                   + 'null\n7\n"x"\n[3]\n{"kind": "train", "step": null}\n')
    checkpoint.trim_log(tmp_path, 2)
    assert [json.loads(line) for line in log.read_text().splitlines()] == good
    assert checkpoint.line_step("[3]") == math.inf == checkpoint.line_step("null")


def test_damaged_log_line_does_not_block_the_resume(tiny_data, tmp_path):
    run(tiny_data, tmp_path, "--max_iters=10")
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + '{"kind": "train", "st\n')  # a write cut off by a crash
    run(tiny_data, tmp_path, "--init_from=resume")
    assert all(line.endswith("}") for line in log.read_text().splitlines())


def test_plot_inputs_damaged_in_place(tiny_data, tmp_path, capsys):
    import json

    import plot
    (tmp_path / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 0, "time": 1.0, "loss": "4.1x",
                                                    "lr": 1e-3}) + "\n")
    with pytest.raises(plot.PlotError, match="damaged train record"):
        plot.read_log(tmp_path)
    (tmp_path / "metrics.json").write_text('{"confusion": [[1, 0], [0')
    (tmp_path / "results.json").write_text('{"study"')
    for argv in (["confusion", f"--out_dir={tmp_path}"], ["ablation", str(tmp_path)]):
        assert plot.main(argv) == 1
        err = capsys.readouterr().err
        assert "cannot be read as JSON" in err and "Traceback" not in err


@pytest.mark.parametrize("rank", [None, "0"])
def test_the_exit_under_torchrun_keeps_what_was_printed(rank, tmp_path):
    """Under torchrun (RANK set) the process leaves by os._exit, which skips the interpreter's
    flush: the last lines of a run (its metrics, an error) sent to a pipe or file would be lost
    unless flushed first."""
    # buffered output, as a launcher's pipe gets it
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "PYTHONUNBUFFERED")}
    env |= {"RANK": rank} if rank else {}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as o, open(err, "w") as e:
        code = subprocess.run([sys.executable, "-c", "import sys, train; print('the last line'); "
                               "print('error: bad', file=sys.stderr); train.exit_process(3)"],
                              cwd=Path(train.__file__).parent, env=env,
                              stdout=o, stderr=e, timeout=120).returncode
    assert code == 3 and out.read_text() == "the last line\n" and "error: bad" in err.read_text()


# ---- a newcomer's first hour ---------------------------------------------------------------------


def test_a_config_too_large_for_this_machine_is_refused_with_an_estimate(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "available_memory", lambda: 24 * 2**30)
    gpt2_small = ["--n_layer=12", "--n_head=12", "--n_embd=768", "--block_size=1024", "--batch_size=64"]
    with pytest.raises(train.ConfigError, match=r"would need about \d+ GiB .* this machine has 24 GiB free"):
        run(tiny_data, tmp_path, *gpt2_small)
    assert not tmp_path.joinpath("config.json").exists()
    need, params = train.memory_needed(train.TransformerConfig(vocab_size=65, n_layer=2, n_head=4, n_embd=128,
                                                               block_size=64), train.TrainConfig(batch_size=12),
                                       torch.float32)
    assert need < 2**30  # the CPU recipe passes with room to spare
    # activations take 2 bytes a value in 16 bits, 4 in fp32; the 16 bytes a parameter stay
    small = train.TransformerConfig(vocab_size=65, n_layer=2, n_head=4, n_embd=128, block_size=64)
    (n32, params), (n16, _) = (train.memory_needed(small, train.TrainConfig(batch_size=12), dtype)
                               for dtype in (torch.float32, torch.bfloat16))
    assert n32 - 16 * params == 2 * (n16 - 16 * params) > 0


def test_fp8_head_is_refused_below_compute_capability_8_9(monkeypatch):
    """without touching a GPU: the capability is asked of torch.cuda, which this test answers"""
    monkeypatch.setattr(train, "available_memory", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "an older GPU")
    cfg, model_cfg = train.TrainConfig(), train.TransformerConfig(vocab_size=64, fp8_head=True)
    for capability, refused in (((8, 6), True), ((8, 9), False), ((9, 0), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        if refused:
            with pytest.raises(train.ConfigError, match=r"capability 8\.9 .* not an older GPU"):
                train.check_machine(cfg, model_cfg, torch.device("cuda"), torch.bfloat16)
        else:
            train.check_machine(cfg, model_cfg, torch.device("cuda"), torch.bfloat16)
    train.check_machine(cfg, model_cfg, torch.device("cpu"), torch.float32)  # the CPU emulates it


def test_no_config_file_says_what_the_defaults_are(capsys, monkeypatch):
    monkeypatch.setattr(train, "train", lambda cfg, kw: None)
    train.main(["--max_iters=100"])
    assert "note: no config file, so the defaults" in capsys.readouterr().out


def test_eta_comes_from_measured_steps_and_evaluations():
    cfg = train.TrainConfig(max_iters=101, eval_interval=50)
    assert train.eta_text([], None, 0, cfg, 1000, 100) == "after the next step"  # the first step compiles
    # steps 2..100 left at the median 0.5 s, plus evaluations at 50, 100 and 101 at 3 s each
    assert train.eta_text([0.4, 0.5, 9.0], 3.0, 1, cfg, 1000, 100) == "0m58s"
    # no evaluation timed yet: one is a forward pass (1/3 step) over 1000 / 100 steps' worth of tokens
    assert train.eta_text([0.3], None, 1, train.TrainConfig(max_iters=11, eval_interval=10), 1000, 100) == "0m04s"
    # and its checkpoints' guessed 2 s, at each of the evaluations at 10 and 11
    assert train.eta_text([0.3], None, 1, train.TrainConfig(max_iters=11, eval_interval=10), 1000, 100, 2.0) == "0m08s"
    # once one is timed, the guess is gone
    assert train.eta_text([0.3], 1.0, 1, train.TrainConfig(max_iters=11, eval_interval=10), 1000, 100, 2.0) == "0m04s"


def test_the_first_eta_guesses_the_checkpoints_of_a_run_that_saves_them(tiny_data, tmp_path, monkeypatch):
    """Bug caught: the first lines' ETA leaving out the checkpoints (a small classifier whose 12
    evaluations' checkpoints take longer than its steps: its ETA at step 50 read 9 s of 15 s)."""
    seen = []
    real_eta = train.eta_text
    monkeypatch.setattr(train, "eta_text", lambda *a: seen.append(a[-1]) or real_eta(*a))
    run(tiny_data, tmp_path / "saves", "--max_iters=3", "--eval_interval=3")
    run(tiny_data, tmp_path / "not", "--max_iters=3", "--eval_interval=3", "--save_checkpoints=false")
    model = checkpoint.model_from_checkpoint(train.load_checkpoint(tmp_path / "saves" / "ckpt_last.pt"))
    n = sum(p.numel() for p in model.parameters())
    assert seen[0] == pytest.approx(2 * 4 * 3 * n / train.CHECKPOINT_BYTES_PER_S) and seen[-1] == 0.0
    cfg = train.TrainConfig(ema_decay=0.99)
    assert train.checkpoint_bytes(torch.nn.Linear(3, 2), cfg) == 2 * 4 * 4 * 8  # and the average


def test_the_eta_counts_the_checkpoints_written_at_each_evaluation(tiny_data, tmp_path, monkeypatch):
    """The evaluation pause the ETA multiplies is the evaluation and its checkpoints, not the forward
    passes alone. Bug caught: a run whose checkpoints take longer than its steps (a small classifier
    replaying CUDA graphs) ending well after its ETA."""
    seen = []
    real_eta = train.eta_text
    monkeypatch.setattr(train, "eta_text", lambda measured, eval_s, *a: seen.append(eval_s) or real_eta(measured, eval_s, *a))
    real_checkpoint = train.Run.checkpoint
    monkeypatch.setattr(train.Run, "checkpoint", lambda self, *a: time.sleep(0.3) or real_checkpoint(self, *a))
    run(tiny_data, tmp_path, "--max_iters=4", "--eval_interval=2")
    assert [e for e in seen if e is not None] and all(e >= 0.3 for e in seen if e is not None)


def test_progress_lines_keep_coming_and_the_cpu_estimate_is_measured(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "PROGRESS_S", 0)  # every step is "a minute later"
    cfg, kw = train.parse_args(tiny_args(tiny_data, tmp_path, "--log_interval=1000", "--max_iters=6",
                                         "--cpu_config=config/shakespeare_cpu.py"))
    train.train(cfg, kw)
    out = capsys.readouterr().out
    assert [line.split("/")[0].split()[-1] for line in out.splitlines() if line.startswith("step ") and "|" in line
            and "val" not in line] == ["0", "1", "2", "3", "4", "5"]
    assert "note: at " in out and "s a step this config takes about" in out
    assert "config/shakespeare_cpu.py trains a smaller model here in about" in out
    assert [r["step"] for r in map(__import__("json").loads, (tmp_path / "log.jsonl").read_text().splitlines())
            if r["kind"] == "train"] == [0]  # the log itself keeps log_interval


def test_the_cpu_estimate_of_the_smaller_config_is_its_flops_at_this_runs_rate():
    """The note's time for config/shakespeare_cpu.py is that config's FLOPs (model, tokens a step,
    steps) at the rate this run measured: at a rate that does its whole run in 100.5 s, 1m40s; this
    run's own 40 steps at 0.5 s, 20 s."""
    alt, alt_kw = train.parse_args(["config/shakespeare_cpu.py"])
    model = train.Transformer(train.model_config(alt_kw, vocab_size=65))
    T = model.config.block_size
    whole = model.flops_per_token(T) * alt.batch_size * T * alt.grad_accum * alt.max_iters
    cfg = train.TrainConfig(max_iters=40, cpu_config="config/shakespeare_cpu.py")
    assert train.cpu_notice(cfg, 0.5, whole / 100.5 * 0.5) == (
        "note: at 0.50 s a step this config takes about 0m20s on this CPU; "
        "config/shakespeare_cpu.py trains a smaller model here in about 1m40s")


# ---- ablate.py -----------------------------------------------------------------------------------


def test_quick_study_claims_no_significance_and_its_default_output_is_ignored(tmp_path):

    import ablate
    runs = [{"variant": v, "seed": s, "loss": x} for v, xs in (("a", [1.0, 1.01]), ("b", [2.0, 2.01]))
            for s, x in enumerate(xs)]
    assert ablate.summarize(runs, ["a", "b"], "loss", "a")[1]["significant"] is True
    [_, quick] = ablate.summarize(runs, ["a", "b"], "loss", "a", quick=True)
    assert quick["p_value"] < 0.05 and quick["significant"] is None
    results = {"study": "s", "description": "", "metric": "loss", "higher_is_better": False, "baseline": "a",
               "command": "c", "device": "cpu", "torch": "t", "date": "d", "jobs": 1, "size": "quick",
               "summary": [dict(quick, variant="b")], "failed": []}
    md = ablate.summary_md(results, None)
    assert "a check of the machinery" in md and "| yes |" not in md
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/lm-quick/results.json"], cwd=ablate.ROOT)
    assert ignored.returncode == 0


def test_study_output_that_cannot_be_written(tmp_path, capsys):
    import ablate
    (tmp_path / "file").write_text("x")
    assert ablate.main(["lm", "--quick", f"--out={tmp_path / 'file' / 'out'}"]) == 1
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and "is a file" in err and "Traceback" not in err


def test_study_file_that_does_not_parse(tmp_path):
    import ablate
    study = tmp_path / "study_broken.py"
    study.write_text("metric = 'loss'\nvariants = {\n")
    with pytest.raises(ablate.StudyError, match=f"study file {study}, line 2:"):
        ablate.load_study(str(study))


def test_sigterm_to_ablate_stops_its_trainings(tiny_data, tmp_path):
    import signal

    import ablate
    study = tmp_path / "study_long.py"
    study.write_text(f"base = {str(ablate.ROOT / 'config/shakespeare_cpu.py')!r}\nmetric = 'loss'\n"
                     "higher_is_better = False\nquick = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, "
                     "batch_size=2, max_iters=100000, warmup_iters=0, eval_interval=100000, log_interval=1)\n"
                     "variants = {'baseline': {}}\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "ablate.py", str(study), "--quick", "--seeds=1", f"--out={out}",
                             f"--set=data_dir={tiny_data}"], cwd=ablate.ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = out / "runs" / "baseline-s0" / "log.jsonl"
    deadline = time.time() + 60
    while not (log.exists() and log.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    children = [int(p) for t in os.listdir(f"/proc/{proc.pid}/task")
                for p in open(f"/proc/{proc.pid}/task/{t}/children").read().split()]
    assert children, "the training did not start"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}"), f"training {pid} was left running"
    assert (out / "runs" / "baseline-s0" / "ckpt_last.pt").exists()  # it saved before it stopped


# ---- sample.py -----------------------------------------------------------------------------------


def test_missing_checkpoint_hint_names_the_right_config_and_existing_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out-shakespeare-char-cpu").mkdir()
    (tmp_path / "out-shakespeare-char-cpu" / "ckpt_last.pt").write_bytes(b"")  # the CPU recipe's run
    assert sample.main([]) == 1
    assert "or sample a run that exists: --out_dir=out-shakespeare-char-cpu" in capsys.readouterr().err
    assert sample.main(["--out_dir=out-sst2"]) == 1
    err = capsys.readouterr().err
    assert "`python train.py config/sst2.py`" in err and "shakespeare.py" not in err
    (tmp_path / "out-trec").mkdir()
    (tmp_path / "out-trec" / "config.json").write_text("{}")
    assert sample.main(["--out_dir=out-trec"]) == 1
    assert "stopped before its first checkpoint" in capsys.readouterr().err


def test_classifier_given_only_unknown_words_says_so():
    import io

    from data import Tokenizer
    from model import Transformer, TransformerConfig
    tok = Tokenizer({"kind": "word", "vocab": ["<pad>", "<unk>", "<cls>", "good", "bad"],
                     "pad": "<pad>", "unk": "<unk>", "cls": "<cls>"})
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=5, n_classes=2, causal=False, pooling="first", n_layer=1,
                                          n_head=2, n_embd=8, block_size=16)).eval()
    stream = io.StringIO()
    unknown, known = sample.label(model, tok, ["negative", "positive"], ["zzz qqq", "good zzz"], stream)
    assert unknown["note"].startswith("every word (2) was unknown") and "note" not in known
    assert "note: every word (2) was unknown" in stream.getvalue()


# ---- plot.py -------------------------------------------------------------------------------------


def test_plot_out_that_cannot_be_written(tmp_path, capsys):
    import plot
    (tmp_path / "file").write_text("x")
    assert plot.main(["positions", f"--out={tmp_path / 'file' / 'p.png'}"]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "choose another --out" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


def test_plot_numeric_options_and_help(capsys):
    import plot
    for bad in ("--rope_base=nan", "--rope_base=inf", "--n_head=0", "--block_size=-3"):
        with pytest.raises(SystemExit):
            plot.main(["positions", bad])
        assert "must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot.main(["positions", "--help"])
    out = capsys.readouterr().out
    assert all(f"(default: {d})" in out for d in ("256", "384", "6", "10000.0"))
    with pytest.raises(SystemExit):
        plot.main(["curves", "--help"])
    assert "with several runs, the current one" in " ".join(capsys.readouterr().out.split())


def test_plot_legends_and_labels(tmp_path, monkeypatch):
    import json

    import plot
    monkeypatch.setattr(plot, "save", lambda fig, path: fig)
    for name, recs in (("a", [{"kind": "train", "step": 0, "time": 1.0, "loss": 4.0, "lr": 1e-3},
                              {"kind": "eval", "step": 10, "time": 2.0, "loss": 3.0}]),
                       ("b", [{"kind": "train", "step": 0, "time": 1.0, "loss": 4.1, "lr": 1e-3}])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    fig = plot.plot_curves([tmp_path / "a", tmp_path / "b"], tmp_path / "c.png")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a train", "a val", "b train"]
    results = {"study": "s", "metric": "loss", "baseline": "baseline", "higher_is_better": False,
               "runs": [{"variant": v, "loss": x} for v, x in (("baseline", 1.6), ("other", 1.6 - 5.25e-08))],
               "summary": [{"variant": "baseline", "n": 1, "mean": 1.6, "std": None, "diff": 0.0},
                           {"variant": "other", "n": 1, "mean": 1.6 - 5.25e-08, "std": None, "diff": -5.25e-08}]}
    fig = plot.plot_ablation(results, tmp_path / "a.png")
    texts = [t.get_text() for t in fig.axes[0].texts] + [t.get_text() for t in fig.legends[0].get_texts()]
    # float noise reads 0, one seed has no interval, and a baseline called "baseline" is not named twice
    assert "0 (no CI: 1 seed each)" in texts and not any("e-08" in t for t in texts)
    assert "baseline: val loss" in fig.get_suptitle() and "'baseline'" not in fig.get_suptitle()
    assert plot.delta(-5.25e-08) == "0" and plot.delta(0.01234) == "+0.0123"
    small, long = plot.attention_figsize(2, 2, 10, 1), plot.attention_figsize(2, 2, 10, 12)
    assert long[1] > small[1]  # room below each row for word labels turned on their side


# ---- values the parser and the checkpoints must not let through --------------------------------


def test_repeated_tuple_options_keep_every_value():
    """`ablate.py --set=a --set=b` keeps both. Bug caught: the last value replacing the others."""
    from configurator import parse
    from ablate import AblateConfig
    assert parse(["--set=data_dir=x", "--set=seed=1"], AblateConfig).set == ("data_dir=x", "seed=1")


def test_whole_numbers_and_the_types_of_config_file_values(tmp_path):
    """--max_iters=5e3 is 5000 and 2.5 is refused, not truncated; in a config file an int is a valid
    float (min_lr = 0) but True is not an int. Bugs caught: the whole-number check, the int-to-float
    conversion or the bool guard dropped."""
    assert train.parse_args(["--max_iters=5e3"])[0].max_iters == 5000
    assert "max_iters='2.5' (command line) is not a valid int" in config_error("--max_iters=2.5")
    conf = tmp_path / "c.py"
    conf.write_text("min_lr = 0\n")
    cfg = train.parse_args([str(conf)])[0]
    assert cfg.min_lr == 0.0 and type(cfg.min_lr) is float
    conf.write_text("max_iters = True\n")
    assert "max_iters=True" in config_error(str(conf)) and "should be a int, not bool" in config_error(str(conf))
    conf.write_text("learning_rate = True\n")  # nor a float: True would be 1.0
    assert "should be a float, not bool" in config_error(str(conf))


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("yes", True), ("on", True),
                                        ("TRUE", True), ("false", False), ("0", False),
                                        ("no", False), ("off", False)])
def test_boolean_spellings_on_the_command_line(text, value):
    """--compile=1 and --compile=off mean what they say. Bug caught: one of the spellings of true or
    false dropped, so --compile=1 fails as 'not a boolean'."""
    assert train.parse_args([f"--compile={text}"])[0].compile is value


def test_an_unknown_data_set_reports_only_the_errors_every_task_shares():
    """With an unknown data set the task is unknown, so only the errors every task would raise are
    reported, beside the data set's own. Bug caught: the errors of any one task reported (here
    causal=False's classifier error, which an MLM data set would not raise)."""
    message = config_error("--dataset=nope", "--causal=false")
    assert "dataset='nope'" in message and "causal=False needs" not in message


def test_schedule_and_evaluation_bounds():
    """Bugs caught: eval_batch_size=0 let through to fail at the first evaluation, after the
    training time is spent; a min_lr above learning_rate (a "decay" that raises it) accepted."""
    assert "eval_batch_size=0 must be >= 1" in config_error("--eval_batch_size=0")
    assert "min_lr=0.01 must be in [0, learning_rate=0.001]" in config_error("--min_lr=1e-2", "--learning_rate=1e-3")


def test_padded_vocabulary_is_never_smaller_than_the_real_one():
    """Large vocabularies round up to a multiple of 64 and the model knows the real size; small ones
    are left alone. Bugs caught: rounding down (GPT-2's ids past 50240 off the end of the
    embedding), real_vocab_size lost (padding rows given probability)."""
    from types import SimpleNamespace
    from configurator import model_config, padded_vocab
    assert padded_vocab(50257) == 50304 and padded_vocab(1000) == 1000
    assert all(n <= padded_vocab(n) < n + 64 and padded_vocab(n) % (64 if n >= 1024 else 1) == 0
               for n in range(1000, 1100))
    cfg = model_config({}, data=SimpleNamespace(vocab_size=50257, n_classes=0, task="lm"))
    assert (cfg.vocab_size, cfg.real_vocab_size) == (50304, 50257)


def test_a_cuda_index_past_the_last_gpu_and_auto_float16_on_a_cpu(monkeypatch):
    """Bugs caught: cuda:1 accepted on a one-GPU machine (the index compared with > instead of
    >=), and --device=auto --dtype=float16 let through on a machine without a GPU."""
    from configurator import device_problems
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_problems("cuda:0") == [] and "has 1 CUDA GPU(s)" in device_problems("cuda:1")[0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert "dtype='float16' on a CPU" in device_problems("auto", "float16")[0]


def test_checkpoint_of_another_format_version_is_refused(tmp_path):
    """Bugs caught: the version check dropped, so a foreign or future checkpoint loads; a missing
    version taken as the current one, so any dict saved with torch.save loads as a checkpoint."""
    for foreign in ({"version": checkpoint.CHECKPOINT_VERSION + 1, "model": {}}, {"model": {}}):
        torch.save(foreign, tmp_path / "c.pt")
        with pytest.raises(checkpoint.CheckpointError, match="is not a version-"):
            checkpoint.load_checkpoint(tmp_path / "c.pt")


def test_checkpoint_that_is_not_a_dict_is_refused_by_name(tmp_path):
    """Bug caught: the isinstance(ckpt, dict) check dropped: a list saved with torch.save fails
    with AttributeError ('list' object has no attribute 'get') instead of a CheckpointError."""
    torch.save([checkpoint.CHECKPOINT_VERSION], tmp_path / "c.pt")
    with pytest.raises(checkpoint.CheckpointError, match="is not a version-"):
        checkpoint.load_checkpoint(tmp_path / "c.pt")


def test_a_directory_given_as_the_checkpoint_is_not_found(tmp_path):
    """Bug caught: path.exists() for path.is_file(): a directory passes, and torch.load's
    IsADirectoryError comes back as 'corrupt or truncated'."""
    (tmp_path / "ckpt_last.pt").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load_checkpoint(tmp_path / "ckpt_last.pt")


def test_checkpoint_digest_covers_every_element():
    """A change to the last element of a tensor changes the digest. Bug caught: a digest over only
    part of each tensor (damage past the hashed part loads silently)."""
    t = torch.arange(1000, dtype=torch.float32)
    u = t.clone()
    u[-1] += 1
    assert checkpoint.state_digest({"w": t}) != checkpoint.state_digest({"w": u})
    # and every value that is not a tensor: the step, the best metric, a config entry
    state = {"step": 100, "best": 1.47, "config": {"train": {"learning_rate": 1e-3}}, "w": t}
    for key, changed in (("step", 101), ("best", 1.48), ("config", {"train": {"learning_rate": 2e-3}})):
        assert checkpoint.state_digest({**state, key: changed}) != checkpoint.state_digest(state), key


def test_checkpoint_digest_covers_names_shapes_and_dtypes():
    """The same bytes under other names, in another shape or as another dtype are another
    checkpoint. Bugs caught: a digest over the values alone, so two same-shaped weights swapped
    between their names, a renamed key, or a reshaped or reinterpreted tensor loads silently."""
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    digest = checkpoint.state_digest({"a": x, "b": y})
    for other in ({"b": x, "a": y}, {"a": y, "b": x}, {"a": x, "c": y},
                  {"a": x.reshape(8, 4), "b": y}, {"a": x.view(torch.int32), "b": y}):
        assert checkpoint.state_digest(other) != digest
    assert checkpoint.state_digest({"a": x.clone(), "b": y.clone()}) == digest


def test_checkpoint_digest_covers_how_lists_are_nested():
    """The same values grouped into other lists or tuples are another checkpoint (an optimizer's
    parameter groups regrouped, a tuple of betas saved as a list). Bug caught: the digest over
    a list's elements alone, without its type and length."""
    digest = checkpoint.state_digest({"groups": [[0, 1], [2]], "betas": (0.9, 0.95)})
    for other in ({"groups": [[0], [1, 2]], "betas": (0.9, 0.95)},
                  {"groups": [0, 1, 2], "betas": (0.9, 0.95)},
                  {"groups": [[0, 1], [2]], "betas": [0.9, 0.95]}):
        assert checkpoint.state_digest(other) != digest, other


def test_checkpoint_digest_tells_a_string_from_the_value_it_spells():
    """A config value changed from 1 to "1" or from None to "None" (a type-changing edit) is
    another checkpoint. Bug caught: values hashed by str() instead of repr()."""
    for a, b in ((1, "1"), (None, "None"), (1e-3, "0.001"), (True, "True")):
        assert checkpoint.state_digest({"v": a}) != checkpoint.state_digest({"v": b}), (a, b)


def test_checkpoint_missing_a_weight_is_not_loaded(tiny_data, tmp_path):
    """Bugs caught: non-strict loading, so a checkpoint without some weights gives a partly random
    model for sample.py and bench.py instead of an error; the saved keys winning over overrides."""
    run(tiny_data, tmp_path, "--max_iters=2", "--dropout=0.1")
    ckpt = checkpoint.load_checkpoint(tmp_path / "ckpt_best.pt")
    del ckpt["model"]["transformer.ln_f.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        checkpoint.model_from_checkpoint(ckpt)
    whole = checkpoint.load_checkpoint(tmp_path / "ckpt_best.pt")  # overrides win over the saved keys
    assert checkpoint.model_from_checkpoint(whole, dropout=0.0).config.dropout == 0.0
    torch.save({**ckpt, "digest": checkpoint.state_digest(ckpt)}, tmp_path / "ckpt_best.pt")
    with pytest.raises(checkpoint.CheckpointError, match="does not hold a complete model"):
        sample.load(tmp_path)


def test_checkpoint_keeps_the_loss_scale(tmp_path):
    """A float16 run's GradScaler state is saved with it (a resume would otherwise restart loss
    scaling at 65536). Bug caught: the scaler's state not written."""
    from types import SimpleNamespace
    from configurator import TrainConfig
    from model import TransformerConfig
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    data = SimpleNamespace(name="x", meta={})
    checkpoint.save_checkpoint(tmp_path / "c.pt", {}, [], scaler, 3, 1.0, TrainConfig(),
                               TransformerConfig(vocab_size=8), data, {})
    assert checkpoint.load_checkpoint(tmp_path / "c.pt")["scaler"]["scale"] == 1024.0


def test_optimizers_take_the_configured_betas():
    """Bug caught: --beta1/--beta2 not passed to AdamW (its default betas used instead)."""
    from configurator import TrainConfig
    from model import Transformer, TransformerConfig
    from optimizers import make_optimizers
    model = Transformer(TransformerConfig(vocab_size=8, n_layer=1, n_head=1, n_embd=8, block_size=4))
    opts = make_optimizers(model, TrainConfig(beta1=0.8, beta2=0.95), torch.device("cpu"))
    assert all(g["betas"] == (0.8, 0.95) for g in opts[0].param_groups)


class _Stub:
    """A data set of 11 tokens whose targets spell 10 characters, with tokenizer kind `kind`."""

    def __init__(self, kind):
        self.meta = {"tokenizer": {"kind": kind}}

    def tokens(self, split):
        return list(range(11))

    def decode(self, ids):
        return "abcdefghij"[:len(ids)]


@pytest.mark.parametrize("kind", ["char", "tiktoken", "word"])
def test_language_model_metrics_in_bits(kind):
    """10 nats over 5 targets: perplexity e^2, 2/ln 2 bits per token; bits per character (10
    characters) for the character and GPT-2 tokenizers only. Bugs caught: bits per token multiplied
    by ln 2, GPT-2-tokenised data sets losing bits_per_char, a word-level one given it."""
    from evaluation import lm_metrics
    m = lm_metrics(10.0, 5, _Stub(kind), "val")
    assert m["perplexity"] == pytest.approx(math.exp(2)) and m["bits_per_token"] == pytest.approx(2 / math.log(2))
    if kind == "word":
        assert "bits_per_char" not in m
    else:
        assert m["bits_per_char"] == pytest.approx(10 / math.log(2) / 10)


# ---- mutation sweep 9: the parser's messages and bounds ------------------------------------------


def test_the_names_other_trainers_use_get_a_suggestion():
    """warmup_steps, num_layers and max_steps (other trainers' names) get this one's key as a
    suggestion. Bug caught: suggestions only for near-identical spellings (difflib's cutoff
    raised from 0.6), which a typo like batch_sise still gets but these do not."""
    for key, meant in [("warmup_steps", "warmup_iters"), ("num_layers", "n_layer"),
                       ("max_steps", "max_iters")]:
        assert (f"unknown key '{key}' in command line (did you mean '{meant}'?)"
                in config_error(f"--{key}=1")), key


def test_an_unknown_key_of_a_config_file_names_the_file(tmp_path):
    """Bug caught: an unknown key of a config file reported as from the command line, sending
    the user to look for it in the wrong place."""
    conf = tmp_path / "c.py"
    conf.write_text("batch_sise = 3\n")
    expected = f"unknown key 'batch_sise' in {conf} (did you mean 'batch_size'?)"
    assert expected in config_error(str(conf))


def test_a_config_file_may_define_helper_functions(tmp_path):
    """A config file is plain Python: a function it defines to compute a value is not a key.
    Bug caught: callables kept among the settings (then refused as unknown keys)."""
    conf = tmp_path / "c.py"
    conf.write_text("def steps(epochs):\n    return epochs * 100\n\n\nmax_iters = steps(3)\n")
    cfg, kw = train.parse_args([str(conf)])
    assert cfg.max_iters == 300 and kw == {}


def test_a_zero_learning_rate_and_no_gradient_accumulation_are_refused():
    """Bugs caught: learning_rate=0 accepted (a run that trains nothing: `<= 0` -> `< 0`), and
    grad_accum=0 let through to a step over no micro-batch."""
    assert "learning_rate=0.0 must be > 0" in config_error("--learning_rate=0", "--min_lr=0")
    assert "grad_accum=0 must be >= 1" in config_error("--grad_accum=0")


def test_the_eval_stride_is_bounded_by_the_eval_context_when_one_is_set():
    """With eval_context=64 on a block_size=16 rope model, a stride of 32 is valid (the window is
    the 64 tokens) and 65 is not, the message naming 64. Bug caught: the bound taken from
    block_size whatever eval_context says."""
    model = ["--block_size=16", "--pos_encoding=rope", "--eval_context=64"]
    assert train.parse_args([*model, "--eval_stride=32"])[0].eval_stride == 32
    assert "eval_stride=65 must be in [0, 64]" in config_error(*model, "--eval_stride=65")
