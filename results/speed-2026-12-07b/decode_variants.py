"""Batch-1 decode of the GPT-2 small shape (random bf16 weights, greedy, 1,000 tokens) under
different torch.compile settings of the decode step:
  shipped  : torch.compile(decode_step, dynamic=False) (model.compiled_decode_step), the tree's model.py
  plain    : shipped with model.Linear's one-token path off (nn.Linear's forward)
  cdt      : + options={"coordinate_descent_tuning": True}
  sums     : every nn.Linear at one token written as products and a sum in float32 (Inductor
             then generates the matrix-vector products itself and fuses their epilogues)
  sums_cdt : sums + options={"coordinate_descent_tuning": True}
  maxat    : mode="max-autotune-no-cudagraphs"
python decode_variants.py --variant V --json F
"""
import argparse, json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path.cwd()))
import torch
import torch.nn as nn
import torch.nn.functional as F
import model as model_module
import sample

p = argparse.ArgumentParser()
p.add_argument("--variant", choices=["shipped", "plain", "cdt", "sums", "sums_cdt", "maxat"], required=True)
p.add_argument("--json", default=None)
p.add_argument("--tokens", type=int, default=1000)
args = p.parse_args()

if args.variant in ("sums", "sums_cdt"):
    linear_forward = nn.Linear.forward

    def forward(self, x):
        if torch.compiler.is_compiling() and x.shape[-2] == 1:
            y = (x.float().unsqueeze(-2) * self.weight.float()).sum(-1)
            if self.bias is not None:
                y = y + self.bias.float()
            return y.to(x.dtype)
        return linear_forward(self, x)
    nn.Linear.forward = forward

if args.variant == "plain":  # model.Linear as nn.Linear at every size (the step before model.Linear)
    model_module.Linear.forward = nn.Linear.forward
options = {"shipped": {}, "plain": {}, "cdt": dict(options={"coordinate_descent_tuning": True}),
           "sums_cdt": dict(options={"coordinate_descent_tuning": True}), "sums": {},
           "maxat": dict(mode="max-autotune-no-cudagraphs")}[args.variant]
model_module.compiled_decode_step = lambda: torch.compile(model_module.decode_step, dynamic=False,
                                                          **options)
recorded = []
_record = model_module.record_cuda_graph
def record_and_keep(*a, **k):
    graph, out = _record(*a, **k)
    recorded.append(graph)
    return graph, out
model_module.record_cuda_graph = record_and_keep

torch.manual_seed(0)
dev = torch.device("cuda")
cfg = model_module.TransformerConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12,
                                     n_embd=768, pos_encoding="learned", bias=True,
                                     tie_weights=True, dropout=0.0, activation="gelu_tanh")
net = sample.cast_for_inference(model_module.Transformer(cfg).to(dev), torch.bfloat16).eval()
prompt = torch.zeros(1, 1, dtype=torch.long, device=dev)
times = []
for _ in range(4):
    torch.cuda.synchronize(); t = time.perf_counter()
    out = net.generate(prompt, args.tokens, temperature=0, compile=True)
    torch.cuda.synchronize(); times.append(time.perf_counter() - t)
tokens = out[0, 1:].tolist()
n_graph = 300
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(n_graph):
    recorded[-1].replay()
e.record(); torch.cuda.synchronize()
graph_us = s.elapsed_time(e) * 1000 / n_graph
res = {"variant": args.variant, "tokens_per_s": args.tokens / statistics.median(times[1:]),
       "generate_s": times, "first_s": times[0], "graph_replay_us": graph_us,
       "greedy_tokens_first_64": tokens[:64], "device": torch.cuda.get_device_name(),
       "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
print(f"{args.variant}: {res['tokens_per_s']:.0f} tokens/s (first {times[0]:.1f} s), "
      f"graph {graph_us:.1f} us")
if args.json:
    Path(args.json).write_text(json.dumps(res, indent=1))
