"""ablate.py: a quick study end to end on tiny data (files, rows, statistics), skipping finished
runs and resuming a cut-off one bit-exactly, failed runs, and errors raised before anything runs."""
import csv
import dataclasses
import json
import shlex
import sys

import numpy as np
import pytest
from scipy import stats

import ablate
import train
from model import Transformer, TransformerConfig

VARIANTS = ["baseline", "pos=none"]


@pytest.fixture(scope="module")
def quick(tiny_data, tmp_path_factory):
    """The shipped `lm` study at its --quick size: 2 variants x 2 seeds on the tiny data."""
    out = tmp_path_factory.mktemp("ablate") / "lm"
    results = ablate.run_study("lm", seeds=2, jobs=2, quick=True, out=out, variants=VARIANTS,
                               extra={"data_dir": str(tiny_data)}, quiet=True)
    return results, out


def test_quick_study_writes_rows_and_statistics(quick):
    results, out = quick
    assert results["failed"] == [] and results["ran"] == 4 and results["skipped"] == 0
    for name in ("results.csv", "results.json", "summary.md", "ablation.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "results.json").read_text()) == results

    max_iters = ablate.load_study("lm")["quick"]["max_iters"]
    runs = results["runs"]
    assert sorted((r["variant"], r["seed"]) for r in runs) == [("baseline", 0), ("baseline", 1),
                                                                ("pos=none", 0), ("pos=none", 1)]
    for r in runs:  # each row is its run's metrics.json, plus throughput from its log
        metrics = json.loads((out / r["out_dir"] / "metrics.json").read_text())
        assert r["loss"] == metrics["loss"] and r["step"] == metrics["step"] == max_iters
        assert r["params"] == metrics["params"] > 0 and r["tokens_per_s"] > 0 and r["wall_s"] > 0
    loss = {(r["variant"], r["seed"]): r["loss"] for r in runs}
    assert loss["baseline", 0] != loss["baseline", 1]  # the seed reaches the run

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and "per_class" not in rows[0]
    assert {(r["variant"], int(r["seed"])): float(r["loss"]) for r in rows} == loss

    summary = {s["variant"]: s for s in results["summary"]}
    assert list(summary) == VARIANTS
    values = {v: np.array([loss[v, 0], loss[v, 1]]) for v in VARIANTS}
    for v in VARIANTS:
        assert summary[v]["n"] == 2
        assert summary[v]["mean"] == pytest.approx(np.mean(values[v]), rel=1e-12)
        assert summary[v]["std"] == pytest.approx(np.std(values[v], ddof=1), rel=1e-12)
    assert summary["baseline"]["diff"] == 0 and summary["baseline"]["p_value"] is None
    assert summary["pos=none"]["diff"] == pytest.approx(values["pos=none"].mean() - values["baseline"].mean())
    p = stats.ttest_ind(values["pos=none"], values["baseline"], equal_var=False).pvalue
    assert summary["pos=none"]["p_value"] == pytest.approx(p)
    assert summary["pos=none"]["significant"] is None  # --quick checks the machinery: no significance claimed

    md = (out / "summary.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == ["| baseline", "| pos=none"]
    assert f"{summary['pos=none']['mean']:.4f} ± {summary['pos=none']['std']:.4f}" in table[2]
    assert "p < 0.05" in md and "ablation.png" in md and results["command"] in md


def test_rerun_skips_finished_and_resumes_a_cut_off_run(quick, tiny_data):
    results, out = quick
    extra = {"data_dir": str(tiny_data)}
    logs = sorted((out / "runs").glob("*/train.log"))
    mtimes = [p.stat().st_mtime_ns for p in logs]
    again = ablate.run_study("lm", seeds=2, jobs=2, quick=True, out=out, variants=VARIANTS, extra=extra, quiet=True)
    assert again["ran"] == 0 and again["skipped"] == 4
    assert [p.stat().st_mtime_ns for p in logs] == mtimes
    assert again["runs"] == results["runs"] and again["summary"] == results["summary"]

    # cut one run off half-way (as Ctrl-C would: a checkpoint, no final metrics), then run the study:
    # only that run trains again, from its checkpoint, and ends exactly where the whole run ended
    study = ablate.load_study("lm")
    run_dir = out / "runs" / "pos-none-s1"
    half = study["quick"]["max_iters"] // 2
    cfg, kw = train.parse_args(ablate.settings(study, "quick", "pos=none", extra)
                               + ["--seed=1", f"--out_dir={run_dir}", "--overwrite=true", f"--stop_after={half}"])
    train.train(cfg, kw, quiet=True)
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == half
    third = ablate.run_study("lm", seeds=2, jobs=2, quick=True, out=out, variants=VARIANTS, extra=extra, quiet=True)
    assert third["ran"] == 1 and third["skipped"] == 3 and third["failed"] == []
    assert f"resuming from {run_dir / 'ckpt_last.pt'} at step {half}" in (run_dir / "train.log").read_text()
    before = {(r["variant"], r["seed"]): r["loss"] for r in results["runs"]}
    after = {(r["variant"], r["seed"]): r["loss"] for r in third["runs"]}
    assert after == before


def test_failed_run_is_reported_and_left_out(tmp_path, tiny_data, capsys):
    study = tmp_path / "study_broken.py"
    study.write_text(f"base = {str(ablate.ROOT / 'config/shakespeare.py')!r}\nmetric = 'loss'\n"
                     f"higher_is_better = False\nquick = {ablate.load_study('lm')['quick']!r}\n"
                     "variants = {'baseline': dict(eval_only=True)}  # no checkpoint to evaluate: fails\n")
    out = tmp_path / "out"
    code = ablate.main([str(study), "--quick", "--seeds=1", f"--out={out}", f"--set=data_dir={tiny_data}"])
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    assert results["runs"] == [] and results["summary"] == []
    [failed] = results["failed"]
    assert failed["variant"] == "baseline" and failed["returncode"] == 1 and "not found" in failed["error"]
    assert "Failed runs" in (out / "summary.md").read_text()
    assert "FAILED" in capsys.readouterr().out


def test_options_take_a_value_after_a_space_or_an_equals_sign(monkeypatch, capsys):
    """`ablate.py lm --seeds 3` as README writes it, and --seeds=3. Bugs caught: the spaced value
    refused or taken as the study, a following option taken as a value."""
    seen = {}
    monkeypatch.setattr(ablate, "run_study", lambda study, **kw: seen.update(study=study, **kw) or {"failed": []})
    assert ablate.main(["lm", "--seeds", "3", "--jobs=2", "--quick", "--variants", "a, b", "--set",
                        "dropout=0.1", "--set=seed=5", "--size", "cpu"]) == 0
    assert seen == dict(study="lm", seeds=3, jobs=2, quick=True, out=None, variants=["a", "b"],
                        extra={"dropout": "0.1", "seed": "5"}, test=False, size="cpu", summarize_only=False)
    assert ablate.main(["lm", "--seeds", "--quick"]) == 1
    assert "--seeds: expected --seeds=VALUE" in capsys.readouterr().err


def test_bad_names_fail_with_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ablate.StudyError, match="unknown study 'nope'.*lm.*cls|unknown study 'nope'.*cls.*lm"):
        ablate.run_study("nope", quick=True, out=tmp_path / "a")
    with pytest.raises(ablate.StudyError, match=r"'pos=rotary'.*expected some of baseline, pos=none"):
        ablate.run_study("lm", quick=True, out=tmp_path / "b", variants=["baseline", "pos=rotary"])
    assert ablate.main(["lm", "--quick", "--variants=heads=2", f"--out={tmp_path / 'c'}"]) == 1
    assert "heads=1" in capsys.readouterr().err
    with pytest.raises(ablate.StudyError, match="--set seed"):
        ablate.run_study("lm", quick=True, out=tmp_path / "d", extra={"seed": "3"})
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def test_bad_keys_fail_before_anything_runs(tmp_path):
    base = str(ablate.ROOT / "config/shakespeare.py")
    study = tmp_path / "study_typos.py"
    study.write_text(f"base = {base!r}\nmetric = 'loss'\nhigher_is_better = False\n"
                     "variants = {'baseline': {}, 'deep': dict(n_layers=8), 'pos=x': dict(pos_encoding='x'), "
                     "'ok': dict(n_layer=1)}\n")
    with pytest.raises(ablate.StudyError) as e:
        ablate.run_study(str(study), quick=True, out=tmp_path / "out")
    msg = str(e.value)  # every problem at once, each under its variant's name
    assert "variant 'deep'" in msg and "did you mean 'n_layer'" in msg and "variant 'pos=x'" in msg
    assert "'ok'" not in msg and "'baseline'" not in msg
    study.write_text(f"base = {base!r}\nmetric = 'loss'\nhigher_is_better = False\nvaraints = {{}}\n")
    with pytest.raises(ablate.StudyError, match="unknown key 'varaints' \\(did you mean 'variants'\\?\\)"):
        ablate.run_study(str(study), quick=True, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_variant_value_given_per_size_takes_the_size_being_run(tmp_path):
    """Bugs caught: a per-size value passed to train.py as the dict itself, the wrong size's value
    taken (a --quick check of a longer schedule that trains 24,000 steps), or a per-size value
    missing a size accepted until the run of that size fails."""
    base = str(ablate.ROOT / "config/shakespeare.py")
    study = tmp_path / "study_long.py"
    study.write_text(f"base = {base!r}\nmetric = 'loss'\nhigher_is_better = False\n"
                     "overrides = dict(warmup_iters=2)\ngpu = dict(max_iters=100)\n"
                     "cpu = dict(max_iters=50)\nquick = dict(max_iters=5)\n"
                     "variants = {'baseline': {}, 'long': dict(max_iters=dict(gpu=300, cpu=80, quick=7),"
                     " dropout=0.1)}\n")
    loaded = ablate.load_study(str(study))
    for size, steps in (("gpu", 300), ("cpu", 80), ("quick", 7)):
        resolved = ablate.resolve(loaded, size, ["baseline", "long"], {})
        assert resolved["long"][0].max_iters == steps and resolved["long"][1]["dropout"] == 0.1
        assert resolved["baseline"][0].max_iters == loaded[size]["max_iters"]
    study.write_text(study.read_text().replace("cpu=80, ", ""))
    with pytest.raises(ablate.StudyError, match="variant 'long': max_iters=.* needs exactly the "
                                                "keys gpu, cpu, quick \\(missing cpu\\)"):
        ablate.load_study(str(study))
    # a size that is not a string, and a per-size value outside the variants: a clear message,
    # not a TypeError from sorting the keys or train.py's "not a valid float"
    text = study.read_text().replace("dict(gpu=300, ", "{1: 2, **dict(gpu=300, ").replace(
        "quick=7)", "quick=7)}")
    study.write_text(text.replace("gpu=300, ", "gpu=300, cpu=80, "))
    with pytest.raises(ablate.StudyError, match="\\(unknown 1\\)"):
        ablate.load_study(str(study))
    study.write_text(study.read_text().replace("{1: 2, **dict(", "dict(")
                     .replace("quick=7)}", "quick=7)").replace("overrides = dict(warmup_iters=2)",
                              "overrides = dict(warmup_iters=dict(gpu=2, cpu=2, quick=1))"))
    with pytest.raises(ablate.StudyError, match="overrides: warmup_iters=.*a value per size is for "
                                                "a variant's keys"):
        ablate.load_study(str(study))


def test_a_per_size_value_needs_exactly_the_three_sizes_and_works_for_any_key(tmp_path):
    """A per-size value with a misspelt size, or with a size too many, is refused when the study is
    loaded; one for a key other than max_iters (here learning_rate) takes the size being run too.
    Bugs caught: the check loosened to a count of keys (gpu, cpu, qiuck accepted, then the quick
    size fails mid-study) or to 'has every size' (a stray key ignored without a word), and
    per-size values resolved for max_iters alone (a dict passed to train.py)."""
    base = str(ablate.ROOT / "config/shakespeare.py")
    study = tmp_path / "study_lr.py"
    head = (f"base = {base!r}\nmetric = 'loss'\nhigher_is_better = False\n"
            "quick = dict(max_iters=5, warmup_iters=1)\n")
    for sizes in ("gpu=1e-3, cpu=2e-3, qiuck=3e-3", "gpu=1e-3, cpu=2e-3, quick=3e-3, fast=4e-3"):
        study.write_text(head + "variants = {'baseline': {}, "
                                f"'lr': dict(learning_rate=dict({sizes}))}}\n")
        with pytest.raises(ablate.StudyError, match="variant 'lr': learning_rate=.* needs exactly "
                                                    "the keys gpu, cpu, quick"):
            ablate.load_study(str(study))
    study.write_text(head + "variants = {'baseline': {}, "
                            "'lr': dict(learning_rate=dict(gpu=1e-3, cpu=2e-3, quick=3e-3))}\n")
    loaded = ablate.load_study(str(study))
    for size, lr in (("gpu", 1e-3), ("cpu", 2e-3), ("quick", 3e-3)):
        assert ablate.resolve(loaded, size, ["lr"], {})["lr"][0].learning_rate == lr


@pytest.mark.parametrize("name", sorted(p.stem.removeprefix("study_")
                                        for p in (ablate.ROOT / "config").glob("study_*.py")))
def test_shipped_studies_resolve_at_every_size(name):
    study = ablate.load_study(name)
    assert study["baseline"] in study["variants"] and study["description"]
    for size in ("gpu", "cpu", "quick"):
        resolved = ablate.resolve(study, size, list(study["variants"]), {})
        for variant, (cfg, _) in resolved.items():  # a longer schedule is a value per size
            own = study["variants"][variant].get("max_iters")
            if isinstance(own, dict):
                assert cfg.max_iters == own[size]
            elif "max_iters" in study[size]:  # (a gpu size may keep the base config's schedule)
                assert cfg.max_iters == study[size]["max_iters"]
    if name == "lm":  # one head vs several at the same parameter count (the projections ignore n_head)
        resolved = ablate.resolve(study, "gpu", ["baseline", "heads=1"], {})
        params = {v: Transformer(TransformerConfig(vocab_size=65, **kw)).num_params()
                  for v, (_, kw) in resolved.items()}
        assert resolved["heads=1"][1]["n_head"] == 1 < resolved["baseline"][1]["n_head"]
        assert params["heads=1"] == params["baseline"]


def test_the_wt2_study_is_the_three_questions_against_one_shared_baseline():
    """Bug caught: the combined study dropping a question's variant, keeping a question's own
    baseline (a second copy of the shipped run), or running on another base than the three."""
    wt2 = ablate.load_study("wt2")
    expected = {"baseline": {}}
    for name, shipped in (("wt2ctx", "ctx=256"), ("wt2drop", "baseline"), ("wt2alibi", "rope")):
        study = ablate.load_study(name)
        assert study["variants"][shipped] == {} and study["base"] == wt2["base"]
        expected.update({v: kw for v, kw in study["variants"].items() if v != shipped})
    assert wt2["variants"] == expected and len(expected) == 8


def test_welch_statistics_and_edge_cases():
    runs = [{"variant": v, "seed": i, "loss": x, "params": 10, "tokens_per_s": 100.0}
            for v, xs in {"base": [1.0, 1.1, 1.2], "a": [2.0, 2.2, 2.1], "one": [5.0], "flat": [1.1, 1.1]}.items()
            for i, x in enumerate(xs)]
    rows = {r["variant"]: r for r in ablate.summarize(runs, ["base", "a", "one", "flat"], "loss", "base")}
    p = stats.ttest_ind([2.0, 2.2, 2.1], [1.0, 1.1, 1.2], equal_var=False).pvalue
    assert rows["a"]["p_value"] == pytest.approx(p) and rows["a"]["significant"] is True
    assert rows["a"]["diff"] == pytest.approx(1.0)
    assert rows["one"]["std"] is None and rows["one"]["p_value"] is None and rows["one"]["significant"] is None
    assert rows["flat"]["std"] == 0 and rows["flat"]["p_value"] is not None  # spread on one side is enough
    flat = [dict(r, loss=1.0) for r in runs if r["variant"] in ("base", "flat")]
    assert ablate.summarize(flat, ["base", "flat"], "loss", "base")[1]["p_value"] is None  # no spread at all


def test_summary_of_one_baseline_seed_a_zero_metric_and_mixed_speeds():
    """One baseline seed: a difference but no p-value (Welch needs two); a metric of exactly 0.0
    is a result, not a missing one; tokens/s is the mean over the seeds. Bugs caught: a NaN p-value
    from one baseline seed, the difference dropped for --seeds 1, 0.0 skipped as falsy, another
    reduction of tokens/s (the max)."""
    runs = [{"variant": "base", "seed": 0, "loss": 1.0, "tokens_per_s": 100.0},
            {"variant": "a", "seed": 0, "loss": 0.0, "tokens_per_s": 200.0},
            {"variant": "a", "seed": 1, "loss": 1.0, "tokens_per_s": 600.0}]
    rows = {r["variant"]: r for r in ablate.summarize(runs, ["base", "a"], "loss", "base")}
    assert rows["a"]["n"] == 2 and rows["a"]["mean"] == 0.5 and rows["a"]["diff"] == -0.5
    assert rows["a"]["p_value"] is None and rows["a"]["significant"] is None
    assert rows["a"]["tokens_per_s"] == 400.0


def test_summarize_only_reports_the_finished_runs_and_trains_nothing(quick, tiny_data, tmp_path,
                                                                   capsys):
    """--summarize: the summary of the runs that finished (a study cut off by a time limit), with
    nothing trained. Bugs caught: unfinished runs started anyway; a summary that hides how many of
    the runs it covers; a wrong size that silently summarizes nothing; a start line that counts
    only the finished runs as the study's ("2 variants x 3 seeds = 4 runs")."""
    import shutil
    results, out = quick
    copy = tmp_path / "lm"
    shutil.copytree(out, copy)
    extra = {"data_dir": str(tiny_data)}
    # seeds 0 and 1 finished; seed 2 never ran
    again = ablate.run_study("lm", seeds=3, quick=True, out=copy, variants=VARIANTS, extra=extra,
                             quiet=True, summarize_only=True)
    assert again["ran"] == 0 and not (copy / "runs" / "baseline-s2").exists()
    stats_of = lambda summary: [{k: v for k, v in row.items() if k != "tokens_per_s"}  # noqa: E731
                                for row in summary]  # (a resumed run's speed differs)
    assert stats_of(again["summary"]) == stats_of(results["summary"])
    assert "the 4 runs finished of 6" in again["summarized"]
    capsys.readouterr()
    ablate.run_study("lm", seeds=3, quick=True, out=copy, variants=VARIANTS, extra=extra,
                     summarize_only=True)
    said = capsys.readouterr().out
    assert "summarizing the 4 of 6 runs (2 variants x 3 seeds)" in said
    assert "= 4 runs" not in said and "to run" not in said, said
    assert again["torch"] == ablate.torch.__version__  # the runs' own, from their config.json
    md = (copy / "summary.md").read_text()
    assert "summarized without training" in md and "--summarize" in md and "--size=quick" in md
    # runs of older code, whose config.json lacks options added since (at their defaults then),
    # still count as finished (bug caught: every earlier study retrained after an option was added)
    for saved in (copy / "runs").glob("*/config.json"):
        config = json.loads(saved.read_text())
        for key in ("ema_decay", "dynamic_lr", "dynamic_decay"):
            config["train"].pop(key)
        saved.write_text(json.dumps(config))
    older = ablate.run_study("lm", seeds=2, quick=True, out=copy, variants=VARIANTS, extra=extra, quiet=True)
    assert older["ran"] == 0 and older["skipped"] == 4
    # a study cut off before its baseline finished: the rows and the summary, but no chart, which
    # draws differences from the baseline (bug caught: the chart's error lost the whole summary)
    shutil.rmtree(copy / "runs" / "baseline-s0")
    shutil.rmtree(copy / "runs" / "baseline-s1")
    (copy / "ablation.png").unlink()
    partial = ablate.run_study("lm", seeds=2, quick=True, out=copy, variants=VARIANTS, extra=extra,
                               quiet=True, summarize_only=True)
    assert [s["variant"] for s in partial["summary"]] == ["pos=none"]
    assert (copy / "summary.md").exists() and not (copy / "ablation.png").exists()
    with pytest.raises(ablate.StudyError, match="nothing to summarize.*--size"):
        ablate.run_study("lm", seeds=2, out=copy, variants=VARIANTS, extra=extra, quiet=True,
                         summarize_only=True, size="cpu")
    with pytest.raises(ablate.StudyError, match="cannot --test"):
        ablate.run_study("lm", seeds=2, quick=True, out=copy, variants=VARIANTS, extra=extra,
                         quiet=True, summarize_only=True, test=True)


TINY = ["--dataset=shakespeare_char", "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16",
        "--batch_size=4", "--max_iters=4", "--warmup_iters=1", "--eval_interval=2",
        "--eval_batch_size=64", "--device=cpu"]


def test_run_state_of_finished_cut_off_and_other_runs(tiny_data, tmp_path):
    """A run directory is 'done' only when it finished with the very config asked for (its output
    folder, --overwrite and stop_after aside), 'resume' when it was cut off with a checkpoint,
    else 'fresh'. Catches: a finished run of another train or model key skipped (its numbers
    reported for this config), a cut-off run or an eval_only record taken for a finished one,
    a resume without a checkpoint, and a run that differs only in its folder trained again."""
    out = tmp_path / "run"
    cfg, kw = train.parse_args([*TINY, f"--data_dir={tiny_data}", f"--out_dir={out}"])
    state = lambda c=cfg, k=kw: ablate.run_state(out, c, k)  # noqa: E731
    assert state() == "fresh"  # nothing there
    out.mkdir()
    (out / "config.json").write_text("{not json")
    assert state() == "fresh"
    (out / "config.json").unlink()

    train.train(*train.parse_args([*TINY, f"--data_dir={tiny_data}", f"--out_dir={out}",
                                   "--stop_after=1"]), quiet=True)
    assert json.loads((out / "metrics.json").read_text())["step"] == 1 and state() == "resume"
    (out / "ckpt_last.pt").rename(tmp_path / "ckpt_last.pt")
    assert state() == "fresh"  # cut off before a checkpoint: nothing to resume from
    (tmp_path / "ckpt_last.pt").rename(out / "ckpt_last.pt")
    train.train(*train.parse_args([*TINY, f"--data_dir={tiny_data}", f"--out_dir={out}",
                                   "--init_from=resume"]), quiet=True)
    assert state() == "done"
    moved = dataclasses.replace(cfg, out_dir=str(tmp_path / "elsewhere"), overwrite=True,
                                stop_after=3)
    assert state(moved) == "done"

    # another value of a train key, of a model key, or of a key the run's config.json lacks
    assert state(dataclasses.replace(cfg, learning_rate=cfg.learning_rate / 2)) == "fresh"
    assert state(dataclasses.replace(cfg, max_iters=8)) == "fresh"
    assert state(dataclasses.replace(cfg, seed=cfg.seed + 1)) == "fresh"  # another seed's run
    assert state(cfg, {**kw, "dropout": 0.1}) == "fresh"
    saved = json.loads((out / "config.json").read_text())
    # ... or the run had a model key that this config leaves at its default
    with_dropout = {**saved, "model": {**saved["model"], "dropout": 0.1}}
    (out / "config.json").write_text(json.dumps(with_dropout))
    assert state() == "fresh"
    older = {**saved, "train": {k: v for k, v in saved["train"].items() if k != "ema_decay"}}
    (out / "config.json").write_text(json.dumps(older))
    assert state() == "done" and state(dataclasses.replace(cfg, ema_decay=0.9)) == "fresh"
    (out / "config.json").write_text(json.dumps(saved))

    # metrics.json of an evaluation of the checkpoint, not of the training: resumed, not skipped
    metrics = json.loads((out / "metrics.json").read_text())
    evaluated = {**metrics, "checkpoint": str(out / "ckpt_best.pt")}
    (out / "metrics.json").write_text(json.dumps(evaluated))
    assert state() == "resume"
    (out / "metrics.json").unlink()
    assert state() == "resume"
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert state() == "done"


def test_run_state_of_runs_started_from_a_pretrained_encoder(tiny_data, tmp_path):
    """A run started from an encoder (init_from=PATH) takes its shape from it: the shape keys the
    study does not set are not compared. A config.json of older code that says init_from='resume'
    kept no starting point, so it counts as a run from scratch. Catches: every fine-tuning run
    trained again because its shape differs from the defaults, a shape the study does set not
    compared, and an older resumed run of another starting point skipped."""
    out = tmp_path / "run"
    cfg, kw = train.parse_args([*TINY, f"--data_dir={tiny_data}", f"--out_dir={out}"])
    train.train(cfg, kw, quiet=True)
    saved = json.loads((out / "config.json").read_text())
    encoder = str(tmp_path / "encoder.pt")
    tuned = dataclasses.replace(cfg, init_from=encoder)
    shape_free = {k: v for k, v in kw.items() if k not in train.PRETRAINED_KEYS}
    assert shape_free == {"block_size": 16}

    def started_from(path):
        return {**saved, "train": {**saved["train"], "init_from": path}}
    (out / "config.json").write_text(json.dumps(started_from(encoder)))
    assert ablate.run_state(out, tuned, shape_free) == "done"
    assert ablate.run_state(out, tuned, {**shape_free, "n_layer": 3}) == "fresh"
    assert ablate.run_state(out, cfg, kw) == "fresh"  # from scratch now: another run
    (out / "config.json").write_text(json.dumps(started_from("resume")))
    assert ablate.run_state(out, cfg, kw) == "done"
    assert ablate.run_state(out, tuned, shape_free) == "fresh"


def fake_runner(monkeypatch, fail=(), fail_test=(), test_code=1, test_writes=False):
    """Runner.run without subprocesses: a training writes metrics.json at max_iters (loss: 1 for
    the baseline, 2 for pos=none, plus seed / 10), or fails for (variant, seed) in fail; a test
    evaluation writes metrics_test.json, or for those in fail_test exits with test_code, having
    written it only if test_writes. Returns the list of (state, variant, seed) started."""
    started = []
    max_iters = ablate.load_study("lm")["quick"]["max_iters"]

    def run(self, job, log_name="train.log"):
        key = (job["variant"], job["seed"])
        started.append((job["state"], *key))
        job["out_dir"].mkdir(parents=True, exist_ok=True)
        loss = 1.0 + (job["variant"] != "baseline") + job["seed"] / 10
        if job["state"] == "eval":
            if key not in fail_test or test_writes:
                (job["out_dir"] / "metrics_test.json").write_text(json.dumps(
                    {"split": "test", "loss": loss + 0.5, "perplexity": np.exp(loss + 0.5)}))
            if key in fail_test:
                (job["out_dir"] / log_name).write_text("error: boom\n")
                return test_code, 0.1
            return 0, 0.1
        if key in fail:
            (job["out_dir"] / log_name).write_text("error: out of memory\n")
            return 1, 0.1
        (job["out_dir"] / "metrics.json").write_text(json.dumps({"step": max_iters, "loss": loss}))
        return 0, 0.1

    monkeypatch.setattr(ablate.Runner, "run", run)
    return started


def test_test_split_scores_the_selected_variant_only_when_every_run_finished(tiny_data, tmp_path,
                                                                              monkeypatch, capsys):
    """--test scores the variant with the best val mean, each of its seeds on the test split; with
    a failed run the selection rests on runs that are missing, so nothing is scored and the study
    exits 1. Catches: test scoring started despite a failed seed (an error about the missing
    checkpoint instead of the study's report, or a selection from partial results)."""
    extra = {"data_dir": str(tiny_data)}
    kw = dict(seeds=2, jobs=1, quick=True, variants=VARIANTS, extra=extra, quiet=True, test=True)
    started = fake_runner(monkeypatch)
    results = ablate.run_study("lm", out=tmp_path / "ok", **kw)
    assert results["failed"] == [] and results["test"]["variant"] == "baseline"
    assert [e for e in started if e[0] == "eval"] == [("eval", "baseline", 0),
                                                      ("eval", "baseline", 1)]
    assert results["test"]["summary"]["loss"]["mean"] == pytest.approx(1.55)
    assert "## Test split: `baseline`" in (tmp_path / "ok" / "summary.md").read_text()

    started = fake_runner(monkeypatch, fail={("baseline", 1)})
    code = ablate.main(["lm", "--quick", "--seeds=2", "--jobs=1", "--variants=pos=none", "--test",
                        f"--out={tmp_path / 'failed'}", f"--set=data_dir={tiny_data}"])
    assert code == 1
    assert not [e for e in started if e[0] == "eval"]
    results = json.loads((tmp_path / "failed" / "results.json").read_text())
    assert [(f["variant"], f["seed"]) for f in results["failed"]] == [("baseline", 1)]
    assert "test" not in results
    assert "Test split" not in (tmp_path / "failed" / "summary.md").read_text()
    assert "nothing was scored on the test split" in capsys.readouterr().out  # and says so


@pytest.mark.parametrize("code, writes", [(1, False), (0, False), (1, True)])
def test_a_failed_test_evaluation_names_its_seed(tiny_data, tmp_path, monkeypatch, code, writes):
    """A seed whose test evaluation fails (even after writing metrics_test.json), or exits 0
    without writing it, stops the study with the seed and its test.log named. Catches: a failed
    evaluation's figures, or a mean over the seeds that were scored, passed off as the variant's
    test result."""
    fake_runner(monkeypatch, fail_test={("baseline", 1)}, test_code=code, test_writes=writes)
    failed = r"'baseline' seed 1 on the test split failed.*test\.log"
    with pytest.raises(ablate.StudyError, match=failed):
        ablate.run_study("lm", seeds=2, jobs=1, quick=True, out=tmp_path, variants=VARIANTS,
                         extra={"data_dir": str(tiny_data)}, quiet=True, test=True)


def test_summary_tokens_per_s_is_the_mean_over_three_seeds():
    """tokens/s of a variant is the mean over its seeds. Catches: the median (equal to the mean for
    two seeds, not for three)."""
    runs = [{"variant": "base", "seed": s, "loss": 1.0 + s / 10, "tokens_per_s": t}
            for s, t in enumerate([100.0, 200.0, 600.0])]
    [row] = ablate.summarize(runs, ["base"], "loss", "base")
    assert row["tokens_per_s"] == pytest.approx(300.0)


class ScoringRunner:
    """Runner.run for test evaluations: records each job's train.py arguments and writes the
    metrics_test.json given for its (variant, seed)."""

    def __init__(self, metrics):
        self.metrics, self.args = metrics, []

    def run(self, job, log_name="train.log"):
        self.args.append(job["args"])
        job["out_dir"].mkdir(parents=True, exist_ok=True)
        m = self.metrics[job["variant"], job["seed"]]
        (job["out_dir"] / "metrics_test.json").write_text(json.dumps(m))
        return 0, 0.1


def test_score_selected_picks_by_the_study_direction_and_scores_the_test_split(tmp_path):
    """A higher-is-better study selects the variant of the highest val mean; each of its seeds is
    evaluated from its checkpoint on the test split, and the test figures get the mean and the
    sample std (ddof=1). Catches: the lowest mean selected whatever the direction, the val split
    scored again as the test result, the population std."""
    summary = [{"variant": "baseline", "mean": 0.80}, {"variant": "wide", "mean": 0.85},
               {"variant": "deep", "mean": 0.70}]
    jobs = [{"variant": v, "seed": s, "out_dir": tmp_path / f"{v}-s{s}", "args": ["base.py"],
             "state": "done"} for s in range(3) for v in ("baseline", "wide", "deep")]
    acc = [0.70, 0.80, 0.96]
    runner = ScoringRunner({(j["variant"], j["seed"]): {"accuracy": acc[j["seed"]], "loss": 1.0}
                            for j in jobs})
    study = {"higher_is_better": True, "metric": "accuracy"}
    test = ablate.score_selected({"summary": summary}, study, jobs, runner)
    assert test["variant"] == "wide" and [r["seed"] for r in test["runs"]] == [0, 1, 2]
    assert all(a[0] == "base.py" and "--eval_only=true" in a and "--eval_split=test" in a
               and not any(x.startswith("--eval_split=") and x != "--eval_split=test" for x in a)
               for a in runner.args)
    assert test["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(acc))
    assert test["summary"]["accuracy"]["std"] == pytest.approx(np.std(acc, ddof=1))
    lower = ablate.score_selected({"summary": summary}, dict(study, higher_is_better=False), jobs,
                                  ScoringRunner(runner.metrics))
    assert lower["variant"] == "deep"


def test_table_says_better_or_worse_by_the_study_direction():
    """A positive Δ is '(better)' when higher is better and '(worse)' when lower is. Catches: the
    direction ignored."""
    summary = [{"variant": "b", "mean": 1.0, "std": None, "diff": 0.0, "p_value": None,
                "significant": None, "params": None, "tokens_per_s": None, "n": 1},
               {"variant": "up", "mean": 1.5, "std": None, "diff": 0.5, "p_value": None,
                "significant": None, "params": None, "tokens_per_s": None, "n": 1}]
    results = {"metric": "accuracy", "baseline": "b", "summary": summary}
    up = ablate.table(dict(results, higher_is_better=True))[3]
    assert "+0.5000 (better)" in up
    assert "+0.5000 (worse)" in ablate.table(dict(results, higher_is_better=False))[3]


def test_collect_takes_the_median_speed_and_drops_non_finite_values(tmp_path):
    """A run's row: tokens/s is the median of its training log (a slow first step does not drag it
    down), and a metric that is NaN or infinite becomes null, which JSON can hold. Catches: the
    mean speed, NaN written into results.json."""
    run = tmp_path / "runs" / "baseline-s0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"loss": float("nan"), "perplexity":
                                                  float("inf"), "step": 4, "params": 10}))
    log = [{"kind": "train", "step": i, "tokens_per_s": t} for i, t in enumerate([10., 200., 300.])]
    log.append({"kind": "eval", "step": 4, "loss": 2.0})
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    row = ablate.collect({"variant": "baseline", "seed": 0, "out_dir": run}, tmp_path)
    assert row["tokens_per_s"] == 200.0 and row["out_dir"] == "runs/baseline-s0"
    assert row["loss"] is None and row["perplexity"] is None and row["step"] == 4


def test_plan_is_seed_major_and_default_seeds_follow_the_size(tmp_path):
    """Jobs run seed by seed across the variants, so a study stopped early still compares every
    variant; the default is 2 seeds at the quick size and 3 otherwise. Catches: variant-major
    order, one default for every size."""
    study = ablate.load_study("lm")
    resolved = ablate.resolve(study, "quick", VARIANTS, {})
    jobs = ablate.plan_runs(study, "quick", VARIANTS, 2, resolved, {}, tmp_path)
    assert [(j["variant"], j["seed"]) for j in jobs] == [("baseline", 0), ("pos=none", 0),
                                                          ("baseline", 1), ("pos=none", 1)]
    assert ablate.check_options(None, True, None, None, None, False, False)[1] == 2
    assert ablate.check_options("cpu", False, None, None, None, False, False)[:3] == ("cpu", 3, 1)


def test_p_value_is_welchs_for_unequal_spreads_and_sizes():
    """The p-value is Welch's (unequal variances, Welch-Satterthwaite degrees of freedom), here
    computed from its formula: with 3 seeds of wide spread against 4 narrow ones, Student's pooled
    test gives 0.046 where Welch's gives 0.154. Catches: the pooled (equal-variance) t-test."""
    base, var = [1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 11.0]
    runs = ([{"variant": "baseline", "m": v} for v in base]
            + [{"variant": "v", "m": v} for v in var])
    rows = {r["variant"]: r for r in ablate.summarize(runs, ["baseline", "v"], "m", "baseline")}
    a, b = np.var(var, ddof=1) / 3, np.var(base, ddof=1) / 4
    t = (np.mean(var) - np.mean(base)) / np.sqrt(a + b)
    df = (a + b) ** 2 / (a ** 2 / 2 + b ** 2 / 3)
    welch = 2 * stats.t.sf(abs(t), df)
    assert rows["v"]["p_value"] == pytest.approx(welch, rel=1e-9)
    assert welch > 0.1 > stats.ttest_ind(var, base).pvalue  # the two tests disagree here
    assert rows["v"]["significant"] is False


@pytest.mark.parametrize("state, stale", [("fresh", "metrics.json"), ("eval", "metrics_test.json")])
def test_a_run_that_fails_leaves_no_earlier_metrics_behind(tmp_path, state, stale):
    """Before a training (or a test evaluation) starts, the metrics file it will write is removed,
    so a run that fails before writing one cannot pass for finished on an earlier run's file.
    Catches: the stale file kept (the study would count a failed seed as done)."""
    out_dir = tmp_path / "runs" / "baseline-s0"
    out_dir.mkdir(parents=True)
    (out_dir / stale).write_text(json.dumps({"step": 10, "loss": 1.0}))
    job = {"variant": "baseline", "seed": 0, "out_dir": out_dir, "state": state,
           "args": [str(tmp_path / "missing_config.py")]}
    code, _ = ablate.Runner(1).run(job, "test.log" if state == "eval" else "train.log")
    assert code != 0 and not (out_dir / stale).exists()


# ----------------------------------------------------------------------------------------------
# found by a mutation sweep of ablate.py

def test_a_run_log_starts_with_its_command_line(tmp_path):
    """train.log begins with the train.py command line, then the run's own output: the line is
    flushed before the run, which writes into the same file, starts. Catches: the flush missing
    (the command line then lands after everything the run printed)."""
    out_dir = tmp_path / "runs" / "baseline-s0"
    missing = str(tmp_path / "missing_config.py")
    job = {"variant": "baseline", "seed": 0, "out_dir": out_dir, "state": "fresh",
           "args": [missing]}
    code, _ = ablate.Runner(1).run(job)
    lines = (out_dir / "train.log").read_text().splitlines()
    assert code != 0 and len(lines) > 1
    assert shlex.split(lines[0]) == [sys.executable, str(ablate.ROOT / "train.py"), missing,
                                     "--seed=0", f"--out_dir={out_dir}", "--overwrite=true"]
    assert any("missing_config.py" in line and "not found" in line for line in lines[1:])


def test_table_leaves_the_baselines_p_blank_and_says_na_for_a_variant_without_one():
    """The p column is empty for the baseline (never tested against itself), n/a for a variant
    without a p-value (fewer than 2 seeds, or no spread), and the value otherwise. Catches: the
    blank and the n/a swapped."""
    row = dict(std=None, significant=None, params=None, tokens_per_s=None, n=1)
    summary = [dict(row, variant="b", mean=1.0, diff=0.0, p_value=None),
               dict(row, variant="one", mean=1.5, diff=0.5, p_value=None),
               dict(row, variant="two", mean=2.0, diff=1.0, p_value=0.01234, significant=True)]
    lines = ablate.table({"metric": "loss", "baseline": "b", "higher_is_better": False,
                          "summary": summary})
    p = {cells[0]: cells[4] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in lines[2:])}
    assert p == {"b": "", "one": "n/a", "two": "0.012"}


def test_set_init_from_resume_or_scratch_is_refused_and_a_path_made_absolute(tmp_path,
                                                                           monkeypatch):
    """--set init_from=resume or =scratch is refused, saying that ablate.py resumes cut-off runs
    and starts the others from scratch itself; --set init_from=PATH (a pretrained encoder) becomes
    an absolute path, as the runs start in the repository root. Catches: the check missing
    (=scratch then refused as a missing file, =resume as well, neither with the reason)."""
    for value in ("resume", "scratch"):
        with pytest.raises(ablate.StudyError, match=f"--set init_from={value}: ablate.py resumes "
                                                    f"a cut-off run itself"):
            ablate.check_options("cpu", False, None, None, {"init_from": value}, False, False)
    (tmp_path / "encoder.pt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    extra = ablate.check_options("cpu", False, None, None, {"init_from": "encoder.pt"}, False,
                                 False)[3]
    assert extra == {"init_from": str((tmp_path / "encoder.pt").resolve())}


def test_list_only_lists_and_no_study_lists_then_runs_the_default(monkeypatch, capsys):
    """--list prints the studies and exits 0 without running any; with no study named, the list
    comes first and then the default study runs. Catches: --list running the default study, or
    exiting with a failure code; the list missing."""
    ran = []
    monkeypatch.setattr(ablate, "run_study",
                        lambda study, **kw: ran.append(study) or {"failed": []})
    assert ablate.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("studies (config/study_NAME.py):\n") and "\n  lm " in out
    assert ran == []
    assert ablate.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("studies (config/study_NAME.py):\n") and "\n  lm " in out
    assert f"running the default study {ablate.DEFAULT_STUDY!r}" in out
    assert ran == [ablate.DEFAULT_STUDY]


# study folders committed without a results.json (cut off before ablate.py wrote one): the study
# and size their runs came from, as their ablate.out or README says
UNSUMMARISED = {"recipes/wt2reg": ("wt2reg", "gpu"), "recipes/wt2-layerdrop": ("wt2", "gpu"),
                "recipes/sst2reg": ("sst2reg", "gpu")}


def committed_studies():
    """(folder, study, size, --set keys) of every study committed with its runs under results/."""
    root = ablate.ROOT / "results"
    found = []
    for p in sorted(root.glob("**/results.json")):
        meta = json.loads(p.read_text())
        if (p.parent / "runs").is_dir() and "study" in meta:
            extra = dict(a.removeprefix("--set=").split("=", 1)
                         for a in shlex.split(meta["command"]) if a.startswith("--set="))
            found.append((p.parent, meta["study"], meta["size"], extra))
    for folder, (name, size) in UNSUMMARISED.items():
        assert not (root / folder / "results.json").exists()  # else it is listed above
        found.append((root / folder, name, size, {}))
    return found


def test_every_committed_study_run_is_the_run_its_study_file_gives_today():
    """Catches a base config changed under the studies that ran on it (config/wikitext2.py moved
    to 16,000 steps and weight decay 2.0; the wt2* studies pin the 8,000-step recipe they ran
    on): their committed runs would no longer be what `python ablate.py STUDY` reruns, and a rerun
    would train them again, on another recipe."""
    studies = committed_studies()
    assert len(studies) >= 10
    checked, wrong = 0, []
    for folder, study_name, size, extra in studies:
        study = ablate.load_study(study_name)
        slugs = {ablate.slug(v): v for v in study["variants"]}
        resolved = {}
        for run in sorted((folder / "runs").iterdir()):
            variant, _, seed = run.name.rpartition("-s")
            name = slugs[variant]  # a run folder no variant of the study names is a stray
            if name not in resolved:
                resolved[name] = ablate.resolve(study, size, [name], extra)[name]
            cfg, model_kw = resolved[name]
            saved = json.loads((run / "config.json").read_text())
            diff = ablate.config_differences(saved, dataclasses.replace(cfg, seed=int(seed)),
                                             model_kw)
            checked += 1
            if diff:
                wrong.append(f"{run.relative_to(ablate.ROOT)}: {diff}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 100


def test_config_differences_names_every_key_that_changes_a_run():
    """Every train and model key but the three that do not change a run (out_dir, overwrite,
    stop_after) makes a saved run another run, and is named with its saved and current values.
    Catches: a key left out of the comparison, so that a study would skip a run made with, say,
    another weight decay."""
    cfg, model_kw = train.parse_args(["config/wikitext2.py"])
    want = {**dataclasses.asdict(cfg), **{k: model_kw.get(k, train.DEFAULTS[k])
                                         for k in train.MODEL_KEYS}}
    saved = {"train": dataclasses.asdict(cfg), "model": {k: want[k] for k in train.MODEL_KEYS}}
    assert ablate.config_differences(saved, cfg, model_kw) == {}
    for key, value in want.items():
        other = not value if isinstance(value, bool) else (
            value + 1 if isinstance(value, (int, float)) else f"{value}x")
        side = "train" if key in dataclasses.asdict(cfg) else "model"
        changed = {**saved, side: {**saved[side], key: other}}
        diff = ablate.config_differences(changed, cfg, model_kw)
        if key in ablate.NOT_COMPARED:
            assert diff == {}, key
        else:
            assert diff == {key: (other, value)}, key


# each shipped benchmark config and the committed runs behind its published test figure
PUBLISHED = [("config/wikitext2.py", "results/recipes/wt2long/runs/wd-2.0-s*"),
             ("config/sst2_pretrained.py", "results/benchmarks/sst2-pretrained-6k/runs/lr-2e-4-s*"),
             ("config/trec_pretrained.py",
              "results/benchmarks/trec-pretrained-6k/runs/lr-4e-4+llrd-0.8-s*")]


@pytest.mark.parametrize("config,runs", PUBLISHED)
def test_a_shipped_benchmark_config_is_the_one_its_published_runs_used(config, runs):
    """A benchmark config, as a user runs it, is the configuration of the committed runs behind
    its published test figure, but for the seed, the folder and the encoder's path. Catches: a
    recipe edited after its figure was measured (WikiText-2's decay or number of steps, say), so
    that the README's number no longer belongs to the command it gives."""
    runs = sorted(ablate.ROOT.glob(runs))
    assert len(runs) >= 2 and all((r / "metrics_test.json").exists() for r in runs)
    for run in runs:
        saved = json.loads((run / "config.json").read_text())
        seed, init = saved["train"]["seed"], saved["train"]["init_from"]
        args = [config, f"--seed={seed}", "--cpu_config="]  # ablate.py's, a CPU hint only
        if init not in ("scratch", "resume"):  # where the user keeps the encoder
            args.append(f"--init_from={init}")
        cfg, model_kw = train.parse_args(args)
        assert ablate.config_differences(saved, cfg, model_kw) == {}, run.name
