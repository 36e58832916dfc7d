# WikiText-2 on a schedule twice the 8,000-step recipe of the time, which overfits there (best val
# at step 6,000 of 16,000, then 98.7 at the end against 81.8 for its own 8,000 steps:
# results/recipes/wt2-schedule/). Which stronger regulariser lets a longer run go further?
# Selected on val (best val loss). The winner, weight decay 2.0, is now config/wikitext2.py
# (results/recipes/wt2long/); the baseline here keeps the old decay 0.1 (study_wt2avg.py).
# python ablate.py wt2long --seeds 1 --jobs 7
# (split a run over time limits with --stop_after, or stop it with SIGTERM, and run the same
# command again: finished runs are skipped and cut-off ones resume)
import runpy
from pathlib import Path

description = ("WikiText-2 at 16,000 steps: weight decay, heavier dropout, stochastic depth; "
               "decay 2.0 on 24,000 steps")
_avg = runpy.run_path(str(Path(__file__).with_name("study_wt2avg.py")))  # the same base and sizes
base, metric, higher_is_better, baseline = _avg["base"], _avg["metric"], False, "baseline"
overrides, cpu, quick = _avg["overrides"], _avg["cpu"], _avg["quick"]
gpu = dict(max_iters=16000)

variants = {
    "baseline": {},                                    # the 8,000-step recipe's decay 0.1
    "wd=0.3": dict(weight_decay=0.3),                  # AdamW's decay (0.1 there) on the matrices
    "wd=1.0": dict(weight_decay=1.0),
    "wd=2.0": dict(weight_decay=2.0),
    "wd=4.0": dict(weight_decay=4.0),
    "drop+0.1": dict(embd_dropout=0.7, resid_dropout=0.4, attn_dropout=0.2, out_dropout=0.5),
    "txl": dict(embd_dropout=0.7, out_dropout=0.5, word_dropout=0.3, resid_dropout=0.2,
                attn_dropout=0.2),                     # config/study_wt2reg.py's Transformer-XL rates
    "layer_drop=0.1": dict(layer_drop=0.1),            # stochastic depth (Huang et al. 2016)
    # the two that kept val falling to the end (results/recipes/wt2long/), together
    "wd=1.0+txl": dict(weight_decay=1.0, embd_dropout=0.7, out_dropout=0.5, word_dropout=0.3,
                       resid_dropout=0.2, attn_dropout=0.2),
    # decay 2.0's val still fell at step 16,000: the same recipe on a schedule half as long again
    # (a value per size, so that the cpu and --quick checks stay short)
    "wd=2.0+24k": dict(weight_decay=2.0, max_iters=dict(gpu=24000, cpu=300, quick=15)),
}
