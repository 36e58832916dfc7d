# Ablation study: which parts of a small character-level language model matter?
# python ablate.py lm --seeds 3 --jobs 8
# Every key below is a train.py or model key; see `python train.py --help`. A variant is a handful
# of keys applied on top of the base config, the study overrides and the device size.
description = ("Tiny Shakespeare (characters): positions, heads, residuals, LayerNorm, warmup, clipping, "
               "dropout, attention kernel")
base = "config/shakespeare.py"
metric = "loss"               # exact val loss (nats per character) at the end of training
higher_is_better = False
baseline = "baseline"

# The study budget: many short runs, so no compile (its warm-up would dominate a 1500-step run) and
# no dropout (at this length the model does not overfit yet; dropout gets its own variant).
overrides = dict(compile=False, dropout=0.0, cpu_config="", eval_interval=500, log_interval=50)

# Sizes per device kind. gpu: 42 runs share one H100 through --jobs; 4 heads of 64 dimensions.
# Scale max_iters to spend more of a 15-minute budget (run time is about linear in it).
gpu = dict(n_layer=4, n_head=4, n_embd=256, block_size=128, batch_size=32, max_iters=1500, warmup_iters=100)
cpu = dict(n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=16, max_iters=250, warmup_iters=25,
           eval_interval=250, log_interval=25)
# --quick: the whole study in tiny, to test the machinery (the numbers mean nothing)
quick = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=20, warmup_iters=2,
             eval_interval=20, log_interval=5, eval_batch_size=512)

variants = {
    "baseline": {},  # pre-LN, RoPE, 4 heads, residuals, warmup, clipping at 1.0, no dropout, fused attention
    # position encodings (RoPE is the baseline). A causal LM can still infer positions without any,
    # from how many tokens it attends to (Haviv et al. 2022), so "none" need not be a disaster here.
    "pos=none": dict(pos_encoding="none"),
    "pos=sinusoidal": dict(pos_encoding="sinusoidal"),
    "pos=learned": dict(pos_encoding="learned"),
    "pos=alibi": dict(pos_encoding="alibi"),
    # one head vs several at equal parameter count: the Q, K, V and output projections are
    # n_embd x n_embd whatever n_head is, only the split into heads changes
    "heads=1": dict(n_head=1),
    "residual=off": dict(residual=False),
    "norm=none": dict(norm="none"),
    # post-LN (Vaswani et al. 2017) is known to need warmup (Xiong et al. 2020); pre-LN less so
    "norm=post": dict(norm="post"),
    "warmup=0": dict(warmup_iters=0),
    "norm=post+warmup=0": dict(norm="post", warmup_iters=0),
    "grad_clip=0": dict(grad_clip=0.0),
    "dropout=0.2": dict(dropout=0.2),
    # the same function written out by hand: loss should match the baseline, speed should not
    "attention=manual": dict(attention="manual"),
}
