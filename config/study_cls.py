# Ablation study: what does a small bidirectional encoder need to classify SST-2 sentiment?
# python ablate.py cls --seeds 3 --jobs 8
# Every key below is a train.py or model key; see `python train.py --help`.
description = "SST-2 sentiment, bidirectional encoder: position encoding, pooling, label smoothing"
base = "config/sst2.py"
metric = "accuracy"           # exact val accuracy at the end of training
higher_is_better = True
baseline = "baseline"

overrides = dict(compile=False, cpu_config="", pos_encoding="rope", eval_interval=500, log_interval=50)

# Sizes per device kind; config/sst2.py's model (4 layers, 256 wide) on a shorter schedule
gpu = dict(max_iters=1500, warmup_iters=100)
cpu = dict(n_layer=2, n_head=4, n_embd=64, batch_size=32, max_iters=300, warmup_iters=30,
           eval_interval=300, log_interval=25)
# --quick: the whole study in tiny, to test the machinery (the numbers mean nothing)
quick = dict(n_layer=2, n_head=2, n_embd=32, batch_size=8, max_iters=20, warmup_iters=2,
             eval_interval=20, log_interval=5)

variants = {
    "baseline": {},  # RoPE, mean pooling over real tokens, no label smoothing, dropout 0.1
    # Without positions a bidirectional encoder is a bag of words: "not good, bad" and "not bad,
    # good" look the same to it. A causal LM can recover order from its mask (Haviv et al. 2022);
    # an encoder cannot. On SST-2 that matters less than one would think: sentiment is carried mostly
    # by the words themselves (results/cls/summary.md compares the two).
    "pos=none": dict(pos_encoding="none"),
    "pos=learned": dict(pos_encoding="learned"),
    # the first token is <cls> (prepare.py puts it at the start of every example), as in BERT
    "pooling=first": dict(pooling="first"),
    "label_smoothing=0.1": dict(label_smoothing=0.1),
}
