# Regularisation for SST-2 from scratch: which dropout sites help a small encoder trained on 56k
# phrases? Selected on the validation split (best val accuracy, mean over seeds).
# python ablate.py sst2reg --seeds 3 --jobs 15
description = "SST-2 from scratch: word / embedding / output dropout, model size, label smoothing"
base = "config/sst2.py"
metric = "best_val"           # highest exact val accuracy of the run (the checkpoint the test split scores)
higher_is_better = True
baseline = "baseline"

# cuda_graph: its runs (results/recipes/sst2reg/) predate config/sst2.py's CUDA graphs, whose
# recording draws dropout masks of its own: off, a rerun is the same run
overrides = dict(compile=False, cpu_config="", cuda_graph=False)
gpu = {}
cpu = dict(n_layer=2, n_head=4, n_embd=64, batch_size=32, max_iters=300, warmup_iters=30, eval_interval=100)
quick = dict(n_layer=1, n_head=2, n_embd=32, batch_size=8, max_iters=20, warmup_iters=2, eval_interval=10)

_reg = dict(word_dropout=0.2, embd_dropout=0.4, out_dropout=0.3)
variants = {
    "baseline": {},  # config/sst2.py: dropout 0.1 everywhere
    "reg": _reg,
    "reg+ls": dict(_reg, label_smoothing=0.1),
    "reg-2x128": dict(_reg, n_layer=2, n_embd=128),
    "reg-strong": dict(word_dropout=0.3, embd_dropout=0.5, out_dropout=0.5, resid_dropout=0.2),
}
