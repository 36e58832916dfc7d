# Context length on WikiText-2: the LSTM baselines carry their state through the whole text, and
# dynamic evaluation (which adapts to text further back than the window) takes the 8,000-step
# model from 78.35 to 58.35 test perplexity, so: does a longer trained window help the static
# model? The same tokens per step (32 x 256) and steps in every variant; each scored with a stride
# of a quarter window, so every token sees at least three quarters of a window. Selected on val
# (best val loss).
# python ablate.py wt2ctx --seeds 3 --jobs 3
# (split a run over time limits with --stop_after and run the same command again: finished runs are
# skipped and cut-off ones resume)
import runpy
from pathlib import Path

description = "WikiText-2: trained context length at equal tokens per step"
_avg = runpy.run_path(str(Path(__file__).with_name("study_wt2avg.py")))  # the same base and sizes
base, metric, higher_is_better, baseline = _avg["base"], _avg["metric"], False, "ctx=256"
overrides, gpu, cpu, quick = _avg["overrides"], _avg["gpu"], _avg["cpu"], _avg["quick"]

variants = {
    "ctx=256": {},                                                      # the 8,000-step recipe
    "ctx=512": dict(block_size=512, batch_size=16, eval_stride=128, eval_batch_size=32),
    "ctx=1024": dict(block_size=1024, batch_size=8, eval_stride=256, eval_batch_size=16),
}
