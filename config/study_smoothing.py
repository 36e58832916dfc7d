# Label smoothing (Szegedy et al. 2016) on the character language model. The val loss is plain
# cross-entropy whatever the training loss (train.py's evaluate), so the variants compare fairly; a
# smoothed model is expected to pay in loss what it may gain in calibration (Mueller et al. 2019).
# python ablate.py smoothing --seeds 5 --jobs 8
# The classifier side reuses the cls study with more seeds:
# python ablate.py cls --variants baseline,label_smoothing=0.1 --seeds 10 --out results/cls-smoothing
import runpy
from pathlib import Path

description = "Tiny Shakespeare: label smoothing of the training loss (val loss unsmoothed)"
base = "config/shakespeare.py"
metric = "loss"
higher_is_better = False
baseline = "ls=0"

# the lm study's sizes and overrides, so that its numbers are this study's reference; plus AdamW
_lm = runpy.run_path(str(Path(__file__).with_name("study_lm.py")))
overrides = dict(_lm["overrides"], optimizer="adamw")
gpu, cpu, quick = _lm["gpu"], _lm["cpu"], _lm["quick"]

variants = {"ls=0": {}, "ls=0.05": dict(label_smoothing=0.05), "ls=0.1": dict(label_smoothing=0.1),
            "ls=0.2": dict(label_smoothing=0.2)}
