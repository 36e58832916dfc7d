# Weight averaging on WikiText-2: does evaluating an exponential moving average of the weights
# (ema_decay; optimizers.WeightAverage) lower val perplexity of the 8,000-step recipe?
# AWD-LSTM's averaged SGD (Merity et al. 2017) is one of its strongest ingredients; with AdamW
# and a cosine schedule that already anneals, the gain is the open question. Selected on val
# (best val loss, eval_stride=64).
# python ablate.py wt2avg --seeds 3 --jobs 3
# (three 8,000-step runs at a time on one large GPU; split a run over time limits with --stop_after
# and run the same command again: finished runs are skipped and cut-off ones resume)
description = "WikiText-2: an exponential moving average of the weights, evaluated in their place"
base = "config/wikitext2.py"
metric = "best_val"           # lowest exact val loss of the run (the checkpoint the test split scores)
higher_is_better = False
baseline = "baseline"

# the recipe these studies ran on: config/wikitext2.py before it moved to 16,000 steps and
# weight decay 2.0 (config/study_wt2long.py)
overrides = dict(cpu_config="", max_iters=8000, weight_decay=0.1)
gpu = {}
cpu = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8, max_iters=200, warmup_iters=20,
           eval_interval=100, eval_stride=32)
quick = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, max_iters=10, warmup_iters=2,
             eval_interval=10, eval_stride=16, compile=False, cuda_graph=False)

variants = {
    "baseline": dict(ema_decay=0.0),  # the trained weights
    "ema=0.999": dict(ema_decay=0.999),    # about the last 1,000 steps
    "ema=0.9995": dict(ema_decay=0.9995),  # about the last 2,000 steps (as shipped)
}
