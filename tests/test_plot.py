"""plot.py: every kind writes a PNG of the size its figure asks for, from tiny in-process runs;
missing inputs and inputs from the wrong task fail with an error that says what to do."""
import json
import struct
import warnings

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import plot
import train

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=8", "--max_iters=20",
        "--warmup_iters=2", "--eval_interval=10", "--eval_batch_size=64", "--device=cpu", "--log_interval=5"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only waits for the first
    (a 20-step run takes 0.2 s on one thread and 2-14 s on two when other jobs hold the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory, one_thread):
    """Three tiny runs, trained once for the whole module: two char LMs and a TREC classifier."""
    root = tmp_path_factory.mktemp("plot_runs")
    specs = {"learned": ["--dataset=shakespeare_char", "--pos_encoding=learned"],
             "rope": ["--dataset=shakespeare_char", "--pos_encoding=rope", "--seed=2"],
             "trec": ["--dataset=trec", "--causal=false", "--pooling=mean"]}
    for name, args in specs.items():
        cfg, kw = train.parse_args(args + [f"--data_dir={tiny_data}", f"--out_dir={root / name}"] + TINY)
        train.train(cfg, kw, quiet=True)
    return {name: root / name for name in specs}


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything that is not a PNG."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def check_png(path, figsize):
    """The file is a PNG of exactly figsize * DPI pixels, and not a blank canvas."""
    assert png_size(path) == (round(figsize[0] * plot.DPI), round(figsize[1] * plot.DPI))
    img = imread(path)
    assert img[..., :3].std() > 0.05  # something was drawn
    assert not list(path.parent.glob("*.tmp"))  # written via a temp file that was renamed


def write_log(home, records):
    """home/log.jsonl of the given records, one JSON object a line, as train.py writes it."""
    (home / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


# ---- every kind -------------------------------------------------------------------------------

def test_curves_two_runs(runs, tmp_path):
    out = plot.plot_curves([runs["learned"], runs["rope"]], tmp_path / "c.png", labels=["learned", "rope"])
    assert out == tmp_path / "c.png"
    check_png(out, (16, 4.8))
    with pytest.raises(plot.PlotError, match="1 labels .* for 2 runs"):
        plot.plot_curves([runs["learned"], runs["rope"]], tmp_path / "x.png", labels=["only"])


def test_curves_cli_default_path(runs, capsys):
    assert plot.main(["curves", str(runs["rope"])]) == 0  # one run: the PNG goes into the run
    check_png(runs["rope"] / "curves.png", (16, 4.8))
    assert str(runs["rope"] / "curves.png") in capsys.readouterr().out


def test_attention_grid_and_one_layer(runs, tmp_path):
    text = "ROMAN:\nO"  # 8 characters, a newline among them
    size = plot.attention_figsize
    check_png(plot.plot_attention(runs["learned"], text, tmp_path / "all.png"), size(2, 2, 8))
    check_png(plot.plot_attention(runs["learned"], text, tmp_path / "one.png", layer=1), size(1, 2, 8))
    # longer than block_size=16: cropped to the first 16 tokens, so the grid has 16 ticks per axis
    check_png(plot.plot_attention(runs["rope"], "ROMAN: " * 10, tmp_path / "long.png"), size(2, 2, 16))
    with pytest.raises(plot.PlotError, match=r"layer=2 does not exist: the model has layers 0\.\.1"):
        plot.plot_attention(runs["learned"], text, tmp_path / "x.png", layer=2)


def test_attention_on_classifier(runs, tmp_path):
    # an encoder: attention is bidirectional; the tokenizer adds <cls> and maps unknown words to <unk>
    out = plot.plot_attention(runs["trec"], "what is the capital of zzzqqq ?", tmp_path / "a.png")
    check_png(out, plot.attention_figsize(2, 2, 8, len("<cls>")))  # the longest tick label


def test_embeddings_char_lm(runs, tmp_path):
    check_png(plot.plot_embeddings(runs["learned"], tmp_path / "e.png"), (10, 8.5))


def test_embeddings_classifier(runs, tmp_path, capsys):
    # the tiny val split has 6 questions: perplexity must be clamped below the number of points
    check_png(plot.plot_embeddings(runs["trec"], tmp_path / "v.png", split="val"), (10, 8.5))
    assert plot.main(["embeddings", f"--out_dir={runs['trec']}", "--split=train", "--max_points=40"]) == 0
    check_png(runs["trec"] / "embeddings.png", (10, 8.5))


def test_confusion_from_classifier_run(runs, tmp_path):
    metrics = json.loads((runs["trec"] / "metrics.json").read_text())
    assert len(metrics["confusion"]) == 6
    check_png(plot.plot_confusion(runs["trec"] / "metrics.json", tmp_path / "c.png"), (8, 7))
    check_png(plot.plot_confusion(metrics, tmp_path / "d.png"), (8, 7))  # the parsed dict works too
    assert plot.main(["confusion", f"--out_dir={runs['trec']}"]) == 0
    check_png(runs["trec"] / "confusion.png", (8, 7))


def study(values, baseline="base", higher_is_better=False, metric="loss"):
    """A results.json as ablate.py writes it, from {variant: [one value per seed]}, summarised by
    ablate.summarize itself (Welch p-values included), so the chart is checked against the real thing."""
    import ablate
    runs = [{"variant": v, "seed": s, metric: x} for v, xs in values.items() for s, x in enumerate(xs)]
    return {"study": "toy", "metric": metric, "higher_is_better": higher_is_better, "baseline": baseline,
            "runs": runs, "summary": ablate.summarize(runs, list(values), metric, baseline)}


# lower is better; "far" is 30x the others' differences (no-residual in results/lm), "one" has one seed
TOY = {"base": [1.50, 1.52, 1.51], "worse": [1.56, 1.58, 1.55], "better": [1.48, 1.47, 1.49],
       "same": [1.49, 1.53, 1.52], "far": [2.90, 3.00, 3.20], "one": [1.60]}


def test_ablation_rows_are_welch_intervals_of_the_summary():
    from scipy import stats
    results = study(TOY)
    rows = {r["variant"]: r for r in plot.ablation_rows(results)}
    assert set(rows) == set(TOY) - {"base"}  # the baseline is the 0 line, not a row
    base = np.array(TOY["base"])
    for v, r in rows.items():
        x = np.array(TOY[v])
        assert r["diff"] == pytest.approx(x.mean() - base.mean(), abs=1e-12)
        assert sorted(r["seeds"]) == pytest.approx(sorted(x - base.mean()))  # each seed against the baseline mean
        if len(x) < 2:
            assert r["lo"] is None and r["hi"] is None  # one seed has no interval
            continue
        # scipy's own interval of the Welch test: catches a pooled variance, z instead of t, ddof=0
        ci = stats.ttest_ind(x, base, equal_var=False).confidence_interval(0.95)
        assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
        # and so the interval excludes 0 exactly when the study's p-value is below 0.05
        assert (r["lo"] > 0 or r["hi"] < 0) == (r["p_value"] < 0.05)


def test_ablation_rows_sorted_best_first_and_outliers():
    rows = plot.ablation_rows(study(TOY))
    assert [r["variant"] for r in rows] == ["better", "same", "worse", "one", "far"]  # lower is better
    assert [r["variant"] for r in rows if r["outlier"]] == ["far"]
    flipped = study({v: [-x for x in xs] for v, xs in TOY.items()}, higher_is_better=True)
    assert [r["variant"] for r in plot.ablation_rows(flipped)] == ["better", "same", "worse", "one", "far"]
    # no outlier when the differences are alike, nor among two variants (nothing to compare with)
    close = {k: TOY[k] for k in ("base", "worse", "better", "same")}
    assert not any(r["outlier"] for r in plot.ablation_rows(study(close)))
    assert not any(r["outlier"] for r in plot.ablation_rows(study({k: TOY[k] for k in ("base", "far", "same")})))


def test_ablation_figure_draws_the_rows():
    results = study(TOY)
    rows = plot.ablation_rows(results)
    fig = plot.ablation_figure(results)
    ax, ax_out = fig.axes[:2]

    def art(a, gid):
        found = [c for c in a.get_children() if c.get_gid() == gid]
        return found[0] if found else None
    # rows top to bottom in the sorted order, with n and p in each label
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ys = list(ax.get_yticks())
    assert [labels[ys.index(y)].split("\n")[0] for y in sorted(ys, reverse=True)] == [r["variant"] for r in rows]
    assert any("(n=1, p n/a)" in t for t in labels)
    for r, y in zip(rows, sorted(ys, reverse=True)):
        home, away = (ax_out, ax) if r["outlier"] else (ax, ax_out)
        mean = art(home, f"mean:{r['variant']}")
        assert mean is not None and art(away, f"mean:{r['variant']}") is None  # on its own panel only
        assert list(mean.get_offsets()[0]) == pytest.approx([r["diff"], y])  # the point is Δ, not the mean itself
        seeds = art(home, f"seeds:{r['variant']}").get_offsets()
        assert sorted(seeds[:, 0]) == pytest.approx(sorted(r["seeds"]))
        ci = next((c for c in home.collections if c.get_gid() == f"ci:{r['variant']}"), None)  # errorbar's lines
        if r["lo"] is None:
            assert ci is None
        else:  # the error bar's horizontal segment runs from lo to hi
            (x0, _), (x1, _) = ci.get_segments()[0]
            assert (x0, x1) == pytest.approx((r["lo"], r["hi"]))
    # the main panel's scale leaves the outlier out: the others are not squashed
    far = next(r for r in rows if r["outlier"])
    assert ax.get_xlim()[1] < far["diff"] / 4 and ax_out.get_xlim()[0] < far["lo"] < far["hi"] < ax_out.get_xlim()[1]
    # the baseline's own 95% t interval of its mean, centred on 0
    band = art(ax, "baseline_ci")  # a Rectangle spanning the axes' height
    band = np.array([band.get_x(), band.get_x() + band.get_width()])
    from scipy import stats
    half = stats.t.ppf(0.975, 2) * np.std(TOY["base"], ddof=1) / np.sqrt(3)
    assert (band.min(), band.max()) == pytest.approx((-half, half))
    assert "val loss (nats per token)" in ax.get_xlabel() and "95% Welch" in ax.get_xlabel()
    assert "'toy'" in fig.get_suptitle() and "1.5100" in fig.get_suptitle()


def test_ablation_committed_lm_study():
    """results/lm: the chart's differences are the summary's, no-residual alone is on its own scale,
    and every interval agrees with the committed p-value."""
    from pathlib import Path
    results = json.loads((Path(__file__).parent.parent / "results" / "lm" / "results.json").read_text())
    rows = plot.ablation_rows(results)
    summary = {s["variant"]: s for s in results["summary"]}
    assert len(rows) == len(summary) - 1
    for r in rows:
        assert r["diff"] == pytest.approx(summary[r["variant"]]["diff"], abs=1e-12)
        assert (r["lo"] > 0 or r["hi"] < 0) == (summary[r["variant"]]["p_value"] < 0.05)
    assert [r["variant"] for r in rows if r["outlier"]] == ["residual=off"]
    assert [r["diff"] for r in rows] == sorted(r["diff"] for r in rows)


def test_ablation_png_and_errors(tmp_path, capsys):
    results = study(TOY)
    fig = plot.ablation_figure(results)
    size = tuple(fig.get_size_inches())
    check_png(plot.plot_ablation(results, tmp_path / "a.png"), size)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert plot.main(["ablation", str(tmp_path)]) == 0
    check_png(tmp_path / "ablation.png", size)
    with pytest.raises(plot.PlotError, match="results have no summary"):
        plot.plot_ablation({k: v for k, v in results.items() if k != "summary"}, tmp_path / "x.png")
    no_base = dict(results, summary=[s for s in results["summary"] if s["variant"] != "base"])
    with pytest.raises(plot.PlotError, match="baseline 'base' has no finished runs"):
        plot.plot_ablation(no_base, tmp_path / "x.png")


def test_positions_with_and_without_checkpoint(runs, tmp_path):
    # without a run: sinusoidal similarity, RoPE spectrum, RoPE decay
    check_png(plot.plot_positions(tmp_path / "p.png", block_size=64, n_embd=32, n_head=2), (3 * 5.2, 5))
    # a run with learned positions adds the learned table's similarity matrix
    check_png(plot.plot_positions(tmp_path / "l.png", out_dir=runs["learned"]), (4 * 5.2, 5))
    check_png(plot.plot_positions(tmp_path / "r.png", out_dir=runs["rope"]), (3 * 5.2, 5))
    with pytest.raises(plot.PlotError, match="trained with block_size=16"):
        plot.plot_positions(tmp_path / "x.png", out_dir=runs["rope"], block_size=64)
    assert plot.main(["positions", "--block_size=32", "--n_embd=30", "--n_head=4", f"--out={tmp_path / 'y.png'}"]) == 1


# ---- helpers ----------------------------------------------------------------------------------

def test_char_classes_and_labels(runs):
    assert [plot.char_class(c) for c in "aZEx7;\n "] == [
        "vowel", "capital consonant", "capital vowel", "consonant", "digit", "punctuation", "whitespace", "whitespace"]
    _, _, tok = plot.load_run(runs["learned"])
    assert plot.token_label(tok, tok.stoi["\n"]) == "⏎" and plot.token_label(tok, tok.stoi[" "]) == "␣"


def test_log_time_continues_across_resume(tmp_path):
    recs = [{"kind": "train", "step": 0, "time": 1.0}, {"kind": "eval", "step": 10, "time": 5.0},
            {"kind": "train", "step": 10, "time": 0.5}, {"kind": "eval", "step": 20, "time": 2.0}]  # resumed at 10
    write_log(tmp_path, recs)
    assert [r["time"] for r in plot.read_log(tmp_path)] == [1.0, 5.0, 5.5, 7.0]
    (tmp_path / "log.jsonl").write_text("step 0 | loss 4.2\n")
    with pytest.raises(plot.PlotError, match="line 1, is not JSON"):
        plot.read_log(tmp_path)


def test_tsne_clamps_perplexity():
    x = np.random.default_rng(0).normal(size=(5, 8))
    assert plot.tsne(x).shape == (5, 2)
    with pytest.raises(plot.PlotError, match="at least 4 points, got 3"):
        plot.tsne(x[:3])


# ---- errors -----------------------------------------------------------------------------------

def test_missing_log(tmp_path, capsys):
    with pytest.raises(plot.PlotError, match=f"{tmp_path / 'log.jsonl'} not found: train a run"):
        plot.plot_curves([tmp_path], tmp_path / "c.png")
    assert plot.main(["curves", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "curves.png").exists()


def test_confusion_of_lm_run(runs, capsys):
    with pytest.raises(plot.PlotError, match="metrics.json of an lm run has no confusion matrix"):
        plot.plot_confusion(runs["learned"] / "metrics.json", runs["learned"] / "c.png")
    assert plot.main(["confusion", f"--out_dir={runs['learned']}"]) == 1
    assert "run train.py with --eval_only=true" in capsys.readouterr().err


def test_missing_out_dir(tmp_path, capsys):
    missing = tmp_path / "nope"
    for call in (lambda: plot.plot_embeddings(missing, tmp_path / "e.png"),
                 lambda: plot.plot_attention(missing, "ROMEO:", tmp_path / "a.png")):
        with pytest.raises(plot.PlotError, match=f"out_dir '{missing}' does not exist"):
            call()
    with pytest.raises(plot.PlotError, match="holds no checkpoint"):
        plot.plot_attention(tmp_path, "ROMEO:", tmp_path / "a.png")  # exists, but no run in it
    assert plot.main(["attention", f"--out_dir={missing}", "--text=ROMEO:"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert plot.main(["ablation", str(tmp_path)]) == 1
    assert "results.json not found" in capsys.readouterr().err


def test_unknown_characters_on_char_model(runs, tmp_path, capsys):
    with pytest.raises(plot.PlotError, match=r"text 'ROMAN: ☃' cannot be encoded .* char tokenizer.*'☃'"):
        plot.plot_attention(runs["learned"], "ROMAN: ☃", tmp_path / "a.png")
    assert plot.main(["attention", f"--out_dir={runs['learned']}", "--text=ROMAN: ☃"]) == 1
    assert capsys.readouterr().err.startswith("error: text 'ROMAN: ☃' cannot be encoded")


# ---- attention_bench: bench.py --mode=attention ----------------------------------------------

def attention_bench(rows):
    """A bench.py --mode=attention JSON with the given rows (ms and peak MiB per kernel)."""
    return {"mode": "attention", "dtype": "bfloat16", "tokens": 4096, "rows": rows, "repeats": 20,
            "device": "toy GPU", "torch": "2.x", "date": "2026-12-01"}


def bench_row(T, manual_ms, sdpa_ms, manual_mb, sdpa_mb):
    row = {"T": T, "batch": 4096 // T, "n_head": 12, "head_dim": 64, "manual_ms": manual_ms, "sdpa_ms": sdpa_ms,
           "manual_peak_mb": manual_mb, "sdpa_peak_mb": sdpa_mb}
    if manual_ms is None:  # out of memory: bench.py writes ms None, no peak and no speedup
        del row["manual_peak_mb"]
    else:
        row["speedup"] = manual_ms / sdpa_ms
    return row


def test_attention_bench_draws_each_kernel_on_both_panels(tmp_path):
    # rows out of order, every value distinct (ms 1-9, MiB 100-900): a swapped axis or kernel shows;
    # manual is out of memory at the longest length
    rows = [bench_row(512, 4.0, 2.0, 400.0, 200.0), bench_row(128, 1.0, 3.0, 100.0, 300.0),
            bench_row(2048, None, 5.0, None, 500.0), bench_row(256, 7.0, 9.0, 700.0, 900.0)]
    fig = plot.attention_bench_figure(attention_bench(rows))
    ax_ms, ax_mb = fig.axes[:2]

    def line(ax, gid):
        found = [ln for ln in ax.lines if ln.get_gid() == gid]
        assert len(found) == 1, f"{gid}: {len(found)} lines"
        return list(found[0].get_xdata()), list(found[0].get_ydata())
    assert line(ax_ms, "ms:manual") == ([128, 256, 512], [1.0, 7.0, 4.0])  # sorted by T, the OOM length left out
    assert line(ax_ms, "ms:sdpa") == ([128, 256, 512, 2048], [3.0, 9.0, 2.0, 5.0])
    assert line(ax_mb, "mb:manual") == ([128, 256, 512], [100.0, 700.0, 400.0])
    assert line(ax_mb, "mb:sdpa") == ([128, 256, 512, 2048], [300.0, 900.0, 200.0, 500.0])
    for ax in (ax_ms, ax_mb):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "sequence length T (tokens" in ax.get_xlabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "256", "512", "2048"]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[0].startswith("manual") and "out of memory at T = 2048" in legend[0]
        assert legend[1].startswith("sdpa") and "out of memory" not in legend[1]
    assert "(ms" in ax_ms.get_ylabel() and "(MiB" in ax_mb.get_ylabel()
    # the speedup over each length where both ran, above the manual point
    notes = {(t.xy, t.get_text()) for t in ax_ms.texts}
    assert notes == {((128, 1.0), "0.3x"), ((256, 7.0), "0.8x"), ((512, 4.0), "2.0x")}
    assert "12 heads x 64" in fig.get_suptitle() and "4,096 tokens" in fig.get_suptitle()
    check_png(plot.plot_attention_bench(attention_bench(rows), tmp_path / "a.png"), (12, 5))


def test_attention_bench_cli_and_errors(tmp_path, capsys):
    src = tmp_path / "attention.json"
    src.write_text(json.dumps(attention_bench([bench_row(128, 1.0, 0.5, 100.0, 50.0),
                                               bench_row(256, 2.0, 0.6, 200.0, 50.0)])))
    assert plot.main(["attention_bench", str(src)]) == 0  # the PNG goes next to the JSON
    check_png(tmp_path / "attention_bench.png", (12, 5))
    src.write_text(json.dumps({"mode": "train", "ms_per_step": 15.0}))
    assert plot.main(["attention_bench", str(src), f"--out={tmp_path / 'x.png'}"]) == 1
    assert "expected the JSON of bench.py --mode=attention, got mode 'train'" in capsys.readouterr().err
    with pytest.raises(plot.PlotError, match="has no rows"):
        plot.attention_bench_figure({"mode": "attention", "rows": []})
    assert plot.main(["attention_bench", str(tmp_path / "missing.json")]) == 1
    assert "missing.json not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


# ---- scaling: a size study's metric against parameters ---------------------------------------

def scaling_results(runs):
    return {"study": "scaling", "description": "loss against size", "metric": "best_val",
            "higher_is_better": False, "device": "cpu", "torch": "x", "date": "2026-12-01",
            "runs": [{"variant": v, "seed": s, "params": p, "best_val": m} for v, s, p, m in runs]}


def test_scaling_plots_the_mean_of_each_size_in_order_of_parameters(tmp_path):
    """Each size's seeds as points and their mean ± std on a line, in increasing parameters on a log
    axis. Bugs caught: sizes joined in the study's order (not by size), std over one seed's nan, a
    run without a metric counted."""
    runs = [("6x384", 0, 10.7e6, 1.44), ("6x384", 1, 10.7e6, 1.46), ("2x128", 0, 0.4e6, 1.70),
            ("2x128", 1, 0.4e6, 1.74), ("8x512", 0, 25e6, 1.47), ("8x512", 1, 25e6, None)]
    fig = plot.scaling_figure(scaling_results(runs))
    ax = fig.axes[0]
    mean = next(c for c in ax.containers if c.lines[0].get_gid() == "mean")
    x, y = mean.lines[0].get_data()
    assert list(x) == [0.4e6, 10.7e6, 25e6] and list(y) == pytest.approx([1.72, 1.45, 1.47])
    bars = mean.lines[2][0].get_segments()  # one size's bar: (p, mean - std) to (p, mean + std)
    lengths = [b[1][1] - b[0][1] for b in bars]  # 2 std; one seed: 0, not nan
    assert lengths == pytest.approx([2 * 0.02 * 2 ** 0.5, 0.02 * 2 ** 0.5, 0])
    seeds = {c.get_gid(): c.get_offsets()[:, 1].tolist() for c in ax.collections
             if str(c.get_gid()).startswith("seeds:")}
    assert seeds == {"seeds:2x128": [1.70, 1.74], "seeds:6x384": [1.44, 1.46], "seeds:8x512": [1.47]}
    assert ax.get_xscale() == "log" and "parameters" in ax.get_xlabel()
    assert "best val loss" in ax.get_ylabel()
    check_png(plot.plot_scaling(scaling_results(runs), tmp_path / "s.png"), (7.5, 5))


def test_scaling_cli_and_errors(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps(scaling_results(
        [("a", 0, 1e5, 2.0), ("b", 0, 1e6, 1.8)])))
    assert plot.main(["scaling", str(tmp_path)]) == 0
    check_png(tmp_path / "scaling.png", (7.5, 5))
    (tmp_path / "results.json").write_text(json.dumps(scaling_results([("a", 0, 1e5, 2.0)])))
    assert plot.main(["scaling", str(tmp_path)]) == 1
    assert "at least two variants" in capsys.readouterr().err


def test_versus_reads_both_programs_evaluation_lines(tmp_path, capsys):
    """Time-stamped logs of nanoGPT ('step N: train loss A, val loss B') and of train.py ('step N: val
    loss B | ...'): every evaluation line, and nothing else (training lines, 'iter' lines), in order,
    against seconds and steps; a log without stamps is refused by name. Bugs caught: the train loss
    read as the val loss, a training line taken for an evaluation, an unstamped log drawn empty."""
    nano = tmp_path / "nano.log"
    nano.write_text("[    3.18] Overriding config\n[   36.24] iter 0: loss 4.2667, time 27004.23ms\n"
                    "[   40.60] step 250: train loss 1.9, val loss 2.0793\n"
                    "[   69.33] step 1750: train loss 1.1, val loss 1.4624\n")
    ours = tmp_path / "ours.log"
    ours.write_text("[   30.12] step      0/3000 | loss 4.2069 | lr 9.90e-06\n"
                    "[   37.13] step 250: val loss 2.0742 | perplexity 7.9580 (best) | 34.0 s\n"
                    "[  110.68] step 2750: val loss 1.4422 | perplexity 4.2302 (best) | 107.5 s\n")
    assert plot.stamped_evals(nano) == [(40.6, 250, 2.0793), (69.33, 1750, 1.4624)]
    assert plot.stamped_evals(ours) == [(37.13, 250, 2.0742), (110.68, 2750, 1.4422)]
    fig = plot.versus_figure([nano, ours], ["nanoGPT", "ours"])
    ax_time, ax_step = fig.axes
    lines = {l.get_gid(): l.get_data() for l in ax_time.lines if l.get_gid()}
    assert list(lines["val:ours"][0]) == [37.13, 110.68] and list(lines["val:nanoGPT"][1]) == [2.0793, 1.4624]
    assert [list(l.get_data()[0]) for l in ax_step.lines if l.get_gid() == "val:ours"] == [[250, 2750]]
    assert ax_time.get_xlabel() == "seconds from launch" and "val loss" in ax_time.get_ylabel()
    assert plot.main(["versus", str(nano), str(ours), "--labels=nanoGPT,ours"]) == 0
    check_png(tmp_path / "versus.png", (12, 4.8))
    (tmp_path / "plain.log").write_text("step 250: val loss 2.0\n")
    assert plot.main(["versus", str(tmp_path / "plain.log")]) == 1
    assert "no time-stamped evaluation lines" in capsys.readouterr().err
    with pytest.raises(plot.PlotError, match="2 labels for 1 logs"):
        plot.versus_figure([nano], ["a", "b"])


# ---- the numbers and labels each figure draws ------------------------------------------------

def captured(monkeypatch):
    """The figures plot.save is given, in order (nothing is written)."""
    figs = []
    monkeypatch.setattr(plot, "save", lambda fig, path: figs.append(fig) or path)
    return figs


def test_ablation_rows_of_one_flat_side_a_run_without_the_metric_and_few_variants():
    """A variant whose seeds agree still gets the Welch interval when the baseline has spread (its
    p-value exists too); a run without the metric is no seed dot; three variants are enough to name
    an outlier; a study whose median |Δ| is 0 names none. Catches: an interval only when both
    sides spread, a None seed value, outliers only from four variants, every nonzero Δ an outlier
    when most are exactly 0."""
    from scipy import stats
    results = study({"base": TOY["base"], "flat": [1.25, 1.25, 1.25]})  # std exactly 0
    results["runs"].append({"variant": "flat", "seed": 3, "loss": None})  # a diverged seed
    [row] = plot.ablation_rows(results)
    with warnings.catch_warnings():  # scipy notes that one side has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind([1.25] * 3, TOY["base"], equal_var=False).confidence_interval(0.95)
    assert results["summary"][1]["std"] == 0
    assert row["lo"] is not None and (row["lo"], row["hi"]) == pytest.approx((ci.low, ci.high))
    assert row["seeds"] == pytest.approx([1.25 - 1.51] * 3)
    three = study({k: TOY[k] for k in ("base", "worse", "better", "far")})
    assert [r["variant"] for r in plot.ablation_rows(three) if r["outlier"]] == ["far"]
    zero = study({"base": [1.0, 1.1, 1.2], "a": [1.0, 1.1, 1.2], "b": [1.0, 1.1, 1.2],
                  "c": [1.2, 1.3, 1.4]})
    assert not any(r["outlier"] for r in plot.ablation_rows(zero))


def test_ablation_figure_writes_each_interval_and_the_seed_counts():
    """Each row's number reads 'Δ [lo, hi]' of that row, and the title gives the range of seeds per
    variant. Catches: a wrong end of the interval printed, the seed count of one variant only."""
    results = study(TOY)
    fig = plot.ablation_figure(results)
    texts = {t.get_text() for a in fig.axes[:2] for t in a.texts}
    for r in plot.ablation_rows(results):
        if r["lo"] is not None:
            lo, hi = plot.delta(r["lo"]), plot.delta(r["hi"])
            assert f"{plot.delta(r['diff'])} [{lo}, {hi}]" in texts
    assert "(1-3 seeds per variant)" in fig.get_suptitle()


def test_ablation_says_which_side_lacks_the_seeds_for_an_interval():
    """A row without an interval says why: one seed on both sides, its own single seed, the
    baseline's single seed (a 3-seed variant against a 1-seed baseline), or no spread on either
    side. Catches: '1 seed' printed for a variant that has three (the wt2long chart, whose
    baseline ran once)."""
    results = study({"base": [1.5], "three": [1.4, 1.41, 1.42], "one": [1.3]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = {r["variant"]: r for r in plot.ablation_rows(results)}
        texts = {t.get_text() for a in plot.ablation_figure(results).axes[:2] for t in a.texts}
    assert rows["three"]["no_ci"] == "the baseline has 1 seed"
    assert rows["one"]["no_ci"] == "1 seed each"
    assert f"{plot.delta(rows['three']['diff'])} (no CI: the baseline has 1 seed)" in texts
    assert f"{plot.delta(rows['one']['diff'])} (no CI: 1 seed each)" in texts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        [flat] = plot.ablation_rows(study({"base": [1.5, 1.5], "same": [1.4, 1.4]}))
    assert flat["lo"] is None and flat["no_ci"] == "no spread in the seeds"
    [one] = plot.ablation_rows(study({"base": [1.5, 1.52], "one": [1.4]}))
    assert one["no_ci"] == "1 seed"


def test_scaling_orders_by_parameters_with_mean_and_sample_std():
    """Sizes named against their parameter order, three seeds each: the line joins them by
    parameters, at each size's mean with the sample std (ddof=1) as its error bar. Catches: sizes
    sorted by name, the median for the mean, the population std."""
    runs = [("small", s, 1e5, v) for s, v in enumerate([2.0, 2.1, 2.6])]
    runs += [("big", s, 1e7, v) for s, v in enumerate([1.0, 1.2, 1.7])]
    runs += [("medium", s, 1e6, v) for s, v in enumerate([1.5, 1.5, 1.8])]
    ax = plot.scaling_figure(scaling_results(runs)).axes[0]
    mean = next(c for c in ax.containers if c.lines[0].get_gid() == "mean")
    x, y = mean.lines[0].get_data()
    values = [[2.0, 2.1, 2.6], [1.5, 1.5, 1.8], [1.0, 1.2, 1.7]]
    assert list(x) == [1e5, 1e6, 1e7] and list(y) == pytest.approx([np.mean(v) for v in values])
    bars = mean.lines[2][0].get_segments()  # one vertical segment per size: mean -+ std
    half = [(seg[1][1] - seg[0][1]) / 2 for seg in bars]
    assert half == pytest.approx([np.std(v, ddof=1) for v in values])


def test_versus_stars_each_logs_best_point_and_frames_the_best_losses(tmp_path):
    """The starred point of each log is its lowest val loss, and the y axis runs from just under
    the best loss of all logs to 0.35 above it. Catches: the worst point starred, the frame set
    around the worst loss."""
    log = tmp_path / "a.log"
    log.write_text("[ 10.0] step 100: val loss 2.50\n[ 20.0] step 200: val loss 1.40\n"
                   "[ 30.0] step 300: val loss 1.60\n")
    fig = plot.versus_figure([log], ["a"])
    for ax, x in zip(fig.axes, (20.0, 200)):
        [star] = [ln for ln in ax.lines if ln.get_marker() == "*"]
        assert list(star.get_xdata()) == [x] and list(star.get_ydata()) == [1.40]
        assert ax.get_ylim() == pytest.approx((1.40 - 0.03, 1.40 + 0.35))


def test_curves_plot_val_records_as_val_and_time_in_the_named_unit(tmp_path, monkeypatch):
    """The val line holds the eval records and the train line the train records, and the wall-time
    panel is in the unit its label names (minutes for a 30-minute log). Catches: train records drawn
    as val, seconds plotted on a minutes axis."""
    recs = [{"kind": "train", "step": 0, "time": 0.0, "loss": 4.0, "lr": 1e-3},
            {"kind": "train", "step": 10, "time": 900.0, "loss": 3.0, "lr": 1e-3},
            {"kind": "eval", "step": 10, "time": 960.0, "loss": 3.5},
            {"kind": "train", "step": 20, "time": 1800.0, "loss": 2.0, "lr": 5e-4}]
    write_log(tmp_path, recs)
    figs = captured(monkeypatch)
    plot.plot_curves([tmp_path], tmp_path / "c.png", labels=["r"])
    ax_step, ax_time, ax_lr = figs[0].axes
    lines = {ln.get_label(): ln.get_data() for ln in ax_time.lines}
    assert "(min)" in ax_time.get_xlabel()
    assert list(lines["r train"][0]) == [0, 15, 30] and list(lines["r train"][1]) == [4, 3, 2]
    assert list(lines["r val"][0]) == [16] and list(lines["r val"][1]) == [3.5]
    assert [list(d) for d in ax_step.lines[1].get_data()] == [[10], [3.5]]
    assert [list(d) for d in ax_lr.lines[0].get_data()] == [[0, 10, 20], [1e-3, 1e-3, 5e-4]]


def test_curves_frame_the_losses_from_the_first_evaluation_down(tmp_path, monkeypatch):
    """The loss panels top out just above the first val loss, so the initial ln(vocab) loss does
    not squash the curves, and still hold every later point; a log whose first evaluation is its
    highest loss, or a run without an evaluation beside it, keeps matplotlib's own frame. Catches:
    the frame set around the initial loss, one that cuts off the lowest train losses or a later
    spike, a run with no evaluation yet drawn out of view."""
    recs = [{"kind": "train", "step": 0, "time": 0.0, "loss": 10.0, "lr": 1e-3},
            {"kind": "eval", "step": 10, "time": 1.0, "loss": 5.0},
            {"kind": "train", "step": 20, "time": 2.0, "loss": 3.0, "lr": 1e-3},
            {"kind": "eval", "step": 20, "time": 2.5, "loss": 4.0}]
    write_log(tmp_path, recs)
    figs = captured(monkeypatch)
    plot.plot_curves([tmp_path], tmp_path / "c.png", labels=["r"])
    for ax in figs[0].axes[:2]:
        lo, hi = ax.get_ylim()
        assert lo < 3.0 < 5.0 < hi < 6.0
        assert "above the frame" in ax.get_title()
    write_log(tmp_path, [dict(recs[1], step=0, loss=10.0)] + recs[2:])
    plot.plot_curves([tmp_path], tmp_path / "c.png", labels=["r"])
    for ax in figs[1].axes[:2]:
        assert ax.get_ylim()[1] >= 10.0 and "frame" not in ax.get_title()
    # a later loss above the first evaluation (a rising val, a training spike) stays in the frame,
    # and a diverged step's NaN loss does not spoil it
    nan = {"kind": "train", "step": 10, "time": 1.0, "loss": float("nan"), "lr": 1e-3}
    write_log(tmp_path, recs[:1] + [nan] + recs[1:]
              + [{"kind": "eval", "step": 30, "time": 3.0, "loss": 7.5},
                 {"kind": "train", "step": 40, "time": 4.0, "loss": 8.5, "lr": 1e-3}])
    plot.plot_curves([tmp_path], tmp_path / "c.png", labels=["r"])
    lo, hi = figs[2].axes[0].get_ylim()
    assert lo < 3.0 and 8.5 < hi < 10.0
    # one loss from the first evaluation on: a frame around it, not a zero-height one
    lo, hi = plot.loss_frame([[recs[0], recs[1]]])
    assert lo < 5.0 < hi < 10.0
    # a run with no evaluation yet would vanish from a frame set by the others: none is set
    (tmp_path / "b").mkdir()
    write_log(tmp_path / "b", [{"kind": "train", "step": 0, "time": 0.0, "loss": 9.0, "lr": 1e-3}])
    write_log(tmp_path, recs)
    plot.plot_curves([tmp_path, tmp_path / "b"], tmp_path / "c.png", labels=["r", "b"])
    assert figs[3].axes[0].get_ylim()[1] >= 10.0 and "frame" not in figs[3].axes[0].get_title()


def test_attention_heatmaps_are_the_models_own_maps(runs, tmp_path, monkeypatch):
    """Each panel shows the attention of its own layer and head, as model.attention_maps gives it,
    and --layer picks that layer. Catches: one head's map repeated in every panel, --layer=1
    drawing layer 0."""
    _, model, tok = plot.load_run(runs["learned"])
    text = "ROMAN:\nO"
    with torch.no_grad():
        maps = model.attention_maps(torch.tensor([tok.encode(text)]))
    figs = captured(monkeypatch)
    plot.plot_attention(runs["learned"], text, tmp_path / "a.png")
    plot.plot_attention(runs["learned"], text, tmp_path / "b.png", layer=1)
    for fig, layers in zip(figs, ([0, 1], [1])):
        panels = [ax for ax in fig.axes if ax.images]
        assert [ax.get_title() for ax in panels] == [f"layer {l}, head {h}"
                                                     for l in layers for h in range(2)]
        for ax, (l, h) in zip(panels, [(l, h) for l in layers for h in range(2)]):
            assert np.asarray(ax.images[0].get_array()) == pytest.approx(
                maps[l][0, h].float().numpy(), abs=1e-6)
    assert not torch.allclose(maps[0][0, 0], maps[0][0, 1])  # the heads differ, so a mix-up shows


def test_confusion_cells_are_fractions_of_the_true_class(tmp_path, monkeypatch):
    """Each cell is coloured by its share of the row (the true label), so the diagonal is the
    recall. Catches: cells divided by the column (precision) instead."""
    figs = captured(monkeypatch)
    plot.plot_confusion({"confusion": [[3, 1], [0, 2]], "labels": ["a", "b"]}, tmp_path / "c.png")
    frac = np.asarray(figs[0].axes[0].images[0].get_array())
    assert frac == pytest.approx(np.array([[0.75, 0.25], [0.0, 1.0]]))


def test_positions_panels_hold_the_similarities_and_rope_wavelengths(tmp_path, monkeypatch):
    """The sinusoidal panel is the cosine similarity of position vectors (1 on the diagonal,
    symmetric), the spectrum is RoPE's wavelength 2π/θ_i, and the decay curve is
    mean_i cos(m θ_i).
    Catches: vectors normalised over positions instead of dimensions, frequencies for wavelengths,
    one pair's cosine for the mean."""
    figs = captured(monkeypatch)
    T, C, nh, base = 32, 32, 2, 10000.0
    plot.plot_positions(tmp_path / "p.png", block_size=T, n_embd=C, n_head=nh, rope_base=base)
    sim_ax, spec_ax, decay_ax = figs[0].axes[:3]
    sim = np.asarray(sim_ax.images[0].get_array())
    assert np.diag(sim) == pytest.approx(np.ones(T), abs=1e-5) and sim == pytest.approx(sim.T)
    theta = base ** (-np.arange(0, C // nh, 2) / (C // nh))
    assert list(spec_ax.lines[0].get_ydata()) == pytest.approx(2 * np.pi / theta)
    m = np.arange(T)[:, None]
    assert list(decay_ax.lines[0].get_ydata()) == pytest.approx(np.cos(m * theta).mean(1),
                                                                 abs=1e-5)


# ---- depth: one study at several depths -----------------------------------------------------

def depth_study(home, n_layer, values, study="postln"):
    """A results directory as ablate.py writes it: results.json, and runs/NAME/config.json with
    the run's n_layer. values: {variant: [metric of each seed]}."""
    runs = []
    for variant, seeds in values.items():
        for s, v in enumerate(seeds):
            out = f"runs/{variant}-s{s}"
            (home / out).mkdir(parents=True)
            (home / out / "config.json").write_text(json.dumps({"model": {"n_layer": n_layer}}))
            runs.append({"variant": variant, "seed": s, "out_dir": out, "loss": v})
    results = {"study": study, "description": "norms", "metric": "loss", "runs": runs,
               "device": "cpu", "date": "2026-12-07"}
    (home / "results.json").write_text(json.dumps(results))
    return results, home


def test_depth_joins_each_variant_by_depth_and_puts_a_failed_mean_off_scale(tmp_path):
    """Three depths given out of order; at 12 layers one variant's mean is the unigram plateau.
    Each variant's means are joined in increasing depth with the sample std as the bar, the
    failed mean is not drawn to scale but as a triangle at the top with its value, and the y
    range stays on the others. Bugs caught: depths joined in the order given, the depth read from
    the wrong place, the failed run squashing the others, the failed value hidden."""
    studies = [depth_study(tmp_path / "L16", 16, {"post": [1.49, 1.50], "pre": [1.52, 1.53]}),
               depth_study(tmp_path / "L8", 8, {"post": [1.51, 1.52], "pre": [1.52, 1.54]}),
               depth_study(tmp_path / "L12", 12, {"post": [3.347, 3.348], "pre": [1.51, 1.52]})]
    series = plot.depth_series(studies)
    assert [d for d, _ in series["post"]] == [8, 12, 16]
    assert series["pre"] == [(8, [1.52, 1.54]), (12, [1.51, 1.52]), (16, [1.52, 1.53])]
    fig = plot.depth_figure(studies)
    ax = fig.axes[0]
    post = next(c for c in ax.containers if c.lines[0].get_gid() == "mean:post")
    y = post.lines[0].get_ydata()
    assert y[0] == pytest.approx(1.515) and np.isnan(y[1]) and y[2] == pytest.approx(1.495)
    bars = post.lines[2][0].get_segments()
    assert bars[0][1][1] - bars[0][0][1] == pytest.approx(2 * np.std([1.51, 1.52], ddof=1))
    off = [c for c in ax.collections if c.get_gid() == "off:post"]
    assert len(off) == 1 and any("3.3475, off scale" in t.get_text() for t in ax.texts)
    assert ax.get_ylim()[1] < 2.0 and list(ax.get_xticks()) == [8, 12, 16]
    check_png(plot.plot_depth(studies, tmp_path / "d.png"), (9.5, 5.2))


def test_depth_cli_and_errors(tmp_path, capsys):
    depth_study(tmp_path / "a", 4, {"post": [1.6], "pre": [1.55]})
    depth_study(tmp_path / "b", 8, {"post": [1.5], "pre": [1.52]})
    assert plot.main(["depth", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    check_png(tmp_path / "depth.png", (9.5, 5.2))
    assert plot.main(["depth", str(tmp_path / "a")]) == 1  # one depth is no chart
    assert "at least two results directories" in capsys.readouterr().err
    depth_study(tmp_path / "c", 8, {"base": [1.5]}, study="heads")
    assert plot.main(["depth", str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "one study at several depths" in capsys.readouterr().err
    assert plot.main(["depth", str(tmp_path / "a"), str(tmp_path / "missing")]) == 1
    assert "missing/results.json not found" in capsys.readouterr().err
    (tmp_path / "b" / "runs" / "pre-s0" / "config.json").write_text(
        json.dumps({"model": {"n_layer": 6}}))
    assert plot.main(["depth", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "runs of 2 depths" in capsys.readouterr().err


def test_depth_refuses_a_depth_twice_and_puts_a_low_failure_at_the_bottom(tmp_path, capsys):
    """Two directories at one depth would pool (and maybe double) their seeds: refused by name. An
    accuracy study whose failed variant scores low gets its triangle at the bottom edge, below
    the others. A run without config.json is named. Bugs caught: silent pooling, a low failure
    drawn at the top, a bare KeyError or OSError."""
    a = depth_study(tmp_path / "a", 8, {"x": [0.9], "y": [0.91]})
    b = depth_study(tmp_path / "b", 8, {"x": [0.92], "y": [0.9]})
    with pytest.raises(plot.PlotError, match=r"more than one results directory at \[8\] layers"):
        plot.depth_series([a, b])
    c = depth_study(tmp_path / "c", 12, {"x": [0.89, 0.9], "y": [0.2, 0.21]})
    d = depth_study(tmp_path / "d", 16, {"x": [0.9, 0.91], "y": [0.9, 0.89]})
    fig = plot.depth_figure([a, c, d])
    ax = fig.axes[0]
    (low,) = [col for col in ax.collections if col.get_gid() == "off:y"]
    assert low.get_offsets()[0][1] < 0.89 and ax.get_ylim()[0] <= low.get_offsets()[0][1]
    assert ax.get_ylim()[0] > 0.3  # the failure does not stretch the axis down to 0.2
    (tmp_path / "d" / "runs" / "x-s0" / "config.json").unlink()
    assert plot.main(["depth", str(tmp_path / "a"), str(tmp_path / "d")]) == 1
    assert "x-s0/config.json not found" in capsys.readouterr().err


# ---- mutation sweep 2026-12-07f: what the figures and helpers must hold -----------------------

def test_time_unit_thresholds():
    """Seconds up to 10 minutes, minutes up to 3 hours, hours beyond. Catches: hours from 1 hour
    (a 2-hour run read as 2 h, not 120 min), minutes from 10 minutes exactly."""
    assert plot.time_unit(600) == (1, "s") and plot.time_unit(601) == (60, "min")
    assert plot.time_unit(2 * 3600) == (60, "min") and plot.time_unit(3 * 3600) == (60, "min")
    assert plot.time_unit(3 * 3600 + 1) == (3600, "h")


def test_read_log_refuses_a_boolean_step_and_a_log_without_records(tmp_path):
    """A step or time that is a bool (true/false typed in place of a number) is a damaged record,
    and a log of startup records only has nothing to draw: PlotErrors that say so. Catches: bools
    taken for numbers (True is an int), an empty list returned (max() of nothing later)."""
    write_log(tmp_path, [{"kind": "train", "step": True, "time": 1.0, "loss": 4.0, "lr": 1e-3}])
    with pytest.raises(plot.PlotError, match="damaged train record"):
        plot.read_log(tmp_path)
    write_log(tmp_path, [{"kind": "startup", "step": 0, "time": 0.5}])
    with pytest.raises(plot.PlotError, match="holds no train or eval records yet"):
        plot.read_log(tmp_path)


def test_attention_labels_rows_and_the_cropping_note(runs, tmp_path, monkeypatch):
    """The rows are labelled with the tokens in order (query i is row i), the key axis is named
    under the bottom row only, and the title notes a crop only when the text is longer than the
    context. Catches: the row labels reversed, the x label on the top row, a crop note for a text
    of exactly block_size tokens."""
    figs = captured(monkeypatch)
    plot.plot_attention(runs["learned"], "ROMAN:\nO", tmp_path / "a.png")
    plot.plot_attention(runs["learned"], "A" * 16, tmp_path / "b.png")  # block_size = 16
    plot.plot_attention(runs["learned"], "A" * 17, tmp_path / "c.png")
    panels = [ax for ax in figs[0].axes if ax.images]
    for ax in panels:
        assert [t.get_text() for t in ax.get_yticklabels()] == list("ROMAN:⏎O")
    assert [ax.get_xlabel() for ax in panels] == ["", ""] + ["key (attended-to token)"] * 2
    assert "(first" not in figs[1].get_suptitle()
    assert "(first 16 of 17 tokens)" in figs[2].get_suptitle()


def test_token_label_of_an_empty_token():
    """A token that decodes to nothing is shown as '∅', not as an empty tick label."""
    from types import SimpleNamespace
    assert plot.token_label(SimpleNamespace(kind="char", itos=["", "a b"]), 0) == "∅"
    assert plot.token_label(SimpleNamespace(kind="char", itos=["", "a b"]), 1) == "a␣b"


def test_tsne_perplexity_is_a_third_of_the_points_at_most_30(monkeypatch):
    """The perplexity is (n - 1) / 3, at least 1 and at most 30, as the docstring says. Catches:
    another clamp (n - 1) / 2, a perplexity above 30 for large inputs."""
    import sklearn.manifold
    seen = []

    class Fake:
        def __init__(self, perplexity, **kw):
            seen.append(perplexity)

        def fit_transform(self, x):
            return np.zeros((len(x), 2))

    monkeypatch.setattr(sklearn.manifold, "TSNE", Fake)
    for n in (4, 10, 61, 200):
        plot.tsne(np.zeros((n, 3)))
    assert seen == [1.0, 3.0, 20.0, 30.0]


def test_classifier_embeddings_colour_the_sampled_examples_by_their_own_labels(runs, monkeypatch,
                                                                              tmp_path):
    """With --max_points below the split's size, each point is coloured by the label of the example
    it is (a fixed random subset), and the title counts the points drawn. Catches: the labels of
    the first examples of the split used for a random subset, the split's size as the count."""
    monkeypatch.setattr(plot, "tsne", lambda x, seed=0: np.zeros((len(x), 2)))  # the data only
    figs = captured(monkeypatch)
    plot.plot_embeddings(runs["trec"], tmp_path / "e.png", split="train", max_points=40)
    ckpt, _, _ = plot.load_run(runs["trec"])
    data = plot.run_data(ckpt)
    labels = data.examples("train")[2]
    idx = np.sort(np.random.default_rng(0).permutation(len(labels))[:40])
    counts = np.bincount(labels[idx], minlength=len(data.label_names))
    assert counts.tolist() != np.bincount(labels[:40], minlength=len(counts)).tolist()
    ax = figs[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{name} ({c})" for name, c in zip(data.label_names, counts)]
    assert f"train split, 40 of {len(labels)} examples" in ax.get_title()


def test_confusion_cells_counts_an_empty_class_and_the_label_count(tmp_path, monkeypatch):
    """Each cell's text sits on its own cell (row: true label) and reads its count; a class with
    no examples is a row of 0 %, not NaN; the title counts all examples; labels that do not match
    the matrix are refused. Catches: texts transposed, a division by a zero row sum, the number of
    classes as the number of examples, the label check dropped."""
    figs = captured(monkeypatch)
    m = {"confusion": [[3, 1, 0], [0, 0, 0], [2, 0, 4]], "labels": ["a", "b", "c"]}
    plot.plot_confusion(m, tmp_path / "c.png")
    ax = figs[0].axes[0]
    assert np.asarray(ax.images[0].get_array())[1].tolist() == [0.0, 0.0, 0.0]
    cells = {t.get_position(): t.get_text().split("\n")[0] for t in ax.texts}
    assert cells == {(j, i): str(c) for i, row in enumerate(m["confusion"])
                     for j, c in enumerate(row)}
    assert "10 examples" in ax.get_title()
    with pytest.raises(plot.PlotError, match=r"shape \(3, 3\) does not match 2 labels"):
        plot.plot_confusion(dict(m, labels=["a", "b"]), tmp_path / "d.png")


def test_ablation_colours_rows_keeps_every_row_in_view_and_points_to_the_outlier():
    """A significantly better variant is green and a worse one red, whichever way is better; every
    row lies inside the y range; the outlier's row in the main panel says where it went. Catches:
    green and red swapped, the top row cut off, the pointer to the right panel dropped."""
    from matplotlib.colors import to_rgba
    for higher in (False, True):
        sign = -1 if higher else 1
        results = study({v: [sign * x for x in xs] for v, xs in TOY.items()},
                        higher_is_better=higher)
        rows = {r["variant"]: r for r in plot.ablation_rows(results)}
        assert rows["better"]["significant"] and rows["worse"]["significant"]
        fig = plot.ablation_figure(results)
        ax = fig.axes[0]
        for v, colour in (("better", "C2"), ("worse", "C3")):
            [mean] = [c for c in ax.collections if c.get_gid() == f"mean:{v}"]
            assert tuple(mean.get_facecolor()[0]) == pytest.approx(to_rgba(colour)), (higher, v)
        lo, hi = ax.get_ylim()
        assert all(lo < y < hi for y in ax.get_yticks())
        assert any(t.get_text().startswith(plot.delta(rows["far"]["diff"]) + ": off this scale")
                   for t in ax.texts)


def test_depth_variants_sit_either_side_of_their_depth_and_the_dates_are_a_range(tmp_path):
    """At each depth the variants are spread symmetrically about the tick; the title gives one
    date when all studies ran on it, else first to last. Catches: every variant shifted right of
    its depth, a date repeated as 'D to D', dates in the order given."""
    a = depth_study(tmp_path / "a", 8, {"x": [1.5], "y": [1.6], "z": [1.55]})
    b = depth_study(tmp_path / "b", 16, {"x": [1.4], "y": [1.5], "z": [1.45]})
    ax = plot.depth_figure([a, b]).axes[0]
    xs = [c.lines[0].get_xdata() for c in ax.containers]
    assert np.mean(xs, axis=0) == pytest.approx([8, 16])
    assert ax.get_title().endswith("cpu; 2026-12-07")
    a[0]["date"] = "2026-12-09"
    assert plot.depth_figure([a, b]).axes[0].get_title().endswith("2026-12-07 to 2026-12-09")


def test_study_depth_of_a_study_without_runs_is_refused(tmp_path):
    """A results.json without runs has no depth: a PlotError, not a KeyError from an empty set."""
    (tmp_path / "a").mkdir()
    results, home = depth_study(tmp_path / "a", 8, {})
    with pytest.raises(plot.PlotError, match="runs of 0 depths"):
        plot.study_depth(results, home)


def test_versus_frames_the_best_loss_of_all_logs(tmp_path):
    """The y range starts just under the lowest loss of every log, not of the first one. Catches:
    the frame set by the first log only (the second log's best point drawn below the axis)."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("[ 10.0] step 100: val loss 2.00\n[ 20.0] step 200: val loss 1.60\n")
    b.write_text("[ 12.0] step 100: val loss 1.90\n[ 24.0] step 200: val loss 1.45\n")
    for ax in plot.versus_figure([a, b], ["a", "b"]).axes:
        assert ax.get_ylim() == pytest.approx((1.45 - 0.03, 1.45 + 0.35))


def test_versus_labels_default_to_the_log_names_without_suffix(tmp_path, monkeypatch):
    """Without --labels each log is named by its file name less the suffix ('nano', not
    'nano.log')."""
    log = tmp_path / "nano.log"
    log.write_text("[ 10.0] step 100: val loss 2.00\n")
    figs = captured(monkeypatch)
    assert plot.main(["versus", str(log)]) == 0
    assert [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()] == ["nano"]


def test_positions_refuse_an_odd_head_dim_and_a_smaller_block_than_the_run(runs, tmp_path):
    """RoPE rotates pairs: an odd head dim is refused by name; a --block_size below the run's
    clashes as one above it does. Catches: the even-head-dim check dropped, only larger values
    taken for a clash."""
    with pytest.raises(plot.PlotError, match="even head dim"):
        plot.plot_positions(tmp_path / "p.png", block_size=8, n_embd=6, n_head=2)
    with pytest.raises(plot.PlotError, match="trained with block_size=16"):
        plot.plot_positions(tmp_path / "x.png", out_dir=runs["rope"], block_size=8)


def test_positive_options_at_least_their_bound(tmp_path):
    """--layer=0 and --max_points=4 are allowed ('at least'), 3 points and a zero size are not.
    Catches: 'at least' made strict (--layer=0 refused)."""
    import argparse
    assert plot.positive(int, 0)("0") == 0 and plot.positive(int, 4)("4") == 4
    # parsed, then refused for the missing run (not by argparse, which would exit)
    assert plot.main(["attention", f"--out_dir={tmp_path / 'none'}", "--text=x", "--layer=0"]) == 1
    for kind, least, text in ((int, 4, "3"), (int, None, "0")):
        with pytest.raises(argparse.ArgumentTypeError):
            plot.positive(kind, least)(text)


def test_ablation_of_a_results_file_writes_next_to_it(tmp_path):
    """Given results.json itself (not its directory), the chart goes beside it. Catches: the file
    taken for a directory (ablation.png written under results.json/)."""
    (tmp_path / "results.json").write_text(json.dumps(study(TOY)))
    assert plot.main(["ablation", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "ablation.png").is_file()
