"""What the stuck post-LN runs look like inside: probe.py's run (post-LN, no warmup; see its
docstring) at --layers L for --steps steps, with a forward hook on every block that records how
alike the tokens of a sequence have become: the mean cosine similarity between the block's outputs
at different positions of the same sequence (1: every position carries the same vector, so the
output cannot depend on the input and the best the head can do is the unigram distribution).
Recorded at the training forward passes of steps 0, 1, 2, 3, 5, 10, 20, 30 and 40.

    python results/postln-depth-cpu/collapse.py --layers 12 16 --seed 0 \
        --json results/postln-depth-cpu/collapse.json
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

import torch

from probe_setup import FLAGS, ROOT, commit, losses, train, train_argv
RUN = """
import json, sys, torch
sys.path.insert(0, {root!r})
import model, train
STEPS = {{0, 1, 2, 3, 5, 10, 20, 30, 40}}
calls, out = {{}}, {{}}
init = model.Transformer.__init__
def hooked(self, cfg):
    init(self, cfg)
    def hook(block, inputs, x):
        if not block.training:
            return
        i = block.attn.layer_idx
        n = calls[i] = calls.get(i, -1) + 1  # this block's training forward passes = the step
        if n in STEPS:
            with torch.no_grad():
                u = torch.nn.functional.normalize(x.float(), dim=-1)  # (B, T, C)
                sim = u @ u.transpose(1, 2)  # (B, T, T)
                T = sim.size(-1)
                off = (sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(-1)) / (T * (T - 1))
            out.setdefault(n, [None] * cfg.n_layer)[i] = round(off.mean().item(), 4)
    for b in self.transformer.h:
        b.register_forward_hook(hook)
model.Transformer.__init__ = hooked
try:
    train.main({argv!r})
finally:
    open({dump!r}, "w").write(json.dumps(out))
"""

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, nargs="+", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=40)
p.add_argument("--json", required=True)
a = p.parse_args()
head = commit()
runs = []
for L in a.layers:
    with tempfile.TemporaryDirectory() as d:
        t = time.time()
        argv = train_argv(L, a.seed, a.steps, f"{d}/run")
        train(argv, RUN.format(root=str(ROOT), argv=argv, dump=f"{d}/sim.json"))
        sim = {int(k): v for k, v in json.loads(Path(f"{d}/sim.json").read_text()).items()}
        loss = losses(f"{d}/run")
    runs.append(dict(n_layer=L, seed=a.seed, loss=loss, token_cosine=sim))
    print(f"n_layer {L} seed {a.seed} ({time.time() - t:.0f} s): loss "
          + " ".join(f"{k}:{v:.3f}" for k, v in loss.items()))
    for step, row in sorted(sim.items()):
        print(f"  step {step:2d}: token cosine by layer " + " ".join(f"{v:.2f}" for v in row))
Path(a.json).write_text(json.dumps(dict(
    command="python " + " ".join(sys.argv), flags=FLAGS, runs=runs, torch=torch.__version__,
    python=platform.python_version(), threads=torch.get_num_threads(),
    date=time.strftime("%Y-%m-%d"), commit=head), indent=1) + "\n")
