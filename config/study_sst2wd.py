# Weight decay for SST-2 from scratch: on WikiText-2 a decay of 2.0 instead of 0.1 was the
# regulariser that let a small-corpus Transformer train on without overfitting
# (results/recipes/wt2long/). Does the same hold for a small encoder on 67k phrases? Selected on
# the validation split (best val accuracy, mean over seeds).
# python ablate.py sst2wd --seeds 3 --jobs 12 --test
import runpy
from pathlib import Path

description = "SST-2 from scratch: AdamW's weight decay 0.1 (as shipped), 0.5, 1.0, 2.0"
_reg = runpy.run_path(str(Path(__file__).with_name("study_sst2reg.py")))  # the same base and sizes
base, metric, higher_is_better, baseline = _reg["base"], _reg["metric"], True, "baseline"
gpu, cpu, quick = _reg["gpu"], _reg["cpu"], _reg["quick"]
overrides = dict(_reg["overrides"], cuda_graph=True)  # as config/sst2.py ships it

variants = {
    "baseline": {},  # the shipped decay, 0.1
    "wd=0.5": dict(weight_decay=0.5),
    "wd=1.0": dict(weight_decay=1.0),
    "wd=2.0": dict(weight_decay=2.0),
}
