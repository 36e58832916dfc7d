"""Where a batch-1 decode step of the GPT-2 small shape spends its time, and what the one-query
attention written as sums (model.one_query_attention) changes against SDPA's kernel.

python results/speed-2026-12-07/decode_probe.py --attention {sums,sdpa} --compile {0,1} --json F

It ran on the tree of the commit that adds it, whose model.py sends a compiled decode step's
attention to one_query_attention (sums); --attention=sdpa puts SDPA back for the comparison. The
next commit removed that path (it was slower), so on later trees the two settings are the same.

Random weights in bf16 (sample.cast_for_inference), a one-token prompt, greedy. Reports
  - generate(): 1,000 new tokens, whole calls (prefill, recording, the loop), median of 3 after one;
  - one decode step: the recorded graph replayed 500 times between CUDA events, the loop's host
    work included (what generate() does per token);
  - the kernels of 20 replays (torch.profiler), by GPU time.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import model as model_module  # noqa: E402
import sample  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--attention", choices=["sums", "sdpa"], default="sums")
parser.add_argument("--compile", type=int, default=0)
parser.add_argument("--json", default=None)
parser.add_argument("--tokens", type=int, default=1000)
args = parser.parse_args()

if args.attention == "sdpa":  # the decode step as before: SDPA's masked kernel
    model_module.one_query_attention = (
        lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias))

recorded = []  # the decode step's CUDA graph, to time its replays alone
_record = model_module.record_cuda_graph


def record_and_keep(*a, **k):
    graph, out = _record(*a, **k)
    recorded.append(graph)
    return graph, out


model_module.record_cuda_graph = record_and_keep

torch.manual_seed(0)
device = torch.device("cuda")
cfg = model_module.TransformerConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12,
                                     n_embd=768, pos_encoding="learned", bias=True,
                                     tie_weights=True, dropout=0.0, activation="gelu_tanh")
net = sample.cast_for_inference(model_module.Transformer(cfg).to(device), torch.bfloat16).eval()
prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
compile = bool(args.compile)

# whole generate() calls
times = []
for _ in range(4):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = net.generate(prompt, args.tokens, temperature=0, compile=compile)
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
tokens = out[0, 1:].tolist()

# one decode step, steady state: the loop of _generate_cached without the yield
with torch.no_grad():
    cache = model_module.KVCache(cfg.n_layer, cfg.block_size)
    logits = net.lm_head(net.encode(prompt, cache=cache)[:, -1])
    nxt = logits.argmax(-1, keepdim=True)
    step = net._decoder(cache, prompt, compile)
    for _ in range(20):
        nxt = step(nxt).argmax(-1, keepdim=True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    n = 500
    start.record()
    for _ in range(n):
        nxt = step(nxt).argmax(-1, keepdim=True)
    end.record()
    torch.cuda.synchronize()
    step_us = start.elapsed_time(end) * 1000 / n
    # the GPU time of the graph alone: replays back to back
    n_graph = 200
    start.record()
    for _ in range(n_graph):
        recorded[-1].replay()
    end.record()
    torch.cuda.synchronize()
    graph_us = start.elapsed_time(end) * 1000 / n_graph

    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            nxt = step(nxt).argmax(-1, keepdim=True)
        torch.cuda.synchronize()
events = prof.key_averages()
table = events.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=90)
kernels = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)
gpu_total = sum(e.self_device_time_total for e in events)
top = [{"name": e.key, "us_per_step": e.self_device_time_total / 20,
        "calls_per_step": e.count / 20} for e in kernels[:25] if e.self_device_time_total > 0]

result = {"attention": args.attention, "compile": compile, "new_tokens": args.tokens,
          "generate_s": times, "first_s": times[0],
          "tokens_per_s": args.tokens / statistics.median(times[1:]),
          "step_us": step_us, "graph_replay_us": graph_us,
          "profiled_gpu_us_per_step": gpu_total / 20, "kernels": top,
          "greedy_tokens_first_32": tokens[:32],
          "device": torch.cuda.get_device_name(), "torch": torch.__version__,
          "date": time.strftime("%Y-%m-%d")}
print(table)
print(f"{args.attention:>5} compile={int(compile)}: generate {result['tokens_per_s']:.0f} tokens/s "
      f"(first {times[0]:.1f} s), step {step_us:.1f} us with the loop, graph {graph_us:.1f} us, "
      f"profiled GPU {gpu_total / 20:.1f} us")
if args.json:
    Path(args.json).write_text(json.dumps(result, indent=1))
