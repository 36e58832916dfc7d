# Weight decay for SST-2 from scratch: on WikiText-2 a decay of 2.0 instead of 0.1 was the
# regulariser that let a small-corpus Transformer train on without overfitting
# (results/recipes/wt2long/). Does the same hold for a small encoder on 67k phrases? Selected on
# the validation split (best val accuracy, mean over seeds).
# python ablate.py sst2wd --seeds 3 --jobs 12 --test
description = "SST-2 from scratch: AdamW's weight decay 0.1 (as shipped), 0.5, 1.0, 2.0"
base = "config/sst2.py"
metric = "best_val"           # highest exact val accuracy of the run (the checkpoint the test split scores)
higher_is_better = True
baseline = "baseline"

overrides = dict(compile=False, cpu_config="")
gpu = {}
cpu = dict(n_layer=2, n_head=4, n_embd=64, batch_size=32, max_iters=300, warmup_iters=30, eval_interval=100)
quick = dict(n_layer=1, n_head=2, n_embd=32, batch_size=8, max_iters=20, warmup_iters=2, eval_interval=10)

variants = {
    "baseline": {},  # the shipped decay, 0.1
    "wd=0.5": dict(weight_decay=0.5),
    "wd=1.0": dict(weight_decay=1.0),
    "wd=2.0": dict(weight_decay=2.0),
}
