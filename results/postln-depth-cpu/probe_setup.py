"""What probe.py, init_scale.py and collapse.py share: the study_postln run they each train (post-LN,
AdamW at lr 1e-3 with no warmup, 4 heads x 256 wide, 32 x 128 characters, on a CPU), the
repository root, the commit, training it for a few steps, and reading its logged training
losses."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ("--compile=False --dropout=0.0 --cpu_config= --eval_interval=100000 --log_interval=10 "
         "--optimizer=adamw --n_head=4 --n_embd=256 --block_size=128 --batch_size=32 "
         "--max_iters=1500 --warmup_iters=0 --norm=post --device=cpu --save_checkpoints=false").split()


def commit():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def losses(run_dir):
    """{step: training loss} of the run's log.jsonl, to 4 decimals."""
    records = map(json.loads, open(Path(run_dir) / "log.jsonl"))
    return {r["step"]: round(r["loss"], 4) for r in records if r["kind"] == "train"}


def train_argv(n_layer, seed, steps, run_dir, extra=()):
    """train.py's arguments for the probe run at this depth and seed, stopped after `steps`
    updates (step 0 to step `steps` logged), into run_dir; extra: more --key=value after FLAGS."""
    return ["config/shakespeare.py", *FLAGS, f"--n_layer={n_layer}", *extra, f"--seed={seed}",
            f"--stop_after={steps + 1}", f"--out_dir={run_dir}"]


def train(argv, code=None):
    """Run train.py with argv in a process of its own, or, with code, `python -c code` (a script
    that patches the model, then calls train.main itself); its output is discarded."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "train.py", *argv]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
