# Regularisation for a small corpus: which dropouts let a Transformer train long on WikiText-2's
# 2M tokens without overfitting? Selected on the validation split (best val loss, full-context
# evaluation with eval_stride=64); the winner became config/wikitext2.py.
# python ablate.py wt2reg --seeds 1 --jobs 5
description = "WikiText-2: dropout sites (AWD-LSTM / Transformer-XL recipes) and model shape"
base = "config/wikitext2.py"
metric = "best_val"           # lowest exact val loss of the run (the checkpoint the test split scores)
higher_is_better = False
baseline = "baseline"

# the recipe of the time: config/wikitext2.py before weight averaging, 16,000 steps and decay 2.0
overrides = dict(cpu_config="", weight_decay=0.1, ema_decay=0.0)
gpu = dict(max_iters=12000)  # the sweep ran 12,000-step schedules (cut off at ~6,300 steps: see docs)
cpu = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8, max_iters=200, warmup_iters=20,
           eval_interval=100, eval_stride=32)
quick = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, max_iters=10, warmup_iters=2,
             eval_interval=10, eval_stride=16, compile=False, cuda_graph=False)

# AWD-LSTM (Merity et al. 2017): input 0.65, output 0.4, word types 0.1; Transformer-XL on WikiText-2
# (a public replication): input 0.7, output 0.5, word types 0.3, residual 0.2, attention 0.2
_awd = dict(embd_dropout=0.6, out_dropout=0.4, word_dropout=0.1, resid_dropout=0.3, attn_dropout=0.1)
_txl = dict(embd_dropout=0.7, out_dropout=0.5, word_dropout=0.3, resid_dropout=0.2, attn_dropout=0.2)
variants = {
    "baseline": dict(embd_dropout=-1.0, out_dropout=0.0, word_dropout=0.0, resid_dropout=-1.0,
                     attn_dropout=-1.0, dropout=0.3),  # one dropout of 0.3 everywhere
    "awd": _awd,
    "txl": _txl,
    "txl-12x384": dict(_txl, n_layer=12, n_head=6, n_embd=384),
    "awd-12x384": dict(_awd, n_layer=12, n_head=6, n_embd=384),
}
