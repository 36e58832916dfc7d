"""
Pictures of runs, models and studies, written as PNG files (headless: no display needed).

    python plot.py curves out-shakespeare out-rope --labels=learned,rope  # loss and lr, runs
                                                                          # overlaid
    python plot.py attention --out_dir=out-shakespeare --text="ROMEO:" --layer=0
    python plot.py embeddings --out_dir=out-trec --split=val              # t-SNE, coloured by label
    python plot.py positions --block_size=256 --n_embd=384 --n_head=6     # no checkpoint needed

Other kinds: `confusion --out_dir=RUN` (a classifier's metrics.json), `ablation results/lm`
(a study's results.json), `scaling results/scaling` (a size study's metric against parameters),
`depth results/postln-L8 results/postln-L16 ...` (one study at several depths, each variant's
metric against n_layer), `attention_bench FILE.json` (bench.py --mode=attention's JSON) and
`versus LOG LOG --labels=A,B` (val loss of time-stamped training logs, e.g. nanoGPT's beside ours).
Every kind takes --out=PATH; by default the PNG goes into the run's directory (the current one for
positions without a run, and for several curves), named after the kind.
"""
import argparse
import io
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
# Figure + its own Agg canvas, never pyplot: no display, no global figure registry, no backend
# switch for whoever imports this module (ablate.py does)
from matplotlib.figure import Figure

import sample
import train
from data import Data, DataError, cls_batch, write_atomic
from model import rope_cos_sin, sinusoidal_table

DPI = 120  # every PNG is exactly figsize * DPI pixels (no bbox_inches='tight', which would crop)
MAX_TOKENS = 64  # attention heatmaps: beyond this the tick labels stop being readable


class PlotError(ValueError):
    """A user-reachable problem with a plot's input: the message names the value and the fix."""


def save(fig, path):
    """Write fig to path as PNG, atomically (data.write_atomic): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    write_atomic(path, png.getvalue())
    return path


def token_label(tok, i):
    """A short readable string for token id i: newline as '⏎', space as '␣'
    (so ' the' reads '␣the')."""
    s = tok.enc.decode([int(i)]) if tok.kind == "tiktoken" else tok.itos[int(i)]
    return s.replace("\n", "⏎").replace(" ", "␣") or "∅"


def load_run(out_dir):
    """(checkpoint, raw model in eval mode on CPU, tokenizer) of a run; ckpt_best.pt if it exists,
    as train.py --eval_only does, else ckpt_last.pt."""
    out = Path(out_dir)
    if not out.is_dir():
        raise PlotError(f"out_dir {str(out)!r} does not exist: train a run into it first "
                        f"(python train.py --out_dir={out} ...) or point --out_dir at an "
                        f"existing run")
    try:
        sample.find_checkpoint(out, "best")
    except train.CheckpointError:
        raise PlotError(f"out_dir {str(out)!r} holds no checkpoint (ckpt_best.pt or ckpt_last.pt): "
                        f"train a run into it first "
                        f"(python train.py --out_dir={out} ...)") from None
    model, tokenizer, ckpt, _ = sample.load(out, "best", "cpu")
    return ckpt, model, tokenizer


def run_title(out_dir, ckpt):
    return f"{Path(out_dir).name} ({ckpt['data']['name']}, step {ckpt['step']})"


# ----------------------------------------------------------------------------------------------
# curves: loss and learning rate from log.jsonl

def read_log(run_dir):
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise PlotError(f"{path} not found: train a run into {run_dir} first "
                        f"(python train.py --out_dir={run_dir} ...), or check the directory name")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PlotError(f"{path}, line {n}, is not JSON ({e.msg}): "
                                f"is this a log.jsonl of train.py?") from None
    records = [r for r in records if isinstance(r, dict) and r.get("kind") in ("train", "eval")]
    for r in records:  # a value changed in place must not surface as a KeyError deep in matplotlib
        if (not all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                    for k in ("step", "time"))
                or not all(isinstance(r[k], (int, float)) for k in ("loss", "lr") if k in r)):
            raise PlotError(f"{path} holds a damaged {r['kind']} record (step {r.get('step')!r}): "
                            f"step, time, loss and lr must be numbers; train.py --init_from=resume "
                            f"rewrites the log up to its checkpoint")
    if not records:
        raise PlotError(f"{path} holds no train or eval records yet: "
                        f"let the run reach its first log_interval")
    # "time" restarts at 0 in every process:
    # after a resume, continue from where the last one stopped
    offset = last = 0.0
    for r in records:
        if r["time"] + offset < last:
            offset = last
        r["time"] = last = r["time"] + offset
    return records


def read_json(path, rebuild):
    """A JSON file the project wrote, or a PlotError naming it and the command
    that writes it again."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlotError(f"{path} cannot be read as JSON ({getattr(e, 'msg', e)}): "
                        f"it is damaged; run {rebuild} to write it again") from None


def time_unit(seconds):
    """(divisor, name) so that wall-clock axes read in s, min or h rather than 7,200 s."""
    return (3600, "h") if seconds > 3 * 3600 else (60, "min") if seconds > 600 else (1, "s")


def loss_frame(logs):
    """(bottom, top) for the loss panels, or None for matplotlib's own: the first steps' loss
    (about ln(vocab_size) at initialisation) would squash the part of the curves worth reading,
    so the frame holds every loss from each run's first evaluation on, and cuts only the steps
    before it. Framed only when every run has an evaluation and something is cut."""
    def finite(records):
        return [r["loss"] for r in records if r.get("kind") in ("train", "eval")
                and isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    kept, every = [], []
    for log in logs:
        first = next((r["step"] for r in log if r.get("kind") == "eval" and "loss" in r), None)
        if first is None:
            return None
        kept += finite([r for r in log if r.get("step", 0) >= first])
        every += finite(log)
    if not kept or max(every) <= max(kept):
        return None
    low, top = min(every), max(kept)
    pad = 0.05 * (top - low) or 0.05 * max(abs(top), 1.0)  # one kept value: still a frame
    return low - pad, top + 3 * pad


def plot_curves(run_dirs, path, labels=None):
    """Train and val loss against step and wall time, lr against step; one colour per run."""
    run_dirs = [Path(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    labels = labels or [d.name or str(d) for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise PlotError(f"{len(labels)} labels ({', '.join(labels)}) for {len(run_dirs)} runs: "
                        f"give one label per run")
    logs = [read_log(d) for d in run_dirs]
    div, unit = time_unit(max(r.get("time", 0) for log in logs for r in log))
    fig = Figure(figsize=(16, 4.8), dpi=DPI, layout="constrained")
    ax_step, ax_time, ax_lr = fig.subplots(1, 3)
    for i, (log, label) in enumerate(zip(logs, labels)):
        color = f"C{i % 10}"
        tr = [r for r in log if r.get("kind") == "train" and "loss" in r]
        ev = [r for r in log if r.get("kind") == "eval" and "loss" in r]
        for ax, x in ((ax_step, "step"), (ax_time, "time")):
            scale = 1 if x == "step" else div
            # train loss is one noisy batch per point: thin;
            # val loss is exact over the split: markers
            if tr:  # a run without train (or val) records yet gets no legend entry for them
                ax.plot([r[x] / scale for r in tr], [r["loss"] for r in tr], color=color, lw=1,
                        alpha=0.6, label=f"{label} train")
            if ev:
                ax.plot([r[x] / scale for r in ev], [r["loss"] for r in ev], color=color, lw=2,
                        marker="o", ms=4, label=f"{label} val")
        if any("lr" in r for r in tr):
            ax_lr.plot([r["step"] for r in tr if "lr" in r], [r["lr"] for r in tr if "lr" in r],
                       color=color, lw=1.5, label=label)
    framed = loss_frame(logs)
    if framed:
        for ax in (ax_step, ax_time):
            ax.set_ylim(*framed)
    for ax, xlabel, title in ((ax_step, "step", "loss vs step"),
                              (ax_time, f"wall time ({unit})", "loss vs wall time")):
        note = " (the first steps' loss is above the frame)" if framed else ""
        ax.set(xlabel=xlabel, ylabel="cross-entropy loss (nats)", title=title + note)
        ax.grid(alpha=0.3)
    ax_step.legend(fontsize=8)
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate schedule")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_lr.grid(alpha=0.3)
    fig.suptitle("Training curves: " + ", ".join(labels))
    return save(fig, path)


# ----------------------------------------------------------------------------------------------
# attention heatmaps

def attention_figsize(n_rows, n_cols, n_tokens, longest=1):
    # inches per heatmap: room for one tick label per token
    cell = min(4.5, max(2.6, 0.065 * n_tokens))
    # x tick labels rotated 90 degrees hang below each row
    ticks = 0.06 * longest if longest > 1 else 0.0
    return (n_cols * (cell + ticks) + 1.2, n_rows * (cell + ticks) + 0.9)


def plot_attention(out_dir, text, path, layer=None, max_tokens=MAX_TOKENS):
    """Attention weights of every layer and head (or one layer) for text, tokens on both axes."""
    if not text:
        raise PlotError("--text is empty: give a text to look at, e.g. --text='ROMEO:'")
    ckpt, model, tok = load_run(out_dir)
    cfg = model.config
    try:
        ids = tok.encode(text)
    except ValueError as e:  # e.g. a character the char-level vocabulary lacks
        raise PlotError(f"text {text!r} cannot be encoded by {Path(out_dir).name}'s "
                        f"{tok.kind} tokenizer: {e}; "
                        f"use text from the training data's alphabet") from None
    limit = min(max_tokens, cfg.block_size)
    note = f" (first {limit} of {len(ids)} tokens)" if len(ids) > limit else ""
    ids = ids[:limit]
    layers = list(range(cfg.n_layer))
    if layer is not None:
        if not 0 <= layer < cfg.n_layer:
            raise PlotError(f"layer={layer} does not exist: "
                            f"the model has layers 0..{cfg.n_layer - 1}")
        layers = [layer]
    maps = model.attention_maps(torch.tensor([ids]))  # n_layer x (1, nh, T, T)
    labels = [token_label(tok, i) for i in ids]
    T = len(ids)
    fig = Figure(figsize=attention_figsize(len(layers), cfg.n_head, T, max(map(len, labels))),
                 dpi=DPI, layout="constrained")
    axes = fig.subplots(len(layers), cfg.n_head, squeeze=False)
    fontsize = 8 if T <= 24 else 6 if T <= 40 else 5
    for r, l in enumerate(layers):
        for h in range(cfg.n_head):
            ax = axes[r, h]
            im = ax.imshow(maps[l][0, h].float().numpy(), vmin=0, vmax=1, cmap="viridis")
            ax.set_title(f"layer {l}, head {h}", fontsize=10)
            ax.set_xticks(range(T), labels, rotation=90 if max(map(len, labels)) > 1 else 0,
                          fontsize=fontsize)
            ax.set_yticks(range(T), labels, fontsize=fontsize)
            if r == len(layers) - 1:
                ax.set_xlabel("key (attended-to token)")
            if h == 0:
                ax.set_ylabel("query (attending token)")
    fig.colorbar(im, ax=axes, shrink=0.8 if len(layers) < 3 else 0.5,
                 label="attention weight (rows sum to 1)")
    kind = "causal" if cfg.causal else "bidirectional"
    # characters of an 11 pt title line that fit the figure's width
    fits = int(fig.get_figwidth() * 9)
    shown = repr(text) if len(repr(text)) <= fits else repr(text)[: fits - 4] + "...'"
    fig.suptitle(f"Attention weights, {run_title(out_dir, ckpt)}\n"
                 f"{kind}, pos={cfg.pos_encoding}{note}\n"
                 f"text {shown}", fontsize=11)
    return save(fig, path)


# ----------------------------------------------------------------------------------------------
# t-SNE of token embeddings and of a classifier's sentence representations

CHAR_CLASSES = {"vowel": "C0", "consonant": "C1", "capital vowel": "C2", "capital consonant": "C3",
                "digit": "C4", "punctuation": "C5", "whitespace": "C7"}


def char_class(c):
    if c.isspace():
        return "whitespace"
    if c.isdigit():
        return "digit"
    if c.isalpha():
        kind = "vowel" if c.lower() in "aeiou" else "consonant"
        return "capital " + kind if c.isupper() else kind
    return "punctuation"


def tsne(x, seed=0):
    """2-D t-SNE with a fixed seed. sklearn needs perplexity < n_samples; the usual 30 is clamped to
    (n-1)/3 so that tiny inputs (a 48-character vocabulary, a 6-question split) still work."""
    from sklearn.manifold import TSNE  # a slow import, needed by this kind only
    n = len(x)
    if n < 4:
        raise PlotError(f"t-SNE needs at least 4 points, got {n}: "
                        f"use a larger split or --max_points")
    from threadpoolctl import threadpool_limits  # installed with scikit-learn
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed)
    # one thread: with torch loaded there are two OpenMP runtimes (torch's and scikit-learn's), and
    # Barnes-Hut's threads then spin against each other:
    # 40 s instead of 0.3 s for 48 points (2 cores)
    with threadpool_limits(1):
        return tsne.fit_transform(np.asarray(x, dtype=np.float64))


def run_data(ckpt, data_dir=None):
    """The prepared data set a run was trained on, checked against the checkpoint's vocabulary."""
    data_dir = data_dir or ckpt["config"]["train"]["data_dir"]
    data = Data(ckpt["data"]["name"], data_dir)
    if data.meta["tokenizer"] != ckpt["data"]["meta"]["tokenizer"]:
        raise PlotError(f"{data.dir} was prepared with a different tokenizer than the run's "
                        f"checkpoint: point --data_dir at the data the run was trained on")
    return data


@torch.no_grad()
def plot_embeddings(out_dir, path, split="val", max_points=2000, data_dir=None, annotate=60):
    """LM: t-SNE of token embeddings (characters by class, else the most frequent tokens of train).
    Classifier: t-SNE of pooled sentence representations of a split, coloured by true label."""
    if max_points < 4:
        raise PlotError(f"max_points={max_points}: t-SNE needs at least 4 points")
    ckpt, model, tok = load_run(out_dir)
    meta = ckpt["data"]["meta"]
    fig = Figure(figsize=(10, 8.5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    if model.config.n_classes:
        data = run_data(ckpt, data_dir)
        tokens, offsets, labels = data.examples(split)
        n = len(labels)
        # a fixed random subset, so a large split is sampled evenly rather than cut at its start
        idx = np.sort(np.random.default_rng(0).permutation(n)[:max_points])
        reps = []
        for s in range(0, len(idx), 256):
            x, mask, _ = cls_batch(tokens, offsets, labels, idx[s:s + 256], model.config.block_size,
                                   data.pad_id, "cpu")
            reps.append(model.pool(model.encode(x, mask), mask))
        xy = tsne(torch.cat(reps).numpy())
        y = labels[idx]
        for k, name in enumerate(data.label_names):
            ax.scatter(*xy[y == k].T, s=14, color=f"C{k % 10}", alpha=0.8,
                       label=f"{name} ({(y == k).sum()})")
        ax.legend(title="true label", fontsize=9)
        ax.set_title(f"Pooled sentence representations ({model.config.pooling} pooling), t-SNE\n"
                     f"{run_title(out_dir, ckpt)}, {split} split, {len(idx)} of {n} examples")
    else:
        # padded rows are unused
        W = model.transformer.wte.weight[: meta["vocab_size"]].float().numpy()
        if tok.kind == "char":
            xy = tsne(W)
            classes = [char_class(c) for c in tok.itos]
            for name, color in CHAR_CLASSES.items():
                sel = np.array([c == name for c in classes])
                if sel.any():
                    ax.scatter(*xy[sel].T, s=260, color=color, alpha=0.45, label=name)
            # the character itself, dark on its class colour
            for (px, py), i in zip(xy, range(len(W))):
                ax.annotate(token_label(tok, i), (px, py), ha="center", va="center", fontsize=11)
            ax.legend(title="character class", fontsize=9)
            what = f"all {len(W)} characters"
        else:  # BPE / words: the most frequent tokens of the training split, the top ones named
            counts = np.bincount(np.asarray(run_data(ckpt, data_dir).tokens("train")),
                                 minlength=len(W))
            top = np.argsort(-counts, kind="stable")[: min(max_points, int((counts > 0).sum()))]
            xy = tsne(W[top])
            sc = ax.scatter(*xy.T, s=10, c=np.log10(counts[top]), cmap="viridis", alpha=0.8)
            fig.colorbar(sc, ax=ax, label="log10 count in the train split")
            for (px, py), i in list(zip(xy, top))[:annotate]:
                ax.annotate(token_label(tok, i), (px, py), fontsize=8)
            what = (f"the {len(top)} most frequent tokens of train, "
                    f"the top {min(annotate, len(top))} named")
        ax.set_title(f"Token embeddings (wte), t-SNE: {run_title(out_dir, ckpt)}\n{what}")
    ax.set(xlabel="t-SNE 1 (no unit)", ylabel="t-SNE 2 (no unit)")
    return save(fig, path)


# ----------------------------------------------------------------------------------------------
# confusion matrix and ablation chart

def plot_confusion(metrics_or_path, path):
    """A classifier's confusion matrix (rows: true label), cells coloured by the row's fraction."""
    m = metrics_or_path
    if not isinstance(m, dict):
        src = Path(m) / "metrics.json" if Path(m).is_dir() else Path(m)
        if not src.is_file():
            raise PlotError(f"{src} not found: it is written at the end of training, or by "
                            f"python train.py --out_dir={src.parent} --eval_only=true")
        m = read_json(src, f"python train.py --out_dir={src.parent} --eval_only=true")
    if "confusion" not in m:
        raise PlotError("metrics.json of an lm run has no confusion matrix; plot a classifier's, "
                        "or run train.py with --eval_only=true on one")
    cm = np.asarray(m["confusion"], dtype=np.int64)
    names = m.get("labels") or [str(k) for k in range(len(cm))]
    if cm.ndim != 2 or cm.shape != (len(names), len(names)):
        raise PlotError(f"confusion matrix of shape {cm.shape} does not match {len(names)} labels")
    # recall per cell: rare classes stay visible
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(8, 7), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, f"{count}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=9,
                color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted label", ylabel="true label")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class (recall in the diagonal)")
    scores = ", ".join(f"{k} {m[k]:.3f}" for k in ("accuracy", "macro_f1") if k in m)
    ax.set_title(f"Confusion matrix, {m.get('split', '?')} split, step {m.get('step', '?')}, "
                 f"{cm.sum()} examples\n{scores}")
    return save(fig, path)


def delta(diff):
    """A difference as summary.md prints it, to 4 decimals: -5.25e-08 (float noise) is 0."""
    text = f"{diff:+.4f}"
    return "0" if float(text) == 0 else text


# a variant whose |Δ| exceeds 5x the median |Δ| of the study gets a panel of its own scale
OUTLIER = 5.0
CONFIDENCE = 0.95

# what a study's metric is and in which unit, for the axis label
METRIC_UNITS = {"loss": "val loss (nats per token)", "accuracy": "val accuracy (fraction)",
                "macro_f1": "val macro-F1 (fraction)", "perplexity": "val perplexity"}


def metric_label(results):
    m = results["metric"]
    # train.py's best_val is the lowest loss, or the highest accuracy for a classifier
    if m == "best_val":
        return ("best val accuracy (fraction)" if results.get("higher_is_better")
                else "best val loss (nats per token)")
    return METRIC_UNITS.get(m, f"val {m}")


def ablation_rows(results):
    """The chart's numbers, one dict per variant other than the baseline, best first: the summary's
    mean difference from the baseline and a 95% Welch confidence interval for it (unequal variances,
    Welch-Satterthwaite degrees of freedom: the interval that excludes 0 exactly when ablate.py's
    Welch t-test gives p < 0.05), and whether the variant is an outlier drawn on its own scale."""
    from scipy import stats  # a slow import, needed by this kind only
    missing = [k for k in ("study", "metric", "baseline", "runs", "summary") if k not in results]
    if missing:
        raise PlotError(f"results have no {', '.join(missing)}: "
                        f"expected the results.json written by ablate.py")
    summary = results["summary"]
    if not summary:
        raise PlotError(f"study {results['study']!r} has an empty summary: "
                        f"no finished runs to plot")
    by_name = {s["variant"]: s for s in summary}
    base = by_name.get(results["baseline"])
    if base is None:
        raise PlotError(f"baseline {results['baseline']!r} has no finished runs in study "
                        f"{results['study']!r}: differences need it; "
                        f"run the study again to finish it")
    metric = results["metric"]
    rows = []
    for s in summary:
        if s["variant"] == results["baseline"]:
            continue
        diff = s["mean"] - base["mean"]
        lo = hi = None
        n1, n0, s1, s0 = s["n"], base["n"], s.get("std"), base.get("std")
        if n1 > 1 and n0 > 1 and s1 is not None and s0 is not None and (s1 > 0 or s0 > 0):
            v1, v0 = s1 ** 2 / n1, s0 ** 2 / n0
            se = np.sqrt(v1 + v0)
            dof = (v1 + v0) ** 2 / (v1 ** 2 / (n1 - 1) + v0 ** 2 / (n0 - 1))
            half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se)
            lo, hi = diff - half, diff + half
        seeds = [r[metric] - base["mean"] for r in results["runs"]
                 if r["variant"] == s["variant"] and r.get(metric) is not None]
        # why a row has no interval: the chart says which side lacks the seeds
        no_ci = (None if lo is not None else "1 seed each" if n1 < 2 and n0 < 2
                 else "1 seed" if n1 < 2 else "the baseline has 1 seed" if n0 < 2
                 else "no spread in the seeds")
        rows.append({"variant": s["variant"], "n": n1, "diff": diff, "lo": lo, "hi": hi,
                     "no_ci": no_ci, "seeds": seeds, "p_value": s.get("p_value"),
                     "significant": s.get("significant")})
    sign = 1 if results.get("higher_is_better") else -1  # sign * diff > 0: better than the baseline
    rows.sort(key=lambda r: -sign * r["diff"])
    if len(rows) >= 3:  # with two variants there is no "the rest" to compare an outlier with
        typical = float(np.median([abs(r["diff"]) for r in rows]))
        for r in rows:
            r["outlier"] = typical > 0 and abs(r["diff"]) > OUTLIER * typical
    for r in rows:
        r.setdefault("outlier", False)
    return rows


def ablation_figure(results):
    """The ablation chart as a Figure (plot_ablation saves it): one row per variant, best at the
    top, its mean difference from the baseline with a 95% Welch interval and every seed as a dot;
    outliers in a right-hand panel with their own axis, so that they do not squash the others."""
    rows = ablation_rows(results)
    base = next(s for s in results["summary"] if s["variant"] == results["baseline"])
    higher = bool(results.get("higher_is_better"))
    outliers = [r for r in rows if r["outlier"]]
    n = max(len(rows), 1)
    width = 11.0 if outliers else 9.0
    fig = Figure(figsize=(width, 0.5 * n + 2.6), dpi=DPI, layout="constrained")
    if outliers:
        ax, ax_out = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    else:
        ax, ax_out = fig.subplots(), None
    y = np.arange(len(rows))[::-1]  # the first (best) row at the top
    for r, yi in zip(rows, y):
        target = ax_out if r["outlier"] else ax
        good = (r["diff"] > 0) == higher
        color = ("C2" if good else "C3") if r["significant"] else "0.45"
        if r["lo"] is not None:
            target.errorbar(r["diff"], yi, xerr=[[r["diff"] - r["lo"]], [r["hi"] - r["diff"]]],
                            fmt="none", ecolor=color, elinewidth=2, capsize=5, zorder=2,
                            gid=f"ci:{r['variant']}")
        target.scatter(r["seeds"], [yi] * len(r["seeds"]), s=16, color="0.55", alpha=0.8, zorder=3,
                       gid=f"seeds:{r['variant']}")
        target.scatter([r["diff"]], [yi], s=70, zorder=4, marker="D", edgecolor=color,
                       linewidth=1.5, facecolor=color if r["significant"] else "white",
                       gid=f"mean:{r['variant']}")
        ci = (f" [{delta(r['lo'])}, {delta(r['hi'])}]" if r["lo"] is not None
              else f" (no CI: {r['no_ci']})")
        right = max([r["diff"], *r["seeds"]] + ([r["hi"]] if r["hi"] is not None else []))
        target.annotate(f"{delta(r['diff'])}{ci}", (right, yi), xytext=(6, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=9,
                        color="0.15")
        if r["outlier"]:  # a pointer in the main panel, on the row where the variant would be
            ax.annotate(f"{delta(r['diff'])}: off this scale, see the right panel →", (1, yi),
                        xycoords=("axes fraction", "data"), ha="right", va="center", fontsize=9,
                        color=color, style="italic")
    for a in [ax] + ([ax_out] if ax_out is not None else []):
        a.axvline(0, color="black", lw=1.2, zorder=1)
        a.grid(axis="x", alpha=0.3)
        a.tick_params(labelsize=10)
    # the baseline's own spread: a 95% t interval of its mean (none with one seed)
    if base["n"] > 1 and base.get("std"):
        from scipy import stats
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, base["n"] - 1) * base["std"]
                     / np.sqrt(base["n"]))
        ax.axvspan(-half, half, color="0.85", zorder=0, gid="baseline_ci")
    main = [r for r in rows if not r["outlier"]]
    span = [v for r in main for v in [r["diff"], *r["seeds"]] + [r["lo"], r["hi"]]
            if v is not None] + [0.0]
    lo, hi = min(span), max(span)
    pad = 0.12 * (hi - lo) or 0.01
    # room for the numbers right of each row
    ax.set_xlim(lo - pad, hi + pad + 0.45 * (hi - lo or 0.01))
    ticks = [f"{r['variant']}\n(n={r['n']}, p={r['p_value']:.2g})" if r["p_value"] is not None
             else f"{r['variant']}\n(n={r['n']}, p n/a)" for r in rows]
    ax.set_yticks(y, ticks, fontsize=10)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    what = metric_label(results)
    way = "higher is better: right of 0" if higher else "lower is better: left of 0"
    ax.set_xlabel(f"Δ {what}, variant mean − baseline mean\n"
                  f"(bars: 95% Welch t interval from the seeds; {way})", fontsize=10)
    if ax_out is not None:
        ax_out.set_xlabel(f"Δ, outliers on their own scale\n"
                          f"(|Δ| > {OUTLIER:g}x the study's median |Δ|)", fontsize=10)
        span = [v for r in outliers for v in [r["diff"], *r["seeds"]] + [r["lo"], r["hi"]]
                if v is not None] + [0.0]
        pad = 0.12 * (max(span) - min(span)) or 0.01
        ax_out.set_xlim(min(span) - pad, max(span) + pad + 1.1 * (max(span) - min(span)))
    # legend: what the marks mean, not one entry per variant
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Line2D([], [], marker="D", ls="none", color="C2", ms=7,
                      label="significantly better (p < 0.05)"),
               Line2D([], [], marker="D", ls="none", color="C3", ms=7,
                      label="significantly worse (p < 0.05)"),
               Line2D([], [], marker="D", ls="none", color="0.45", mfc="white", ms=7,
                      label="not significant"),
               Line2D([], [], marker="o", ls="none", color="0.55", ms=4, label="one seed")]
    if base["n"] > 1 and base.get("std"):
        handles.append(Patch(color="0.85", label="baseline mean, 95% CI"))
    fig.legend(handles=handles, fontsize=9, loc="outside lower center",
               ncol=len(handles) if outliers else 3)
    ns = sorted({s["n"] for s in results["summary"]})
    n_txt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    spread = f" ± {base['std']:.4f}" if base.get("std") else ""
    quick = ", --quick: no significance claimed" if results.get("size") == "quick" else ""
    named = "" if results["baseline"] == "baseline" else f" '{results['baseline']}'"
    fig.suptitle(f"Ablation study '{results['study']}': difference from the baseline "
                 f"({n_txt} seeds per variant{quick})"
                 f"\nbaseline{named}: {what} = {base['mean']:.4f}{spread} (mean ± std)",
                 fontsize=12)
    return fig


def plot_ablation(results, path):
    """A study's chart (ablate.py writes it as ablation.png): see ablation_figure."""
    return save(ablation_figure(results), path)


# ----------------------------------------------------------------------------------------------
# attention kernels by sequence length: bench.py --mode=attention

KERNEL_LABELS = {"manual": "manual (model.manual_attention)",
                 "sdpa": "sdpa (F.scaled_dot_product_attention)"}


def attention_bench_series(bench):
    """{kernel: (lengths, ms, peak MB)} from a bench.py --mode=attention JSON, each kernel's lengths
    in increasing order; a length where a kernel ran out of memory (ms None) is
    left out of its series."""
    mode = bench.get("mode") if isinstance(bench, dict) else None
    if mode != "attention":
        raise PlotError(f"expected the JSON of bench.py --mode=attention, got mode {mode!r}: "
                        f"write one with python bench.py --mode=attention --json=FILE")
    rows = bench.get("rows")
    if not rows:
        raise PlotError("the attention benchmark has no rows: "
                        "run python bench.py --mode=attention --json=FILE again")
    kernels = [k for k in KERNEL_LABELS if any(f"{k}_ms" in r for r in rows)]
    series = {}
    for k in kernels:
        ok = sorted((r for r in rows if r.get(f"{k}_ms") is not None), key=lambda r: r["T"])
        series[k] = ([r["T"] for r in ok], [r[f"{k}_ms"] for r in ok],
                     [r.get(f"{k}_peak_mb") for r in ok])
    return series


def attention_bench_figure(bench):
    """Two log-log panels against sequence length: ms per forward + backward, and peak memory, one
    line per kernel; lengths where a kernel ran out of memory are named in its legend entry."""
    series = attention_bench_series(bench)
    rows = bench["rows"]
    fig = Figure(figsize=(12, 5), dpi=DPI, layout="constrained")
    ax_ms, ax_mb = fig.subplots(1, 2)
    lengths = sorted({r["T"] for r in rows})
    for i, (k, (T, ms, mb)) in enumerate(series.items()):
        oom = [r["T"] for r in rows if f"{k}_ms" in r and r[f"{k}_ms"] is None]
        label = KERNEL_LABELS[k] + (f", out of memory at T = {', '.join(map(str, oom))}"
                                    if oom else "")
        ax_ms.plot(T, ms, marker="o", color=f"C{i}", label=label, gid=f"ms:{k}")
        if any(v is not None for v in mb):  # peak memory is measured on a GPU only
            ax_mb.plot([t for t, v in zip(T, mb) if v is not None],
                       [v for v in mb if v is not None],
                       marker="o", color=f"C{i}", label=label, gid=f"mb:{k}")
    for r in rows:  # manual / sdpa above each length
        if r.get("speedup"):
            ax_ms.annotate(f"{r['speedup']:.1f}x", (r["T"], r["manual_ms"]), xytext=(0, 7),
                           textcoords="offset points", ha="center", fontsize=8, color="0.25")
    for ax, ylabel, title in ((ax_ms, "time per forward + backward (ms, log scale)",
                               "time (numbers: manual time / sdpa time)"),
                              (ax_mb, "peak memory above the inputs (MiB, log scale)",
                               "peak memory")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.set(xlabel="sequence length T (tokens, log scale)", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=9)
    if not ax_mb.lines:
        ax_mb.text(0.5, 0.5, "no peak memory: it is measured on a GPU only",
                   transform=ax_mb.transAxes, ha="center", va="center")
    r0 = rows[0]
    fig.suptitle(f"Causal self-attention alone, forward + backward: {r0['n_head']} heads x "
                 f"{r0['head_dim']}, {bench['tokens']:,} tokens per length, {bench['dtype']}\n"
                 f"{bench.get('device', '?')}, torch {bench.get('torch', '?')}, "
                 f"{bench.get('date', '?')}, median of {bench.get('repeats', '?')} repeats")
    return fig


def plot_attention_bench(bench, path):
    """The attention benchmark's chart (attention_bench_figure), saved as PNG."""
    return save(attention_bench_figure(bench), path)


# ----------------------------------------------------------------------------------------------
# scaling: a study's metric against model size

def scaling_series(results):
    """[(variant, params, [metric of each seed])] in increasing params, from an ablate.py
    results.json whose variants differ in size (config/study_scaling.py)."""
    metric, by_variant = results.get("metric"), {}
    for r in results.get("runs") or []:
        if r.get(metric) is not None and r.get("params"):
            by_variant.setdefault(r["variant"], (r["params"], []))[1].append(r[metric])
    if len(by_variant) < 2:
        raise PlotError(f"a scaling chart needs at least two variants with a parameter count and a "
                        f"{metric!r} each; study {results.get('study')!r} has {len(by_variant)}: "
                        f"run e.g. python ablate.py scaling --seeds 3")
    return sorted(((v, p, vals) for v, (p, vals) in by_variant.items()), key=lambda t: t[1])


def scaling_figure(results):
    """The metric against parameters (log scale): each seed as a grey point, the mean ± sample std
    of each size as a line, each size labelled with its variant name."""
    series = scaling_series(results)
    fig = Figure(figsize=(7.5, 5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    params = [p for _, p, _ in series]
    means = [float(np.mean(vals)) for _, _, vals in series]
    stds = [float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0 for _, _, vals in series]
    for i, (variant, p, vals) in enumerate(series):
        ax.scatter([p] * len(vals), vals, color="0.6", s=16, zorder=2, gid=f"seeds:{variant}",
                   label="one seed" if i == 0 else None)
        ax.annotate(variant, (p, means[i]), xytext=(6, 6), textcoords="offset points", fontsize=9)
    ax.errorbar(params, means, yerr=stds, marker="o", color="C0", capsize=3, zorder=3, gid="mean",
                label="mean ± std over seeds")
    ax.set_xscale("log")
    version = str(results.get("torch", ""))  # a version, or a note that the runs recorded none
    ax.set(xlabel="parameters (log scale)", ylabel=metric_label(results),
           title=f"{results.get('study')}: {results.get('description', '')}\n"
                 f"{results.get('device', '?')}, "
                 f"{f'torch {version}, ' if version[:1].isdigit() else ''}"
                 f"{str(results.get('date', '?'))[:10]}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    return fig


def plot_scaling(results, path):
    """The scaling chart (scaling_figure), saved as PNG."""
    return save(scaling_figure(results), path)


# ----------------------------------------------------------------------------------------------
# one study at several depths (ablate.py STUDY --set n_layer=L --out DIR_L)

def study_depth(results, home):
    """The n_layer every run of a study trained with, read from each run's config.json under home
    (the results directory); one depth per study."""
    depths = set()
    for r in results.get("runs") or []:
        path = Path(home) / str(r.get("out_dir")) / "config.json"
        try:
            depths.add(json.loads(path.read_text())["model"]["n_layer"])
        except OSError:
            raise PlotError(f"{path} not found: a depth chart reads each run's config.json, "
                            f"which ablate.py writes with the run") from None
        except (ValueError, KeyError, TypeError):
            raise PlotError(f"{path} has no model.n_layer: a depth chart reads the depth of "
                            f"each run from there") from None
    if len(depths) != 1:
        raise PlotError(f"study in {home} has runs of {len(depths)} depths "
                        f"({sorted(depths)}): a depth chart needs one depth per results directory")
    return depths.pop()


def depth_series(studies):
    """{variant: [(n_layer, [metric of each seed])]} in increasing depth, from (results, home)
    pairs: one study run at several depths, each in its own results directory, one directory a
    depth. Variants keep the order of the shallowest study."""
    if len(studies) < 2:
        raise PlotError(f"a depth chart needs at least two results directories (the same study "
                        f"at two depths or more); got {len(studies)}")
    names = {r.get("study") for r, _ in studies}
    if len(names) != 1:
        raise PlotError(f"a depth chart compares one study at several depths; these results are "
                        f"of studies {sorted(map(str, names))}")
    depths = [study_depth(*s) for s in studies]
    twice = sorted({d for d in depths if depths.count(d) > 1})
    if twice:
        raise PlotError(f"more than one results directory at {twice} layers: give one directory "
                        f"a depth (a study resumed in the same --out keeps all its seeds there)")
    series = {}
    for depth, (results, home) in sorted(zip(depths, studies), key=lambda t: t[0]):
        metric = results["metric"]
        for r in results["runs"]:
            if r.get(metric) is None:
                continue
            points = series.setdefault(r["variant"], [])
            if not points or points[-1][0] != depth:
                points.append((depth, []))
            points[-1][1].append(r[metric])
    return series


def depth_figure(studies):
    """Each variant's metric against depth: seeds as small points, mean ± sample std joined by a
    line. A mean more than OUTLIER times the typical distance from the median of all means (a
    run that failed to train) is not drawn to scale: a triangle at the top edge (bottom, for a
    mean below the others) gives its value."""
    series = depth_series(studies)
    results = studies[0][0]
    fig = Figure(figsize=(9.5, 5.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    means = [float(np.mean(v)) for pts in series.values() for _, v in pts]
    middle = float(np.median(means))
    typical = float(np.median([abs(m - middle) for m in means]))

    def off(m):  # drawn as a triangle at the top, not to scale
        return len(means) >= 3 and typical > 0 and abs(m - middle) > OUTLIER * typical

    kept = [m for m in means if not off(m)]
    spread = [x for pts in series.values() for _, v in pts if not off(float(np.mean(v)))
              for x in v]
    lo, hi = min(kept + spread), max(kept + spread)
    pad = 0.08 * (hi - lo or 0.01)
    top, bottom = hi + 3 * pad, lo - 3 * pad
    for i, (variant, pts) in enumerate(series.items()):
        color = f"C{i % 10}"
        xs = [d + 0.25 * (i - (len(series) - 1) / 2) for d, _ in pts]  # side by side at a depth
        m = [float(np.mean(v)) for _, v in pts]
        sd = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for _, v in pts]
        shown = [np.nan if off(v) else v for v in m]
        ax.errorbar(xs, shown, yerr=[0 if np.isnan(v) else e for v, e in zip(shown, sd)],
                    marker="o", color=color, capsize=3, zorder=3, gid=f"mean:{variant}",
                    label=variant)
        for x, (_, v), mean in zip(xs, pts, m):
            if off(mean):
                above = mean > middle
                edge = top - pad if above else bottom + pad
                ax.scatter([x], [edge], marker="^" if above else "v", s=80, color=color,
                           zorder=4, gid=f"off:{variant}", clip_on=False)
                ax.annotate(f"{mean:.4f}, off scale", (x, edge), xytext=(-9, 0),
                            textcoords="offset points", ha="right", va="center", fontsize=8,
                            color=color)
            else:
                ax.scatter([x] * len(v), v, s=10, color=color, alpha=0.45, zorder=2,
                           gid=f"seeds:{variant}")
    depths = sorted({d for pts in series.values() for d, _ in pts})
    ax.set_xticks(depths)
    low_off = any(off(m) and m < middle for m in means)
    ax.set_ylim(bottom if low_off else lo - pad, top)
    devices = sorted({str(r.get("device", "?")) for r, _ in studies})
    dates = sorted({str(r.get("date", "?"))[:10] for r, _ in studies})
    title = textwrap.fill(f"'{results.get('study')}' by depth: {results.get('description', '')}",
                          85)
    ax.set(xlabel="layers (n_layer)", ylabel=metric_label(results),
           title=f"{title}\n{', '.join(devices)}; "
                 f"{dates[0]}{' to ' + dates[-1] if len(dates) > 1 else ''}")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D
    handles = ax.get_legend_handles_labels()[0] + [
        Line2D([], [], marker="o", ls="none", color="0.55", ms=3, label="one seed"),
        Line2D([], [], marker="|", ls="none", color="0.3", ms=10, label="bar: ± std over seeds")]
    fig.legend(handles=handles, fontsize=9, loc="outside right upper")
    return fig


def plot_depth(studies, path):
    """The depth chart (depth_figure), saved as PNG."""
    return save(depth_figure(studies), path)


# ----------------------------------------------------------------------------------------------
# time-stamped logs of different programs (nanoGPT's and ours), side by side

STAMPED_EVAL = re.compile(r"^\[\s*([\d.]+)\]\s+step\s+(\d+):.*?val loss ([\d.]+)")


def stamped_evals(path):
    """[(seconds from launch, step, val loss)] of a training log whose lines each start with
    '[seconds]' (the launch-relative stamp of results/shakespeare_char/side-by-side/stamp.py), and
    whose evaluation lines read 'step N: ... val loss X' (nanoGPT's and train.py's both do)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror}") from None
    evals = [(float(m[1]), int(m[2]), float(m[3])) for m in map(STAMPED_EVAL.match, lines) if m]
    if not evals:
        raise PlotError(f"{path} has no time-stamped evaluation lines ('[seconds] step N: ... "
                        f"val loss X'): pipe the training output through stamp.py")
    return evals


def versus_figure(paths, labels):
    """Val loss against seconds from launch and against step, one colour per log, each log's best
    point starred and labelled; the y axis spans the region near the best losses (earlier, higher
    points are cut off, and the caption says so)."""
    if len(labels) != len(paths):
        raise PlotError(f"{len(labels)} labels for {len(paths)} logs: give one label per log")
    series = [stamped_evals(p) for p in paths]
    best = min(v for evals in series for _, _, v in evals)
    top = best + 0.35
    fig = Figure(figsize=(12, 4.8), dpi=DPI, layout="constrained")
    ax_time, ax_step = fig.subplots(1, 2)
    for i, (evals, label) in enumerate(zip(series, labels)):
        color = f"C{i % 10}"
        t, step, loss = zip(*evals)
        k = int(np.argmin(loss))
        for ax, x in ((ax_time, t), (ax_step, step)):
            ax.plot(x, loss, color=color, lw=2, marker="o", ms=4, label=label, gid=f"val:{label}")
            ax.plot([x[k]], [loss[k]], marker="*", ms=14, color=color, ls="none")
            ax.annotate(f"{loss[k]:.4f}", (x[k], loss[k]), xytext=(4, -14),
                        textcoords="offset points", fontsize=9, color=color)
    for ax, xlabel in ((ax_time, "seconds from launch"), (ax_step, "optimizer step")):
        ax.set(xlabel=xlabel, ylabel="val loss (nats per token)", ylim=(best - 0.03, top))
        ax.grid(alpha=0.3)
    ax_time.set_title("val loss against time from launch")
    ax_step.set_title("val loss against step")
    ax_time.legend(fontsize=9)
    fig.suptitle(f"{' vs '.join(labels)} (best point starred; losses above {top:.2f} are off the "
                 f"chart)")
    return fig


def plot_versus(paths, path, labels):
    """The side-by-side chart (versus_figure), saved as PNG."""
    return save(versus_figure(paths, labels), path)


# ----------------------------------------------------------------------------------------------
# position encodings

def cosine_matrix(table):
    t = torch.nn.functional.normalize(torch.as_tensor(table).float(), dim=-1)
    return (t @ t.T).numpy()  # (P, P)


def plot_positions(path, out_dir=None, block_size=None, n_embd=None, n_head=None, rope_base=None):
    """Cosine similarity between positions of the sinusoidal table (and of a run's learned table),
    RoPE's frequency spectrum, and RoPE's similarity against relative distance."""
    given = dict(block_size=block_size, n_embd=n_embd, n_head=n_head, rope_base=rope_base)
    learned, source = None, "no checkpoint"
    if out_dir is not None:
        ckpt, model, _ = load_run(out_dir)
        run_cfg = ckpt["config"]["model"]
        clash = {k: (v, run_cfg[k]) for k, v in given.items() if v is not None and v != run_cfg[k]}
        if clash:
            raise PlotError(f"{out_dir} was trained with "
                            + ", ".join(f"{k}={b}" for k, (a, b) in clash.items())
                            + ": drop those options, or drop --out_dir to plot other sizes")
        given = {k: run_cfg[k] for k in given}
        source = f"{run_title(out_dir, ckpt)}, pos={run_cfg['pos_encoding']}"
        if run_cfg["pos_encoding"] == "learned":
            learned = model.transformer.wpe.weight.detach()
    T, C, nh, base = (given["block_size"] or 256, given["n_embd"] or 384, given["n_head"] or 6,
                      given["rope_base"] or 10000.0)
    if min(T, C, nh) < 1 or C % nh or (C // nh) % 2:
        raise PlotError(f"n_embd={C} must be a positive multiple of n_head={nh} with an even "
                        f"head dim (RoPE rotates pairs of dimensions)")
    hs = C // nh
    panels = 3 + (learned is not None)
    fig = Figure(figsize=(5.2 * panels, 5), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(1, panels))
    tables = ([("sinusoidal", sinusoidal_table(T, C))]
              + ([("learned", learned)] if learned is not None else []))
    for name, table in tables:
        ax = axes.pop(0)
        im = ax.imshow(cosine_matrix(table), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(xlabel="position j (tokens)", ylabel="position i (tokens)",
               title=f"{name}: cosine similarity of PE(i), PE(j)\n{T} positions x {C} dims")
    fig.colorbar(im, ax=fig.axes[: len(tables)], shrink=0.8, label="cosine similarity")
    # RoPE rotates dimension pair i by pos * theta_i, theta_i = base^(-2i/hs)
    # (Su et al. 2021, eq. 15)
    theta = base ** (-np.arange(0, hs, 2) / hs)
    ax = axes.pop(0)
    ax.semilogy(np.arange(hs // 2), 2 * np.pi / theta, marker="o", ms=3)
    ax.axhline(T, color="C3", ls="--", label=f"block_size = {T}")
    ax.set(xlabel="dimension pair i", ylabel="wavelength 2π/θ_i (tokens, log scale)",
           title=f"RoPE frequency spectrum\nhead dim {hs}, base {base:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    # q·k of a vector with itself, rotated m positions apart, equal energy in every pair:
    # mean_i cos(m theta_i), RoPE's long-term decay with distance (Su et al. 2021, 3.4.3)
    # (T, hs), halves duplicated: the mean is unchanged
    cos, _ = rope_cos_sin(torch.arange(T), hs, base)
    ax = axes.pop(0)
    ax.plot(np.arange(T), cos.mean(-1).numpy())
    ax.set(xlabel="relative distance m (tokens)", ylabel="mean_i cos(m θ_i)",
           title="RoPE: similarity of a vector with itself\nrotated m positions apart")
    ax.grid(alpha=0.3)
    fig.suptitle(f"Position encodings ({source})")
    return save(fig, path)


# ----------------------------------------------------------------------------------------------

def positive(kind, least=None):
    """An argparse type: a finite number of kind, at least `least` (default: > 0)."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not np.isfinite(value) or (value < least if least is not None else value <= 0):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number "
                                             f"{f'>= {least}' if least is not None else '> 0'}")
        return value
    return convert


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    homes = {"curves": "the run's directory; with several runs, the current one",
             "ablation": "the results directory", "scaling": "the results directory",
             "attention_bench": "the JSON's directory",
             "positions": "--out_dir, else the current directory"}

    def add(kind, help, run=True):
        s = sub.add_parser(kind, help=help)
        s.add_argument("--out", help=f"output PNG (default: {kind}.png in "
                                     f"{homes.get(kind, 'the run directory')})")
        if run:
            s.add_argument("--out_dir", required=kind != "positions", help="the run's directory")
        return s
    s = add("curves", "train/val loss vs step and wall time, lr; several runs overlaid", run=False)
    s.add_argument("runs", nargs="+", help="run directories holding log.jsonl")
    s.add_argument("--labels",
                   help="comma-separated legend labels, one per run (default: directory names)")
    s = add("attention", "attention heatmaps per layer and head for a text")
    s.add_argument("--text", required=True, help="the text to feed the model")
    s.add_argument("--layer", type=positive(int, 0), help="only this layer (0-based; default: all)")
    s = add("embeddings",
            "t-SNE of token embeddings, or of a classifier's sentence representations")
    s.add_argument("--split", default="val", help="classifier: the split to embed (default: val)")
    s.add_argument("--max_points", type=positive(int, 4), default=2000,
                   help="at most this many points (default: 2000)")
    s.add_argument("--data_dir",
                   help="where the run's data set is prepared (default: the run's data_dir)")
    add("confusion", "a classifier's confusion matrix from RUN/metrics.json")
    s = add("ablation",
            "a study's differences from its baseline, with 95%% CIs, from RESULTS_DIR/results.json",
            run=False)
    s.add_argument("results", help="directory holding results.json, or the file itself")
    s = add("scaling", "a study's metric against parameters (log scale), from "
                       "RESULTS_DIR/results.json (config/study_scaling.py)", run=False)
    s.add_argument("results", help="directory holding results.json, or the file itself")
    s = add("depth", "one study run at several depths (ablate.py STUDY --set n_layer=L, one "
                     "results directory each): each variant's metric against n_layer", run=False)
    s.add_argument("results", nargs="+", help="the results directories, one per depth")
    s = add("attention_bench",
            "manual vs sdpa attention: ms and peak memory against sequence length", run=False)
    s.add_argument("bench", help="the JSON of python bench.py --mode=attention --json=FILE")
    s = add("versus", "val loss against time from launch and step, from time-stamped logs of any "
                      "programs (e.g. nanoGPT's train.py and ours)", run=False)
    s.add_argument("logs", nargs="+", help="training logs, each line prefixed '[seconds]'")
    s.add_argument("--labels", help="comma-separated legend labels, one per log (default: names)")
    s = add("positions", "sinusoidal / learned position similarity and the RoPE spectrum")
    for key, default in (("block_size", 256), ("n_embd", 384), ("n_head", 6),
                         ("rope_base", 10000.0)):
        s.add_argument(f"--{key}", type=positive(type(default)),
                       help=f"without --out_dir (default: {default})")
    a = p.parse_args(argv)

    home = Path(getattr(a, "out_dir", None) or ".")
    if a.kind == "curves":
        home = Path(a.runs[0]) if len(a.runs) == 1 else Path(".")
    elif a.kind in ("ablation", "scaling"):
        home = Path(a.results).parent if a.results.endswith(".json") else Path(a.results)
    elif a.kind == "depth":
        home = Path(a.results[0]).parent
    elif a.kind == "attention_bench":
        home = Path(a.bench).parent
    elif a.kind == "versus":
        home = Path(a.logs[0]).parent
    out = Path(a.out or home / f"{a.kind}.png")
    try:
        if a.kind == "curves":
            plot_curves(a.runs, out, [s.strip() for s in a.labels.split(",")] if a.labels else None)
        elif a.kind == "attention":
            plot_attention(a.out_dir, a.text, out, a.layer)
        elif a.kind == "embeddings":
            plot_embeddings(a.out_dir, out, a.split, a.max_points, a.data_dir)
        elif a.kind == "confusion":
            plot_confusion(a.out_dir, out)
        elif a.kind in ("ablation", "scaling"):
            src = (Path(a.results) if a.results.endswith(".json")
                   else Path(a.results) / "results.json")
            if not src.is_file():
                raise PlotError(f"{src} not found: run the study first (python ablate.py ...)")
            draw = plot_ablation if a.kind == "ablation" else plot_scaling
            draw(read_json(src, "the study's ablate.py command again"), out)
        elif a.kind == "depth":
            studies = []
            for d in a.results:
                if not (Path(d) / "results.json").is_file():
                    raise PlotError(f"{Path(d) / 'results.json'} not found: run the study there "
                                    f"first (python ablate.py STUDY --set n_layer=L --out {d})")
                studies.append((read_json(Path(d) / "results.json", "the study's ablate.py "
                                          "command again"), Path(d)))
            plot_depth(studies, out)
        elif a.kind == "attention_bench":
            if not Path(a.bench).is_file():
                raise PlotError(f"{a.bench} not found: write it with "
                                f"python bench.py --mode=attention --json={a.bench}")
            plot_attention_bench(read_json(a.bench, "python bench.py --mode=attention --json=FILE"),
                                 out)
        elif a.kind == "versus":
            labels = ([x.strip() for x in a.labels.split(",")] if a.labels
                      else [Path(f).stem for f in a.logs])
            plot_versus(a.logs, out, labels)
        else:
            plot_positions(out, a.out_dir, a.block_size, a.n_embd, a.n_head, a.rope_base)
    except (PlotError, train.CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # save() uses data.write_atomic: nothing half-written stays behind
        print(f"error: cannot write {e.filename or out}: {e.strerror}; choose another --out",
              file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
