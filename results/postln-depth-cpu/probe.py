"""Does post-LN without warmup leave the unigram plateau? The first steps (--steps, 40 in the
committed run) of config/study_postln.py's `post+warmup=0` run (AdamW, lr 1e-3 from step 0,
1,500-step schedule) at several depths and seeds, in float32 on a CPU. A run that fails sits at
the unigram loss (3.35 nats per character, see results/postln-L12/unigram.json); one whose last
logged loss is below 3.0 is counted as training (those of the committed run are below 2.75).

    python results/postln-depth-cpu/probe.py --layers 6 8 10 12 14 16 20 --seeds 0 1 2 3 4 \
        --steps 40 --json results/postln-depth-cpu/probe.json
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

import torch

from probe_setup import FLAGS, ROOT, commit, losses, train, train_argv

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, nargs="+", required=True)
p.add_argument("--seeds", type=int, nargs="+", required=True)
p.add_argument("--steps", type=int, default=30)
p.add_argument("--json", required=True)
p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
               help="a train.py key after the fixed flags, e.g. --set warmup_iters=10")
a = p.parse_args()

rows = []
for L in a.layers:
    for s in a.seeds:
        with tempfile.TemporaryDirectory() as d:
            t = time.time()
            train(train_argv(L, s, a.steps, f"{d}/run", [f"--{kv}" for kv in a.set]))
            loss = losses(f"{d}/run")
        last = loss[max(loss)]
        rows.append(dict(n_layer=L, seed=s, set=a.set, loss=loss, trains=last < 3.0))
        print(f"n_layer {L:2d} seed {s}: " + " ".join(f"{k}:{v:.3f}" for k, v in loss.items())
              + f"  {'trains' if last < 3.0 else 'STUCK'}  ({time.time() - t:.0f} s)", flush=True)

out = dict(command="python " + " ".join(sys.argv), flags=FLAGS, rows=rows,
           torch=torch.__version__, python=platform.python_version(), cpu=platform.processor()
           or platform.machine(), threads=torch.get_num_threads(),
           date=time.strftime("%Y-%m-%d"), commit=commit())
Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
