"""Does the residual projections' initial scale set the depths where post-LN without warmup stays
on the unigram plateau? probe.py's run (see its docstring) at --layers L, with every c_proj weight
multiplied right after initialisation so that its std is 0.02 / sqrt(2 * --as_layers), GPT-2's
rule for the other depth. Scaling the drawn weights uses no random numbers, so the run sees the
same draws and batches as probe.py's at L layers; only the scale differs.

    python results/postln-depth-cpu/init_scale.py --layers 12 --as_layers 16 --seeds 0 1 2 3 4 \
        --json results/postln-depth-cpu/init_12_as_16.json
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

import torch

from probe_setup import FLAGS, ROOT, commit, losses, train, train_argv

RUN = """
import math, sys, torch
sys.path.insert(0, {root!r})
import model, train
init = model.Transformer.__init__
def scaled(self, cfg):
    init(self, cfg)
    with torch.no_grad():
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                p.mul_(math.sqrt(cfg.n_layer / {as_layers}))  # std 0.02 / sqrt(2 * as_layers)
model.Transformer.__init__ = scaled
sys.exit(train.main({argv!r}))
"""

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, required=True)
p.add_argument("--as_layers", type=int, required=True)
p.add_argument("--seeds", type=int, nargs="+", required=True)
p.add_argument("--steps", type=int, default=40)
p.add_argument("--json", required=True)
a = p.parse_args()
head = commit()
rows = []
for s in a.seeds:
    with tempfile.TemporaryDirectory() as d:
        t = time.time()
        argv = train_argv(a.layers, s, a.steps, f"{d}/run")
        train(argv, RUN.format(root=str(ROOT), as_layers=a.as_layers, argv=argv))
        loss = losses(f"{d}/run")
    last = loss[max(loss)]
    rows.append(dict(n_layer=a.layers, init_as=a.as_layers, seed=s, loss=loss, trains=last < 3.0))
    print(f"n_layer {a.layers} init as {a.as_layers} seed {s}: "
          + " ".join(f"{k}:{v:.3f}" for k, v in loss.items())
          + f"  {'trains' if last < 3.0 else 'STUCK'}  ({time.time() - t:.0f} s)", flush=True)

Path(a.json).write_text(json.dumps(dict(
    command="python " + " ".join(sys.argv), flags=FLAGS, rows=rows, torch=torch.__version__,
    python=platform.python_version(), threads=torch.get_num_threads(),
    date=time.strftime("%Y-%m-%d"), commit=head), indent=1) + "\n")
