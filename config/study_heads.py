# One head vs several at the same parameter count: the lm study had heads=1 worse by 0.0162 with
# p = 0.068 (3 seeds, results/lm/summary.md). Ten seeds and the whole range of head counts:
# python ablate.py heads --seeds 10 --jobs 8
# Q, K, V and the output projection are n_embd x n_embd whatever n_head is, so every variant has the
# same 3.18M parameters; only the split into heads (head dim 256, 128, 64, 32, 16) changes.
# Michel et al. 2019 found most heads can be pruned after training; whether several are needed to
# train well is the question here. AdamW, the lm study's recipe as it was run (2026-11-27).
import runpy
from pathlib import Path

description = "Tiny Shakespeare: number of attention heads at a fixed width (256)"
base = "config/shakespeare.py"
metric = "loss"
higher_is_better = False
baseline = "heads=4"

# the lm study's sizes and overrides, so that its numbers are this study's reference; plus AdamW
_lm = runpy.run_path(str(Path(__file__).with_name("study_lm.py")))
overrides = dict(_lm["overrides"], optimizer="adamw")
gpu, cpu, quick = _lm["gpu"], _lm["cpu"], _lm["quick"]

variants = {f"heads={h}": dict(n_head=h) for h in (4, 1, 2, 8, 16)}  # heads=4 first: the baseline
