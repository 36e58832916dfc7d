"""
Speed: training throughput, generation speed and time-to-loss, measured the way train.py and
sample.py actually run.

    python bench.py --mode=train                           # GPT-2 small shape (124M, context 1024)
    python bench.py --mode=train --batch_size=32 --compile=false
    python bench.py --mode=train --batch_size=32 --profile=true  # and where a step's time goes
    python bench.py config/shakespeare.py --mode=generate  # tokens/s, batch 1 and N, cache on/off
    python bench.py config/shakespeare.py --mode=time_to_loss --target=1.47
    python bench.py --mode=matmul --batch_size=32          # each matrix product: bf16 vs fp8
    python bench.py --mode=attention                       # manual vs sdpa attention by length

Every mode prints a table and writes the numbers as JSON (--json=PATH, default bench_MODE.json).
Timed regions are bracketed by CUDA events or torch.cuda.synchronize(); warm-up (compilation,
cuBLAS start-up) is excluded except in time_to_loss, which times a whole fresh process on purpose.
"""
import copy
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import checkpoint
import parallel
import sample
import train
from configurator import field_types, model_config, opt, padded_vocab, parse, print_help
from data import DataError, write_atomic
from model import Transformer

# GPT-2 small, as nanoGPT's bench.py measures it (no biases, no dropout, learned positions)
GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=False, dropout=0.0,
                  pos_encoding="learned", batch_size=12)


MODES = ("train", "generate", "time_to_loss", "matmul", "attention")


@dataclass
class BenchConfig:
    mode: str = opt("train", "'train', 'generate', 'time_to_loss', 'matmul' or 'attention'")
    steps: int = opt(20, "train, matmul, attention: timed repeats (after warm-up)")
    warmup: int = opt(5, "train, matmul, attention: untimed repeats first "
                         "(compilation happens here)")
    lengths: str = opt("128,256,512,1024,2048,4096",
                       "attention: sequence lengths, at batch_size x block_size tokens each")
    repeats: int = opt(3, "generate: timed generations per setting (median reported)")
    max_new_tokens: int = opt(1000, "generate: tokens per generation")
    batch_n: int = opt(16, "generate: the 'batch N' setting next to batch 1")
    no_cache: bool = opt(True, "generate: also time the cache-less reference loop (slow on a CPU)")
    target: float = opt(1.47, "time_to_loss: stop once the exact val loss reaches this")
    vocab_size: int = opt(0, "train/generate: 0 = the data set's (padded) vocabulary, or 50304 "
                             "without a config")
    profile: bool = opt(False, "train: after timing, list the kernels a step's time goes to "
                               "(torch.profiler)")
    json: str = opt("", "where to write the results (default bench_MODE.json)")


def split_args(argv):
    """Bench's own --keys (a BenchConfig), and the rest for train.parse_args (config files, train
    and model keys)."""
    mine = [a for a in argv
            if a.startswith("--") and a[2:].partition("=")[0] in field_types(BenchConfig)]
    rest = [a for a in argv if a not in mine]
    return parse(mine, BenchConfig, check_mode, script="bench.py"), rest


def check_mode(bench):
    return ([] if bench.mode in MODES
            else [f"mode={bench.mode!r} is not one of {', '.join(map(repr, MODES))}"])


def environment(device):
    return {"device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else platform.processor() or "cpu"),
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def build(argv, bench):
    """(train config, model, device, dtype, autocast) for a config file + overrides; GPT-2 small
    shape when no config file is given."""
    has_config = any(not a.startswith("--") for a in argv)
    if not has_config:
        argv = [f"--{k}={v}" for k, v in GPT2_SMALL.items()] + argv
    cfg, model_kw = train.parse_args(argv)
    vocab = bench.vocab_size
    if not vocab:
        if has_config:
            meta = train.load_data(cfg, quiet=True).meta
            vocab = padded_vocab(meta["vocab_size"])
        else:
            vocab = 50304
    device = train.resolve_device(cfg.device)
    dtype = train.resolve_dtype(cfg.dtype, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(cfg.seed)
    model = Transformer(model_config(model_kw, vocab_size=vocab)).to(device)
    return cfg, model, device, dtype, autocast


class RandomBatches:
    """Uniformly random token batches on the device: throughput does not depend on the text."""
    task = "lm"

    def __init__(self, vocab, batch_size, block_size, device):
        g = torch.Generator(device=device).manual_seed(0)
        self.data = [torch.randint(vocab, (batch_size, block_size + 1), device=device, generator=g)
                     for _ in range(4)]

    def get(self, step, micro, rank):
        b = self.data[(step + micro) % len(self.data)]
        return b[:, :-1], b[:, 1:]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, warmup, steps):
    """Median milliseconds of fn() over `steps` calls after `warmup` untimed ones, each bracketed by
    a synchronize."""
    runs = []
    for _ in range(warmup + steps):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs[warmup:]) * 1000


def bench_train(argv, bench):
    cfg, raw, device, dtype, autocast = build(argv, bench)
    optimizers = train.make_optimizers(raw, cfg, device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    model = parallel.compile_model(raw, cfg, device)
    T = raw.config.block_size
    batches = RandomBatches(raw.config.vocab_size, cfg.batch_size, T, device)
    t0 = time.perf_counter()
    graphed = (parallel.GraphedStep(model, [batches.get(0, 0, 0)], 1 / cfg.grad_accum, dtype)
               if cfg.cuda_graph else None)
    for step in range(bench.warmup):  # compilation and autotuning happen here
        train.train_step(model, raw, optimizers, scaler, batches, step, cfg, autocast=autocast,
                         graphed=graphed)
    synchronize(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(bench.warmup, bench.warmup + bench.steps):
        t = time.perf_counter()  # train_step ends in a sync (loss and grad norm are read back)
        train.train_step(model, raw, optimizers, scaler, batches, step, cfg, autocast=autocast,
                         graphed=graphed)
        synchronize(device)
        times.append(time.perf_counter() - t)
    ms = statistics.median(times) * 1000
    tokens = cfg.batch_size * cfg.grad_accum * T
    peak = train.peak_flops(device)
    result = {"mode": "train", "params": raw.num_params(), "batch_size": cfg.batch_size,
              "block_size": T, "grad_accum": cfg.grad_accum,
              "compile": cfg.compile and device.type == "cuda",
              "compile_scope": cfg.compile_scope, "cuda_graph": cfg.cuda_graph,
              "dtype": str(dtype).removeprefix("torch."), "ms_per_step": ms,
              "ms_min": min(times) * 1000, "ms_max": max(times) * 1000,
              "tokens_per_s": tokens / (ms / 1000),
              "mfu": raw.flops_per_token(T) * tokens / (ms / 1000) / peak if peak else None,
              "peak_mem_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                              if device.type == "cuda" else None),
              # a recorded CUDA graph keeps its activations in a private pool:
              # reserved, not allocated
              "peak_reserved_gb": (torch.cuda.max_memory_reserved(device) / 2**30
                                   if device.type == "cuda" else None),
              "warmup_s": warmup_s, "steps": bench.steps, **environment(device)}
    if bench.profile:
        result["profile"] = profile_steps(model, raw, optimizers, scaler, batches, cfg, autocast,
                                          graphed, device, first=bench.warmup + bench.steps)
    mfu = f"{result['mfu']:.1%}" if result["mfu"] else "n/a"
    print(f"train: {result['params'] / 1e6:.1f}M params, {cfg.batch_size}x{T} tokens/step: "
          f"{ms:.2f} ms/step (median of {bench.steps}), "
          f"{result['tokens_per_s'] / 1e3:.0f}k tokens/s, MFU {mfu}, warm-up {warmup_s:.1f} s")
    return result


def profile_steps(model, raw, optimizers, scaler, batches, cfg, autocast, graphed, device, first,
                  n=5):
    """torch.profiler over n more training steps: prints the kernels (GPU) or operators (CPU) that
    take the time, and returns the top 30 as [{name, ms_per_step, share, calls_per_step}]."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
        for step in range(first, first + n):
            train.train_step(model, raw, optimizers, scaler, batches, step, cfg, autocast=autocast,
                             graphed=graphed)
        synchronize(device)
    key = "cuda_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    print(events.table(sort_by=key, row_limit=30, max_name_column_width=80))
    time_of = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    total = sum(time_of(e) for e in events) or 1
    top = sorted(events, key=time_of, reverse=True)[:30]
    return [{"name": e.key, "ms_per_step": time_of(e) / 1000 / n, "share": time_of(e) / total,
             "calls_per_step": e.count / n} for e in top]


def generate_without_cache(model, idx, n):
    """The reference loop a KV cache replaces: a full forward over the (cropped) text every step."""
    block_size = model.config.block_size
    for _ in range(n):
        logits, _ = model(idx[:, -block_size:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def bench_generate(argv, bench):
    cfg, model, device, dtype, autocast = build(argv, bench)
    ckpt = Path(cfg.out_dir) / "ckpt_best.pt"
    source = "random weights"
    if ckpt.exists():  # the trained model if there is one (speed is the same either way)
        model = checkpoint.model_from_checkpoint(
            checkpoint.load_checkpoint(ckpt), dropout=0.0).to(device)
        source = str(ckpt)
    model.eval()
    n = bench.max_new_tokens
    rows = []
    settings = [("kv_cache", 1), ("kv_cache", bench.batch_n)]
    if device.type == "cuda":  # the decode step compiled before it is recorded
        settings += [("kv_cache_compiled", 1), ("kv_cache_compiled", bench.batch_n)]
    if bench.no_cache:
        settings += [("no_cache", 1), ("no_cache", bench.batch_n)]
    for kind, batch in settings:
        # the precision sample.py would use
        run_dtype = sample.inference_dtype(cfg.dtype, device, batch)
        run_model = sample.cast_for_inference(copy.deepcopy(model), run_dtype)
        prompt = torch.zeros(batch, 1, dtype=torch.long, device=device)
        runs = []
        for r in range(bench.repeats + 1):  # the first run is reported apart: it pays for start-up
            synchronize(device)
            t = time.perf_counter()
            with torch.no_grad():
                if kind.startswith("kv_cache"):
                    run_model.generate(prompt, n, temperature=0,
                                       compile=kind == "kv_cache_compiled")
                else:
                    generate_without_cache(run_model, prompt, n)
            synchronize(device)
            runs.append(time.perf_counter() - t)
            if kind == "no_cache" and runs[-1] * (bench.repeats + 1) > 120:
                break  # slow reference: one timed run is enough
        warm = runs[1:] or runs
        row = {"kind": kind, "batch": batch, "new_tokens": n, "first_s": runs[0],
               "dtype": str(run_dtype).removeprefix("torch."),
               "tokens_per_s": batch * n / statistics.median(warm),
               "first_tokens_per_s": batch * n / runs[0]}
        rows.append(row)
        print(f"generate {kind:>17} batch {batch:>3}: {row['tokens_per_s']:9.0f} tokens/s "
              f"(first run {row['first_tokens_per_s']:.0f} tokens/s)")
    return {"mode": "generate", "params": model.num_params(), "weights": source, "rows": rows,
            **environment(device)}


def bench_time_to_loss(argv, bench):
    """A fresh `python train.py CONFIG --stop_at_loss=TARGET` process, timed from launch to the
    moment its exact evaluation first reports val loss <= TARGET (and, apart, to its exit)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__).with_name("train.py")), *argv,
               f"--stop_at_loss={bench.target}", f"--out_dir={tmp}/run", "--overwrite=true"]
        launched = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - launched
        if proc.returncode != 0:
            raise RuntimeError(f"training failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        log = Path(tmp, "run", "log.jsonl")
        lines = log.read_text().splitlines() if log.exists() else []
        records = [json.loads(line) for line in lines]
        evals = [r for r in records if r["kind"] == "eval"]
        reached = next((e for e in evals if e["loss"] <= bench.target), None)
        startup = next((r for r in records if r["kind"] == "startup"), None)
        if startup is None:
            raise RuntimeError(f"training logged no step (no startup record in its log; "
                               f"max_iters > 0?):\n{proc.stdout[-3000:]}")
        if not evals:
            raise RuntimeError(f"training ended before its first evaluation: nothing to time "
                               f"(--stop_after before the first --eval_interval, or a signal?):\n"
                               f"{proc.stdout[-3000:]}")
        # where the seconds before training go: the interpreter and imports, then train.py's stages
        stages = {"imports": startup["unix_start"] - launched, **startup["stages_s"]}
    device = train.resolve_device(train.parse_args(argv)[0].device)
    result = {"mode": "time_to_loss", "target": bench.target, "command": " ".join(cmd[1:]),
              "seconds_to_target": reached["unix_time"] - launched if reached else None,
              "wall_s": wall, "reached": reached is not None,
              "step": reached["step"] if reached else None,
              "val_loss": reached["loss"] if reached else None,
              "time_in_train_s": reached["time"] if reached else None,
              "best_val_loss": min(e["loss"] for e in evals), "startup_s": stages,
              "log_head": proc.stdout[:2500], "log_tail": proc.stdout[-2000:],
              **environment(device)}
    took = f"{result['seconds_to_target']:.1f} s from launch" if reached else "not reached"
    print(f"time to val loss {bench.target}: {took} (step {result['step']}, exact val loss "
          f"{result['val_loss']}); process wall time {wall:.1f} s; "
          f"best {result['best_val_loss']:.4f}\n"
          f"before training: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    return result


def bench_matmul(argv, bench):
    """Every matrix product of one training step of the model (per linear layer: the forward one and
    the two of the backward pass), each timed alone in the compute dtype and in FP8
    (torch._scaled_mm: E4M3 weights and activations, E5M2 gradients, tensorwise scales), with the
    operands already cast and laid out: what FP8 matrix products could save,
    the casts not counted."""
    from model import E4M3, E5M2, to_fp8
    cfg, raw, device, dtype, _ = build(argv, bench)
    m = raw.config
    M, C, H = cfg.batch_size * m.block_size, m.n_embd, m.mlp_ratio * m.n_embd
    layers = {"c_attn": (C, 3 * C, m.n_layer), "attn.c_proj": (C, C, m.n_layer),
              "mlp.c_fc": (C, H, m.n_layer), "mlp.c_proj": (H, C, m.n_layer)}
    if not m.n_classes:
        layers["lm_head"] = (C, m.vocab_size, 1)

    def timed(fn):
        return median_ms(fn, device, bench.warmup, bench.steps)

    def products(x, w, grad):
        """ms of y = x w^T, dx = grad w and dw = grad^T x: in x's dtype, then in FP8."""
        ms = timed(lambda: x @ w.t()) + timed(lambda: grad @ w) + timed(lambda: grad.t() @ x)
        (x8, sx), (w8, sw), (g8, sg) = to_fp8(x, E4M3), to_fp8(w, E4M3), to_fp8(grad, E5M2)
        # column-major operands
        wt, gt, xt = w8.t().contiguous().t(), g8.t().contiguous(), x8.t().contiguous().t()
        out = torch.bfloat16
        return ms, (timed(lambda: torch._scaled_mm(x8, w8.t(), sx, sw, out_dtype=out))
                    + timed(lambda: torch._scaled_mm(g8, wt, sg, sw, out_dtype=out))
                    + timed(lambda: torch._scaled_mm(gt, xt, sg, sx, out_dtype=out)))

    rows, total = [], {"ms": 0.0, "fp8_ms": 0.0}
    g = torch.Generator(device=device).manual_seed(0)
    for name, (K, N, count) in layers.items():
        ms, fp8_ms = products(*(torch.randn(*shape, device=device, generator=g).to(dtype)
                                for shape in ((M, K), (N, K), (M, N))))
        flop = 3 * 2 * M * K * N
        rows.append({"layer": name, "M": M, "K": K, "N": N, "per_step": count, "ms": ms,
                     "fp8_ms": fp8_ms, "tflops": flop / ms / 1e9,
                     "fp8_tflops": flop / fp8_ms / 1e9})
        total["ms"] += count * ms
        total["fp8_ms"] += count * fp8_ms
        print(f"{name:>12} ({M}x{K} @ {K}x{N}) x{count}: {ms:7.3f} ms "
              f"({rows[-1]['tflops']:6.1f} TFLOP/s) -> fp8 {fp8_ms:7.3f} ms "
              f"({rows[-1]['fp8_tflops']:6.1f} TFLOP/s)")
    dt = str(dtype).removeprefix("torch.")
    print(f"all matrix products of a step: {total['ms']:.2f} ms in {dt}, "
          f"{total['fp8_ms']:.2f} ms in fp8 (difference {total['fp8_ms'] - total['ms']:+.2f} ms, "
          f"casts not counted)")
    return {"mode": "matmul", "dtype": dt, "rows": rows, "per_step_ms": total["ms"],
            "per_step_fp8_ms": total["fp8_ms"], "repeats": bench.steps, **environment(device)}


def bench_attention(argv, bench):
    """Causal self-attention alone, forward + backward, in the compute dtype: model.manual_attention
    (scores, mask, softmax, weighted sum, each a kernel and a stored (B, nh, T, T) tensor) against
    F.scaled_dot_product_attention (attention="sdpa"; FlashAttention on a GPU), at each
    sequence length T with batch_size x block_size tokens (batch (batch_size x block_size) // T,
    at least 1: exact when T divides that count, as the defaults do), so every length does the
    same projections' work and only attention's T^2 part grows. Memory is the peak allocated above
    the inputs; each row records its batch."""
    from model import manual_attention
    cfg, raw, device, dtype, _ = build(argv, bench)
    m = raw.config
    nh, hs, tokens = m.n_head, m.n_embd // m.n_head, cfg.batch_size * m.block_size
    kernels = {"manual": lambda q, k, v: manual_attention(q, k, v, causal=True)[0],
               "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)}
    rows = []
    for T in (int(t) for t in bench.lengths.split(",")):
        B = max(1, tokens // T)
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v, grad = (torch.randn(B, nh, T, hs, device=device, generator=g).to(dtype)
                         for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        row = {"T": T, "batch": B, "n_head": nh, "head_dim": hs}
        for name, attend in kernels.items():
            def step():
                attend(q, k, v).backward(grad)
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    base = torch.cuda.memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                row[f"{name}_ms"] = median_ms(step, device, bench.warmup, bench.steps)
                if device.type == "cuda":
                    row[f"{name}_peak_mb"] = (
                        (torch.cuda.max_memory_allocated(device) - base) / 2**20)
            except torch.OutOfMemoryError:
                row[f"{name}_ms"] = None  # out of memory at this length
            q.grad = k.grad = v.grad = None
        if row.get("manual_ms") and row.get("sdpa_ms"):
            row["speedup"] = row["manual_ms"] / row["sdpa_ms"]
        rows.append(row)
        mem = (f", peak {row.get('manual_peak_mb', 0):.0f} vs {row.get('sdpa_peak_mb', 0):.0f} MB"
               if device.type == "cuda" else "")
        fmt = lambda ms: "out of memory" if ms is None else f"{ms:.3f} ms"
        print(f"attention T={T:>5} batch {B:>4}: manual {fmt(row['manual_ms'])}, "
              f"sdpa {fmt(row['sdpa_ms'])}"
              + (f" ({row['speedup']:.2f}x)" if "speedup" in row else "") + mem)
    return {"mode": "attention", "dtype": str(dtype).removeprefix("torch."), "tokens": tokens,
            "rows": rows, "repeats": bench.steps, **environment(device)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help(__doc__, BenchConfig, note="bench keys (defaults shown), plus any config file "
                                              "and train.py key (python train.py --help):")
        return 0
    try:
        bench, rest = split_args(argv)
        result = {"train": bench_train, "generate": bench_generate,
                  "time_to_loss": bench_time_to_loss, "matmul": bench_matmul,
                  "attention": bench_attention}[bench.mode](rest, bench)
    except (train.ConfigError, DataError, checkpoint.CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["argv"] = argv
    path = Path(bench.json or f"bench_{bench.mode}.json")
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
