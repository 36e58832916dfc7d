# Post-LN's need for warmup (Xiong et al. 2020), at the depth given with --set n_layer: the lm study
# (4 layers) found post-LN with and without warmup alike (1.5831 vs 1.5863, results/lm/summary.md).
# Xiong et al. predict the gap grows with depth, since post-LN's gradient near the output does not
# shrink with depth, so run the same four variants at several depths:
# for L in 4 8 16 24; do python ablate.py postln --seeds 5 --set n_layer=$L --out results/postln-L$L; done
# The study is AdamW throughout (the setting of Xiong et al.; config/shakespeare.py now uses Muon for
# the blocks' matrices), the lm study's size otherwise: 1,500 steps of 32 x 128 characters, no dropout.
# The answer is the baseline-relative Δ of post+warmup=0 (same norm, no warmup), one table per depth;
# a diverged run is a failed run in summary.md, which is itself the answer at that depth.
import runpy
from pathlib import Path

description = "Tiny Shakespeare: post-LN vs pre-LN, with and without warmup (depth via --set n_layer)"
base = "config/shakespeare.py"
metric = "loss"               # exact val loss (nats per character) at the end of training
higher_is_better = False
baseline = "post"

# the lm study's sizes and overrides, so that its numbers are this study's reference; plus AdamW
_lm = runpy.run_path(str(Path(__file__).with_name("study_lm.py")))
overrides = dict(_lm["overrides"], optimizer="adamw")
gpu, cpu, quick = _lm["gpu"], _lm["cpu"], _lm["quick"]

variants = {
    "post": dict(norm="post"),                               # Vaswani et al. 2017, 100 warmup steps
    "post+warmup=0": dict(norm="post", warmup_iters=0),      # Xiong et al.: should suffer, more so when deep
    "pre": dict(norm="pre"),                                 # the project's default
    "pre+warmup=0": dict(norm="pre", warmup_iters=0),        # Xiong et al.: should not need it
}
