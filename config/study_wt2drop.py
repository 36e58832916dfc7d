# Stochastic depth on WikiText-2: does skipping whole residual branches per sequence (layer_drop;
# Huang et al. 2016, the linear rule; LayerDrop, Fan et al. 2020, is the per-batch relative) lower
# val perplexity of the 8,000-step recipe, which overfits (two of its three seeds reach their
# best val loss before the last step)? Selected on val (best val loss, eval_stride=64).
# python ablate.py wt2drop --seeds 3 --jobs 3
# (three 8,000-step runs at a time on one large GPU; split a run over time limits with --stop_after
# and run the same command again: finished runs are skipped and cut-off ones resume)
import runpy
from pathlib import Path

description = "WikiText-2: stochastic depth (layer_drop) on top of the 8,000-step recipe"
_avg = runpy.run_path(str(Path(__file__).with_name("study_wt2avg.py")))  # the same base and sizes
base, metric, higher_is_better, baseline = _avg["base"], _avg["metric"], False, "baseline"
overrides, gpu, cpu, quick = _avg["overrides"], _avg["gpu"], _avg["cpu"], _avg["quick"]

variants = {
    "baseline": {},                          # the 8,000-step recipe
    "layer_drop=0.1": dict(layer_drop=0.1),  # the last of 6 layers skips a branch 10% of the time
    "layer_drop=0.2": dict(layer_drop=0.2),
}
