"""Why the KV cache holds one tensor per layer: a compiled function that writes one new position into
each layer's slice of a single (n_layer, ...) buffer against one that writes into per-layer buffers.
torch.compile turns a write into a view of a graph input into a copy of the whole base tensor, so
the first costs a copy of the whole cache per layer. CPU, 4 layers of (64, 4096, 64) fp32.
    python results/kv_layout_cpu/kv_layout_cpu.py results/kv_layout_cpu/kv_layout_cpu.json"""
import json
import platform
import sys
import time

import torch


def view_write(buf, idx, val):
    for layer in range(4):
        buf[layer].index_copy_(1, idx, val)
    return buf[3].sum()


def list_write(bufs, idx, val):
    for b in bufs:
        b.index_copy_(1, idx, val)
    return bufs[3].sum()


big = torch.zeros(4, 64, 4096, 64)
bufs = [torch.zeros(64, 4096, 64) for _ in range(4)]
idx, val = torch.tensor([5]), torch.ones(64, 1, 64)
rows = {}
for name, fn, arg in (("one (n_layer, ...) tensor, views written", view_write, big),
                      ("one tensor per layer", list_write, bufs)):
    compiled = torch.compile(fn)
    compiled(arg, idx, val)  # compiles
    t = time.perf_counter()
    for _ in range(20):
        compiled(arg, idx, val)
    rows[name] = (time.perf_counter() - t) / 20 * 1000
    print(f"{name}: {rows[name]:.2f} ms a call")
out = {"ms_per_call": rows, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
       "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
open(sys.argv[1], "w").write(json.dumps(out, indent=2) + "\n")
