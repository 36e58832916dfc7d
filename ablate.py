"""
Ablation studies: a base config plus named variants, each trained for several seeds; then
mean ± std per variant, the difference to the baseline, a Welch t-test against the seed spread,
and a chart.

    python ablate.py                           # list the studies, run `lm` sized for this device
    python ablate.py lm --seeds 3 --jobs 8     # 14 variants x 3 seeds: 5 min on one H100
    python ablate.py cls --variants baseline,pos=none --seeds 5 --out results/cls-pos
    python ablate.py lm --quick                # the whole study in tiny: 1.5 min on 2 CPU cores
    python ablate.py sst2reg --seeds 5 --test  # then score the variant chosen on val on the
                                               # test split

A study is config/study_NAME.py (or any path to such a file), plain Python like every config:
base (a train config file, or a list of them), overrides, gpu / cpu / quick (sizes per device),
metric, higher_is_better, baseline, description, and variants = {name: {key: value}}; every key is a
train.py or model key, and a variant's value may be given per size (max_iters=dict(gpu=24000,
cpu=300, quick=15): a longer schedule whose --quick check stays short). One run is one
`python train.py` subprocess started in the repository root with, in this order: base, overrides,
the size, the variant, the --set keys, --seed and --out_dir.
The size is --size, or `quick` with --quick, else `gpu` when CUDA is available, else `cpu`.
Seeds are 0..N-1.

Each run writes OUT/runs/VARIANT-sSEED/ (train.log holds its output). A run that finished with the
same config is skipped, so an interrupted study resumes where it stopped; a run cut off half-way
resumes from its last checkpoint. OUT gets results.csv, results.json, summary.md and ablation.png.
--summarize writes them from the runs finished so far and trains nothing (e.g. on a laptop, for a
GPU study cut off by a time limit: --size=gpu --summarize, the same --seeds and --out).

--test is for choosing a recipe: the variant with the best mean of the study's metric (a validation
figure) is selected, and only its runs are then scored on the test split, once per seed, by their
best checkpoint (train.py --eval_only=true --eval_split=test, written to RUN/metrics_test.json).
results.json and summary.md get the selected variant's test metrics, mean ± std over the seeds.
"""
import csv
import dataclasses
import difflib
import io
import json
import math
import os
import platform
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import checkpoint
import train
from configurator import ConfigError, opt, parse, print_help, run_config_file
from data import DataError, write_atomic

ROOT = Path(__file__).resolve().parent
DEFAULT_STUDY = "lm"
GPU_JOBS = 8     # small models leave most of a GPU idle; each run keeps about one CPU core busy
ALPHA = 0.05     # a difference is called significant at Welch p < ALPHA
SIZES = ("gpu", "cpu", "quick")  # a study's sizes, one dict of keys each
STUDY_KEYS = ("description", "base", "overrides", "gpu", "cpu", "quick", "metric",
              "higher_is_better", "baseline", "variants")
RESERVED = ("seed", "out_dir", "overwrite")  # set by ablate.py itself, per run
# change nothing a finished run computes
NOT_COMPARED = ("out_dir", "overwrite", "stop_after")


class StudyError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# study files

def find_studies():
    return {p.stem.removeprefix("study_"): p for p in sorted((ROOT / "config").glob("study_*.py"))}


def load_study(name_or_path):
    """A study file, checked for shape (its train keys are checked later, by train.parse_args)."""
    found, name_or_path = find_studies(), str(name_or_path)
    if name_or_path in found:
        path = found[name_or_path]
    elif name_or_path.endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise StudyError(f"study file {path} not found")
    else:
        raise StudyError(f"unknown study {name_or_path!r}: expected one of {', '.join(found)} "
                         f"(config/study_NAME.py) or the path of a study file")
    namespace, problem = run_config_file(path)  # its own namespace, as train configs
    if problem:
        raise StudyError(problem.replace("config file", "study file", 1))
    ns = {k: v for k, v in namespace.items()
          if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"}
    errors = []
    for key in ns:
        if key not in STUDY_KEYS:
            close = difflib.get_close_matches(key, STUDY_KEYS, n=1)
            errors.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                                    f": a study file sets {', '.join(STUDY_KEYS)}"))
    errors += [f"{key!r} is missing" for key in ("base", "metric", "higher_is_better", "variants")
               if key not in ns]
    study = {"name": path.stem.removeprefix("study_"), "path": str(path), "description": "",
             "overrides": {}, "gpu": {}, "cpu": {}, "quick": {}, "baseline": "baseline", **ns}
    kinds = dict(description=str, metric=str, higher_is_better=bool, baseline=str, variants=dict,
                 overrides=dict, gpu=dict, cpu=dict, quick=dict)
    errors += [f"{k}={study[k]!r} should be a {t.__name__}" for k, t in kinds.items()
               if k in study and not isinstance(study[k], t)]
    base = study.get("base")
    study["base"] = [base] if isinstance(base, str) else base
    if not (isinstance(study["base"], list) and all(isinstance(b, str) for b in study["base"])):
        errors.append(f"base={base!r} should be a config file path or a list of them")
    elif not errors:
        # relative to the repository, where the runs start (as in `python train.py config/x.py`)
        study["base"] = [str(ROOT / b) for b in study["base"]]
        errors += [f"base config {b} not found" for b in study["base"] if not Path(b).is_file()]
    if not errors:
        slugs = {}
        for name, keys in study["variants"].items():
            if not isinstance(name, str) or not slug(name) or "," in name:
                errors.append(f"variant name {name!r}: a short name without commas "
                              f"(--variants splits on them)")
                continue
            if slug(name) in slugs:
                errors.append(f"variants {slugs[slug(name)]!r} and {name!r} share a run directory "
                              f"name, {slug(name)!r}")
            if not isinstance(keys, dict):
                errors.append(f"variant {name!r} should be a dict of train/model keys, "
                              f"not {keys!r}")
            else:
                errors += [f"variant {name!r}: {k}={v!r} gives a value per size, so it needs "
                           f"exactly the keys {', '.join(SIZES)} ({per_size_problem(v)})"
                           for k, v in keys.items() if per_size_problem(v)]
            slugs[slug(name)] = name
        errors += [f"{part}: {k}={v!r}: a value per size is for a variant's keys; here give "
                   f"one value (the sizes are the dicts gpu, cpu and quick)"
                   for part in ("overrides", *SIZES) for k, v in study[part].items()
                   if isinstance(v, dict)]
        if study["baseline"] not in study["variants"]:
            errors.append(f"baseline={study['baseline']!r} is not a variant "
                          f"(variants: {', '.join(study['variants'])})")
    if errors:
        raise StudyError(f"study file {path}:\n  " + "\n  ".join(errors))
    return study


def slug(name):
    """A variant name as a directory name: 'pos=none' -> 'pos-none'."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-")


def per_size_problem(value):
    """What is wrong with a variant's value given per size ('' if nothing, or not a dict)."""
    if not isinstance(value, dict):
        return ""
    missing = [s for s in SIZES if s not in value]
    unknown = [repr(k) for k in value if k not in SIZES]
    return "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                     + ([f"unknown {', '.join(unknown)}"] if unknown else []))


def variant_keys(study, variant, size):
    """A variant's keys at a size: a value given per size, e.g. max_iters=dict(gpu=24000,
    cpu=300, quick=15) (a longer schedule that stays short in a --quick check), takes the size's."""
    return {k: v[size] if isinstance(v, dict) else v
            for k, v in (study["variants"][variant] if variant else {}).items()}


def settings(study, size, variant=None, extra=None):
    """The train.py arguments of a variant, seed and out_dir aside. Later dicts win."""
    keys = {**study["overrides"], **study[size], **variant_keys(study, variant, size),
            **(extra or {})}
    return study["base"] + [f"--{k}={v}" for k, v in keys.items()]


def resolve(study, size, names, extra):
    """train.parse_args for every variant before anything runs: every problem at once."""
    def check(args):
        try:
            return train.parse_args(args), None
        except train.ConfigError as e:
            return None, str(e).removeprefix("invalid configuration:\n  ").replace("\n  ", "\n    ")
    _, shared = check(settings(study, size, extra=extra))
    if shared:  # a problem of the base, overrides, size or --set: one report, not one per variant
        raise StudyError(f"study {study['name']!r} ({size} size, before any variant):\n"
                         f"    {shared}")
    resolved, errors = {}, []
    for name in names:
        resolved[name], problem = check(settings(study, size, name, extra))
        if problem:
            errors.append(f"variant {name!r} ({variant_keys(study, name, size)}):\n    {problem}")
    if errors:
        raise StudyError(f"study {study['name']!r}, {size} size:\n  " + "\n  ".join(errors))
    return resolved


# ----------------------------------------------------------------------------------------------
# runs

def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def config_differences(saved, cfg, model_kw):
    """The keys where a run's saved config.json differs from the config it would get now:
    {key: (saved, now)}; empty when it is the same run."""
    want = {**dataclasses.asdict(cfg),
            **{k: model_kw.get(k, train.DEFAULTS[k]) for k in train.MODEL_KEYS}}
    # a key the run's code did not have yet held its default then
    defaults = {**dataclasses.asdict(train.TrainConfig()), **train.DEFAULTS}
    have = {**defaults, **saved.get("train", {}), **saved.get("model", {})}
    if have["init_from"] == "resume":  # resumed by older code, which saved no starting point:
        have["init_from"] = "scratch"  # a pretrained run is then trained again, to be safe
    skip = set(NOT_COMPARED)
    if cfg.init_from not in ("scratch", "resume"):  # the shape came from the pretrained encoder
        skip |= {k for k in train.PRETRAINED_KEYS if k not in model_kw}
    return {k: (have.get(k), v) for k, v in want.items() if k not in skip and have.get(k) != v}


def run_state(out_dir, cfg, model_kw):
    """'done' (finished with this very config), 'resume' (cut off, same config, a checkpoint is
    there) or 'fresh' (nothing there, or a run of another config, which is started again)."""
    saved = read_json(out_dir / "config.json")
    if not saved or config_differences(saved, cfg, model_kw):
        return "fresh"
    metrics = read_json(out_dir / "metrics.json")
    if (metrics and metrics.get("step") == cfg.max_iters
            and "checkpoint" not in metrics):  # not an eval_only
        return "done"
    return "resume" if (out_dir / "ckpt_last.pt").exists() else "fresh"


class Runner:
    """Runs train.py subprocesses, up to `jobs` at once, each given a GPU in turn
    when there are several."""

    def __init__(self, jobs):
        self.jobs, self.running, self.stopping = jobs, set(), threading.Event()
        self.slots = queue.SimpleQueue()
        for i in range(jobs):
            self.slots.put(i)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.gpus = (visible.split(",") if visible
                     else [str(i) for i in range(torch.cuda.device_count())])

    def run(self, job, log_name="train.log"):
        if self.stopping.is_set():
            return None
        slot = self.slots.get()
        try:
            env = dict(os.environ)
            # share the cores instead of fighting over them
            if self.jobs > 1 and "OMP_NUM_THREADS" not in env:
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
            if len(self.gpus) > 1:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
            out_dir = job["out_dir"]
            out_dir.mkdir(parents=True, exist_ok=True)
            evaluating = job["state"] == "eval"
            stale = out_dir / ("metrics_test.json" if evaluating else "metrics.json")
            stale.unlink(missing_ok=True)  # a stale one must never pass for this run's
            args = [sys.executable, str(ROOT / "train.py"), *job["args"], f"--seed={job['seed']}",
                    f"--out_dir={out_dir}", *([] if evaluating else ["--overwrite=true"])]
            if job["state"] == "resume":
                args.append("--init_from=resume")
            t0 = time.time()
            with open(out_dir / log_name, "a" if job["state"] == "resume" else "w") as log:
                log.write(shlex.join(args) + "\n")
                log.flush()
                proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env=env)
                self.running.add(proc)
                if self.stopping.is_set():  # interrupted while it started
                    proc.send_signal(signal.SIGINT)
                try:
                    code = proc.wait()
                finally:
                    self.running.discard(proc)
            return code, time.time() - t0
        finally:
            self.slots.put(slot)

    def interrupt(self):
        """Ask every running training to save a checkpoint and stop (train.py handles SIGINT so)."""
        self.stopping.set()
        for proc in list(self.running):
            proc.send_signal(signal.SIGINT)


def collect(job, out):
    """One results row: final metrics, parameter count, throughput (median of the train log)."""
    m = read_json(job["out_dir"] / "metrics.json") or {}
    log = job["out_dir"] / "log.jsonl"
    records = ([json.loads(line) for line in log.read_text().splitlines() if line]
               if log.exists() else [])
    tps = [r["tokens_per_s"] for r in records if r.get("kind") == "train" and r.get("tokens_per_s")]
    row = {"variant": job["variant"], "seed": job["seed"],
           "out_dir": str(job["out_dir"].relative_to(out)),
           "params": m.get("params"), "tokens_per_s": float(np.median(tps)) if tps else None,
           "wall_s": m.get("wall_s"), "step": m.get("step")}
    row.update({k: v for k, v in m.items() if k not in row})
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


# ----------------------------------------------------------------------------------------------
# statistics and outputs

def summarize(runs, names, metric, baseline, quick=False):
    """Per variant: n, mean, sample std (ddof=1), difference to the baseline's mean, and Welch's
    t-test of the variant's seeds against the baseline's (unequal variances). quick: tiny runs check
    the machinery, so p is computed but no significance claimed (2 seeds x 20 steps
    would call noise so)."""
    # here, not at the top: a second of start-up that only the summary needs
    from scipy import stats
    values = {v: np.array([r[metric] for r in runs
                           if r["variant"] == v and r.get(metric) is not None], float)
              for v in names}
    base = values.get(baseline, np.array([]))
    rows = []
    for v in names:
        x = values[v]
        if not len(x):
            continue
        diff = float(x.mean() - base.mean()) if len(base) else None
        p = None
        if v != baseline and len(x) > 1 and len(base) > 1 and (np.ptp(x) > 0 or np.ptp(base) > 0):
            # scipy warns when one side has no spread; the test still holds
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_ind(x, base, equal_var=False).pvalue)
        mine = [r for r in runs if r["variant"] == v]
        tps = [r["tokens_per_s"] for r in mine if r.get("tokens_per_s")]
        rows.append({"variant": v, "n": len(x), "mean": float(x.mean()),
                     "std": float(np.std(x, ddof=1)) if len(x) > 1 else None,
                     "diff": diff, "p_value": p,
                     "significant": None if p is None or quick else p < ALPHA,
                     "params": mine[0].get("params"),
                     "tokens_per_s": float(np.mean(tps)) if tps else None})
    return rows


def runs_csv(runs):
    columns = []
    for r in runs:  # flat values only: per_class, confusion and labels stay in results.json
        columns += [k for k, v in r.items() if k not in columns and not isinstance(v, (dict, list))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(runs)
    return buf.getvalue()


def table(results):
    """The summary as markdown table lines, one row per variant."""
    metric, base = results["metric"], results["baseline"]
    lines = [f"| variant | {metric} | n | Δ vs {base} | p | significant | params | tokens/s |",
             "|---|---|---|---|---|---|---|---|"]
    for s in results["summary"]:
        spread = f" ± {s['std']:.4f}" if s["std"] is not None else ""
        diff = "—"
        if s["variant"] != base and s["diff"] is not None:
            diff = f"{s['diff']:+.4f}"
            if float(diff):  # say which way, unless it rounds to nothing
                diff += (" (better)" if (s["diff"] > 0) == results["higher_is_better"]
                         else " (worse)")
        p = (f"{s['p_value']:.2g}" if s["p_value"] is not None
             else ("" if s["variant"] == base else "n/a"))
        sig = {True: "yes", False: "no", None: ""}[s["significant"]]
        params = f"{s['params'] / 1e6:.2f}M" if s["params"] else ""
        tps = f"{s['tokens_per_s'] / 1e3:,.0f}k" if s["tokens_per_s"] else ""
        lines.append(f"| {s['variant']} | {s['mean']:.4f}{spread} | {s['n']} | {diff} | {p} | "
                     f"{sig} | {params} | {tps} |")
    return lines


QUICK_NOTE = ["**--quick: a check of the machinery (tiny models, a few steps), not a result. No "
              "significance is claimed; run without --quick for numbers.**", ""]


def summary_md(results, chart):
    better = "higher" if results["higher_is_better"] else "lower"
    lines = [f"# Ablation study `{results['study']}`", "", results["description"], "",
             *(QUICK_NOTE if results.get("size") == "quick" else []),
             f"- command: `{results['command']}`",
             f"- device: {results['device']}; torch {results['torch']}; {results['date']}",
             *([f"- summarized without training (--summarize): {results['summarized']}"]
               if results.get("summarized") else []),
             f"- metric: val {results['metric']} at the end of training ({better} is better), "
             f"mean ± sample std over seeds (n); Δ = variant mean − `{results['baseline']}` "
             f"mean; p: Welch t-test of the variant's seeds against the baseline's "
             f"(scipy.stats.ttest_ind, equal_var=False), n/a with fewer than 2 seeds or no spread; "
             f"significant: p < {ALPHA}.",
             f"- tokens/s: median over each run's training log, mean over seeds. "
             f"{results['jobs']} run(s) shared the device at a time (--jobs), so compare speeds "
             f"within one study only.", ""]
    lines += table(results)
    if results.get("test"):
        t = results["test"]
        lines += ["", f"## Test split: `{t['variant']}` (selected by {t['selected_by']})", "",
                  "| seed | " + " | ".join(t["summary"]) + " |",
                  "|---" * (len(t["summary"]) + 1) + "|"]
        lines += [f"| {r['seed']} | " + " | ".join(f"{r[k]:.4f}" for k in t["summary"]) + " |"
                  for r in t["runs"]]
        lines.append("| mean ± std | " + " | ".join(
            f"{v['mean']:.4f} ± {v['std']:.4f}" if v["std"] is not None else f"{v['mean']:.4f}"
            for v in t["summary"].values()) + " |")
    if chart:
        lines += ["", f"![{results['study']} ablation]({chart})"]
    if results["failed"]:
        lines += ["", f"Failed runs, left out above ({len(results['failed'])}):"]
        lines += [f"- {f['variant']} seed {f['seed']}: {f['error']} (log: {f['log']})"
                  for f in results["failed"]]
    return "\n".join(lines) + "\n"


def logged_device(jobs_list):
    """The device the runs trained on, from their train.log lines such as
    'device cuda (NVIDIA H200), ...'."""
    found = set()
    for job in jobs_list:
        log = job["out_dir"] / "train.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        found.update(re.findall(r"^device \S+ \(([^)]*)\)", text, re.M))
    return ", ".join(sorted(found)) or "not recorded in the runs' logs"


def logged_torch(jobs_list):
    """The torch version(s) the runs trained with, from their config.json ("software")."""
    found = {(read_json(job["out_dir"] / "config.json") or {}).get("software", {}).get("torch")
             for job in jobs_list}
    return ", ".join(sorted(v for v in found if v)) or "not recorded in the runs' config.json"


def device_name():
    if torch.cuda.is_available():
        n, name = torch.cuda.device_count(), torch.cuda.get_device_name(0)
        return f"{n} x {name}" if n > 1 else name
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# ----------------------------------------------------------------------------------------------
# the study

def check_options(size, quick, seeds, jobs, extra, test, summarize_only):
    """run_study's options, checked and with their defaults: (size, seeds, jobs, extra)."""
    size = size or ("quick" if quick else "gpu" if torch.cuda.is_available() else "cpu")
    if size not in SIZES:
        raise StudyError(f"size={size!r} is not one of {', '.join(map(repr, SIZES))}")
    quick = size == "quick"
    seeds = (2 if quick else 3) if seeds is None else seeds  # two is the fewest a t-test takes
    if jobs is None:  # --quick runs are mostly process start-up, which overlaps well even on a CPU
        jobs = GPU_JOBS if size == "gpu" else min(4, os.cpu_count() or 1) if quick else 1
    extra = dict(extra or {})
    if summarize_only and test:
        raise StudyError("--summarize trains and evaluates nothing, so it cannot --test: run the "
                         "study with --test once its runs have finished")
    if seeds < 1 or jobs < 1:
        raise StudyError(f"--seeds={seeds} and --jobs={jobs} must both be >= 1")
    if bad := [k for k in extra if k in RESERVED]:
        raise StudyError(f"--set {', '.join(bad)}: ablate.py sets {', '.join(RESERVED)} for each "
                         f"run (choose seeds with --seeds and the output folder with --out)")
    if extra.get("init_from") in ("resume", "scratch"):
        raise StudyError(f"--set init_from={extra['init_from']}: ablate.py resumes a cut-off run "
                         f"itself and starts the others from scratch; --set init_from=PATH starts "
                         f"every run from that checkpoint (a pretrained encoder)")
    if "init_from" in extra:  # the runs start in the repository root: a path from here, made whole
        path = Path(extra["init_from"]).resolve()
        if not path.is_file():
            raise StudyError(f"--set init_from={extra['init_from']}: no such file ({path})")
        extra["init_from"] = str(path)
    return size, seeds, jobs, extra


def select_variants(study, variants, say):
    """The study's variants to run, in its order: those asked for (all by default), always with
    the baseline."""
    names = list(study["variants"])
    if not variants:
        return names
    unknown = [v for v in variants if v not in study["variants"]]
    if unknown:
        raise StudyError(f"unknown variant(s) {', '.join(map(repr, unknown))} in study "
                         f"{study['name']!r}: expected some of {', '.join(study['variants'])}")
    if study["baseline"] not in variants:
        say(f"adding the baseline {study['baseline']!r}: every difference is measured against it")
    return [v for v in names if v in variants or v == study["baseline"]]


def plan_runs(study, size, names, seeds, resolved, extra, out):
    """One job per (seed, variant), seed-major so that a study stopped early still compares every
    variant: {variant, seed, out_dir, args (train.py's), state (run_state: done, resume, ...)}."""
    jobs_list = []
    for seed in range(seeds):
        for v in names:
            cfg, kw = resolved[v]
            out_dir = out / "runs" / f"{slug(v)}-s{seed}"
            jobs_list.append({"variant": v, "seed": seed, "out_dir": out_dir,
                              "args": settings(study, size, v, extra),
                              "state": run_state(out_dir, dataclasses.replace(cfg, seed=seed), kw)})
    return jobs_list


def train_runs(todo, runner, study, resolved, say):
    """Run the jobs, runner.jobs at a time, saying each one's metric as it finishes; returns the
    failed ones ({variant, seed, log, returncode, error}). Ctrl-C stops the runs at a checkpoint,
    so the next call resumes them."""
    failed = []
    with ThreadPoolExecutor(runner.jobs) as pool:
        futures = {pool.submit(runner.run, j): j for j in todo}
        try:
            for i, future in enumerate(as_completed(futures), 1):
                job, (code, wall) = futures[future], future.result()
                m = read_json(job["out_dir"] / "metrics.json") or {}
                log = job["out_dir"] / "train.log"
                if code == 0 and m.get("step") == resolved[job["variant"]][0].max_iters:
                    say(f"[{i}/{len(todo)}] {job['variant']} seed {job['seed']}: "
                        f"{study['metric']} {m.get(study['metric'], float('nan')):.4f} "
                        f"({wall:.0f} s)")
                    continue
                lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                error = next((line for line in reversed(lines)
                              if line.startswith("error") or "Error" in line), None)
                error = error or f"exit code {code}, stopped at step {m.get('step')}"
                failed.append({"variant": job["variant"], "seed": job["seed"], "log": str(log),
                               "returncode": code, "error": error.strip()})
                say(f"[{i}/{len(todo)}] {job['variant']} seed {job['seed']}: "
                    f"FAILED ({error.strip()}); see {log}")
        except KeyboardInterrupt:
            runner.interrupt()
            for future in futures:
                future.cancel()
            raise
    return failed


def write_study(results, runs, out, quick, say):
    """results.json, results.csv, ablation.png (once the baseline has a run) and summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_atomic(out / "results.csv", runs_csv(runs))
    import plot  # matplotlib: only the chart needs it
    # the chart draws differences from the baseline, so it waits for the baseline's first run
    has_baseline = any(s["variant"] == results["baseline"] for s in results["summary"])
    chart = plot.plot_ablation(results, out / "ablation.png") if has_baseline else None
    write_atomic(out / "summary.md", summary_md(results, chart and Path(chart).name))
    say("\n".join(table(results) + QUICK_NOTE[:1] * quick))
    say(f"wrote {out}/results.csv, results.json, summary.md{', ablation.png' if chart else ''}")
    if not has_baseline:
        say(f"no chart: the baseline {results['baseline']!r} has no finished run yet, and the "
            f"chart shows differences from it; run the study again to finish it")


def run_study(name_or_path, seeds=None, jobs=None, quick=False, out=None, variants=None, extra=None,
              quiet=False, test=False, size=None, summarize_only=False):
    """Train every (variant, seed) not yet finished, then write results.csv/.json, summary.md and
    ablation.png to out. Returns the results dict (with counts "ran" and "skipped").
    test=True: then score the variant selected on val on the test split (score_selected).
    size: 'gpu', 'cpu' or 'quick' (default: quick with quick=True, else gpu where CUDA is).
    summarize_only=True: train nothing; the summary of the runs already finished (a study cut off
    by a time limit, or run on another machine: give its size), with "finished" counting them."""
    say = (lambda *a, **k: None) if quiet else print
    study = load_study(name_or_path)
    size, seeds, jobs, extra = check_options(size, quick, seeds, jobs, extra, test, summarize_only)
    quick = size == "quick"
    names = select_variants(study, variants, say)
    resolved = resolve(study, size, names, extra)
    out_given = out is not None
    out = Path(out or f"results/{study['name']}{'' if size == 'gpu' else '-' + size}").resolve()
    # before any data set is prepared or run started
    if problem := checkpoint.writable_problem(out):
        raise StudyError(f"cannot write to --out {out}: {problem}; choose another --out")

    # prepare each data set once, here, rather than in several runs at once
    datasets = {(c.dataset, c.data_dir): (c, k) for c, k in resolved.values()}
    for cfg, _ in ({} if summarize_only else datasets).values():
        train.load_data(dataclasses.replace(cfg, data_dir=str(ROOT / cfg.data_dir)), quiet=quiet)

    jobs_list = plan_runs(study, size, names, seeds, resolved, extra, out)
    todo = [j for j in jobs_list if j["state"] != "done"]
    if summarize_only:
        finished = len(jobs_list) - len(todo)
        if not finished:
            raise StudyError(f"no run of study {study['name']!r} ({size} size, seeds "
                             f"0..{seeds - 1}) has finished in {out}/runs: nothing to summarize "
                             f"(the size must be the one the runs were made at: --size)")
        say(f"study {study['name']!r}, {size} size: summarizing the {finished} of "
            f"{len(jobs_list)} runs ({len(names)} variants x {seeds} seeds) finished in "
            f"{out}/runs; training nothing")
        jobs_list, todo = [j for j in jobs_list if j["state"] == "done"], []
    else:
        say(f"study {study['name']!r}: {len(names)} variants x {seeds} seeds = {len(jobs_list)} "
            f"runs, {size} size; {len(jobs_list) - len(todo)} finished, {len(todo)} to run "
            f"({sum(j['state'] == 'resume' for j in todo)} resuming from a checkpoint), "
            f"{jobs} at a time; logs in {out}/runs/NAME/train.log")

    runner = Runner(jobs)
    failed = train_runs(todo, runner, study, resolved, say)
    bad = {(f["variant"], f["seed"]) for f in failed}
    runs = [collect(j, out) for j in jobs_list if (j["variant"], j["seed"]) not in bad]
    cmd = ["python", "ablate.py",
           study["name"] if str(name_or_path) in find_studies() else str(name_or_path),
           f"--seeds={seeds}", f"--jobs={jobs}", *(["--quick"] if quick else []),
           *([f"--out={out}"] if out_given else []),
           *([f"--variants={','.join(names)}"] if variants else []),
           *[f"--set={k}={v}" for k, v in extra.items()],
           *(["--test"] if test else []),
           *([f"--size={size}", "--summarize"] if summarize_only else [])]
    results = {"study": study["name"], "description": study["description"],
               "metric": study["metric"], "higher_is_better": study["higher_is_better"],
               "baseline": study["baseline"], "command": shlex.join(cmd), "size": size,
               "jobs": jobs, "device": device_name(), "torch": torch.__version__,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": runs,
               "summary": summarize(runs, names, study["metric"], study["baseline"], quick),
               "failed": failed, "ran": len(todo), "skipped": len(jobs_list) - len(todo)}
    if summarize_only:  # the runs' machine, as their logs name it; the summary's, apart
        results["device"] = logged_device(jobs_list)
        results["summarized"] = (f"the {len(jobs_list)} runs finished of {len(names) * seeds}, "
                                 f"summarized on {device_name()} with torch {torch.__version__}")
        results["torch"] = logged_torch(jobs_list)
    if test and not failed:
        results["test"] = score_selected(results, study, jobs_list, runner)
    write_study(results, runs, out, quick, say)
    if failed:
        say(f"{len(failed)} run(s) failed and are left out of the summary: "
            f"see their train.log above")
        if test:  # a variant chosen from fewer seeds than asked is no choice: nothing is scored
            say("--test: nothing was scored on the test split, because not every run finished; "
                "run the same command again (finished runs are skipped) to retry the failed ones")
    return results


def score_selected(results, study, jobs_list, runner):
    """Test metrics of the selected variant's runs (best mean of the study's
    metric, a val figure)."""
    rows = [r for r in results["summary"] if r["mean"] is not None]
    if not rows:
        return None
    pick = (max if study["higher_is_better"] else min)(rows, key=lambda r: r["mean"])["variant"]
    scored = []
    for job in (j for j in jobs_list if j["variant"] == pick):
        eval_job = dict(job, args=[*job["args"], "--eval_only=true", "--eval_split=test"],
                        state="eval")
        code, _ = runner.run(eval_job, log_name="test.log")
        m = read_json(job["out_dir"] / "metrics_test.json")
        if code != 0 or not m:
            raise StudyError(f"scoring {pick!r} seed {job['seed']} on the test split failed: see "
                             f"{job['out_dir'] / 'test.log'}")
        scored.append({"seed": job["seed"],
                       **{k: v for k, v in m.items() if isinstance(v, (int, float))}})
    keys = [k for k in ("perplexity", "loss", "accuracy", "macro_f1")
            if all(k in r for r in scored)]
    stats = {k: {"mean": float(np.mean([r[k] for r in scored])),
                 "std": float(np.std([r[k] for r in scored], ddof=1)) if len(scored) > 1 else None}
             for k in keys}
    return {"variant": pick, "selected_by": f"best mean {study['metric']} on val", "runs": scored,
            "summary": stats}


def list_studies():
    print("studies (config/study_NAME.py):")
    for name in find_studies():
        try:
            s = load_study(name)
            base = ", ".join(str(Path(b).relative_to(ROOT)) for b in s["base"])
            order = "higher" if s["higher_is_better"] else "lower"
            print(f"  {name:<6} {len(s['variants']):>2} variants  {s['metric']} "
                  f"({order} is better)  base {base}\n"
                  f"         {s['description']}")
        except StudyError as e:
            print(f"  {name:<6} broken: {e}")


def interrupted(sig, frame):
    raise KeyboardInterrupt


@dataclasses.dataclass
class AblateConfig:
    study: str = opt("", f"a study name (config/study_NAME.py) or file, the one positional "
                         f"argument (default {DEFAULT_STUDY})", metavar="NAME")
    seeds: int = opt(0, "seeds per variant: 0..N-1 (0: 3, or 2 with --quick)")
    jobs: int = opt(0, f"trainings at once (0: {GPU_JOBS} on a GPU, 1 on a CPU, "
                       f"up to 4 with --quick)")
    quick: bool = opt(False, "the study's tiny size: checks the machinery in a minute")
    out: str = opt("", "output folder (default results/STUDY, or STUDY-cpu, STUDY-quick)",
                   metavar="DIR")
    variants: str = opt("", "comma-separated subset of variants (plus the baseline)", metavar="A,B")
    set: tuple = opt((), "a train/model key for every run, e.g. --set=data_dir=/data "
                         "(repeatable; relative paths are relative to the repository, where the "
                         "runs start)", metavar="KEY=VALUE")
    size: str = opt("", "the study's size: 'gpu', 'cpu' or 'quick' (default: gpu where CUDA is, "
                        "else cpu; quick with --quick)")
    summarize: bool = opt(False, "train nothing: summarize the runs already finished in --out "
                                 "(a study cut off, or run on another machine: give its --size)")
    test: bool = opt(False, "then score the variant with the best mean val metric on the test "
                            "split, every seed")
    list: bool = opt(False, "list the studies and stop")


def check_sets(opts):
    return [f"--set={s}: expected --set=KEY=VALUE, e.g. --set=data_dir=data"
            for s in opts.set if "=" not in s]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help(__doc__, AblateConfig,
                   note="Options (--key value works too, as in `ablate.py lm --seeds 3`):")
        return 0
    try:  # --key value as well as --key=value: ablate.py has no config files to mistake a value for
        args = parse(argv, AblateConfig, check_sets, positional="study", spaced=True,
                     script="ablate.py")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.list or not args.study:
        list_studies()
        if args.list:
            return 0
        print(f"\nrunning the default study {DEFAULT_STUDY!r} "
              f"(Ctrl-C stops it; the same command resumes it)")
    # SIGTERM as Ctrl-C: the running trainings are told to save and stop, not left behind as orphans
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
        results = run_study(args.study or DEFAULT_STUDY, seeds=args.seeds or None,
                            jobs=args.jobs or None, quick=args.quick, out=args.out or None,
                            variants=variants, extra=dict(s.split("=", 1) for s in args.set),
                            test=args.test, size=args.size or None,
                            summarize_only=args.summarize)
    except (StudyError, train.ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot write {e.filename}: {e.strerror}; choose another --out",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept, and the same command resumes the others",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
