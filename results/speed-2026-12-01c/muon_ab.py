"""A/B timing of one Muon step on the GPU for the main job's matrices (6 x 384): the step of commit
584bd0d (one Newton-Schulz per matrix) against optimizers.Muon (one batched Newton-Schulz per
shape). CUDA events, median of 50 steps after 10; the two results' largest difference.
Run from the repository root: python results/speed-2026-12-01c/muon_ab.py OUT.json"""
import json, math, sys, statistics
from pathlib import Path
import torch
sys.path.insert(0, ".")
import optimizers
from model import Transformer, TransformerConfig
import train

OLD = (Path(__file__).parent / "old_muon.py").read_text()
ns = {"torch": torch, "math": math, "Optimizer": torch.optim.Optimizer}
exec(OLD, ns)


def bench(make):
    torch.manual_seed(0)
    m = Transformer(TransformerConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)).cuda()
    named = [(n, p) for n, p in m.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2]
    blocks = {p: 3 for n, p in named if n.endswith(".attn.c_attn.weight")}
    opt = make([p for _, p in named], blocks)
    g = torch.Generator(device="cuda").manual_seed(1)
    for _, p in named:
        p.grad = torch.randn(p.shape, device="cuda", generator=g) * 1e-3
    times = []
    for i in range(60):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); opt.step(); b.record(); torch.cuda.synchronize()
        if i >= 10:
            times.append(a.elapsed_time(b))
    return statistics.median(times), [p.detach().clone() for _, p in named]


old_ms, old_p = bench(lambda ps, blocks: ns["Muon"](ps, 3e-3, 0.1, 0.95, blocks))
new_ms, new_p = bench(lambda ps, blocks: optimizers.Muon(ps, 3e-3, 0.1, 0.95, blocks))
diff = max(float((a - b).abs().max()) for a, b in zip(old_p, new_p))
out = dict(old_ms=old_ms, new_ms=new_ms, speedup=old_ms / new_ms, max_abs_diff_after_60_steps=diff,
           device=torch.cuda.get_device_name(), torch=torch.__version__)
print(json.dumps(out))
json.dump(out, open(sys.argv[1], "w"), indent=1)
