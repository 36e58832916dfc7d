"""
How many graphs torch.compile builds for classifier batches, and how long that takes, on a CPU
(inductor; its caches off, every policy in a fresh process). The model and batches are those of
config/sst2.py: train.py's own training batches of SST-2.

    python results/cls_padding/compile_cpu.py                   # -> compile_cpu.json beside it
    python results/cls_padding/compile_cpu.py --policy=longest  # one policy, printed

Policies: 'longest' pads each batch to its longest example (cls_batch before PAD_LENGTHS),
'buckets' pads to PAD_LENGTHS, '+mark' also marks the length dynamic (cls_batch now:
'buckets+mark').
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ("longest", "buckets", "longest+mark", "buckets+mark")
COMPILE_STEPS, TIMED_STEPS = 12, 20


def batch(batches, step, policy):
    import torch
    x, mask, y = batches.get(step, 0, 0)  # cls_batch: buckets, length marked dynamic
    if policy.startswith("longest"):
        n = int(mask.sum(1).max())
        x, mask = x[:, :n], mask[:, :n]
    x, mask = x.clone(), mask.clone()  # new tensors: no dynamic mark
    if policy.endswith("+mark"):
        torch._dynamo.maybe_mark_dynamic(x, 1)
        torch._dynamo.maybe_mark_dynamic(mask, 1)
    return x, mask, y


def measure(policy):
    os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    sys.path.insert(0, str(ROOT))
    import torch
    from torch._dynamo.utils import counters

    import train
    from configurator import model_config, parse_args
    torch.manual_seed(0)
    cfg, model_kw = parse_args([str(ROOT / "config/sst2.py"), "--device=cpu",
                                f"--data_dir={ROOT / 'data'}"])
    data = train.load_data(cfg, quiet=True)
    model = train.Transformer(model_config(model_kw, data))
    batches = train.Batches(data, cfg, model.config.block_size, torch.device("cpu"), 1)
    compiled = torch.compile(model)
    t0, widths, ms = time.perf_counter(), [], []
    for step in range(COMPILE_STEPS + TIMED_STEPS):
        x, mask, y = batch(batches, step, policy)
        t1 = time.perf_counter()
        compiled(x, y, attention_mask=mask)[1].backward()
        if step < COMPILE_STEPS:
            widths.append(x.shape[1])
        else:
            ms.append(1000 * (time.perf_counter() - t1))
        if step == COMPILE_STEPS - 1:
            seconds = time.perf_counter() - t0
    return {"policy": policy, "graphs": counters["stats"]["unique_graphs"],
            f"seconds_to_step_{COMPILE_STEPS}": round(seconds, 1), "widths": widths,
            "median_ms_per_step_after": round(statistics.median(ms), 1)}


def epoch_lengths(config, data_dir):
    """Distinct batch lengths over one training epoch, and padded tokens over real-longest ones."""
    sys.path.insert(0, str(ROOT))
    import torch

    import train
    from configurator import parse_args
    from data import pad_length
    cfg, model_kw = parse_args([str(ROOT / config), "--device=cpu", f"--data_dir={data_dir}"])
    data, block_size = train.load_data(cfg, quiet=True), model_kw["block_size"]
    batches = train.Batches(data, cfg, block_size, torch.device("cpu"), 1)
    longest = []
    for step in range(len(batches.labels) // cfg.batch_size):
        _, mask, _ = batches.get(step, 0, 0)
        longest.append(int(mask.sum(1).max()))
    padded = [pad_length(n, block_size) for n in longest]
    return {"config": config, "batch_size": cfg.batch_size, "batches": len(longest),
            "lengths_padding_to_longest": len(set(longest)), "lengths_now": sorted(set(padded)),
            "tokens_now_over_longest": round(sum(padded) / sum(longest), 3)}


def main(argv):
    args = dict(a.lstrip("-").split("=", 1) for a in argv)
    if "policy" in args:
        print(json.dumps(measure(args["policy"])))
        return 0
    import torch
    runs = []
    for policy in POLICIES:
        out = subprocess.run([sys.executable, __file__, f"--policy={policy}"], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())
    result = {"command": "python results/cls_padding/compile_cpu.py",
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count(),
              "runs": runs, "epochs": [epoch_lengths(c, ROOT / "data")
                                       for c in ("config/sst2.py", "config/trec.py")]}
    Path(__file__).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["epochs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
