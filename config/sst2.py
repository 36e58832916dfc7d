# SST-2 sentiment (GLUE), a bidirectional Transformer encoder trained from scratch.
# Evaluate on GLUE dev (our 'test' split) with:
# python train.py config/sst2.py
# python train.py config/sst2.py --eval_only=true --eval_split=test
out_dir = "out-sst2"
dataset = "sst2"

causal = False         # an encoder: every word sees the whole sentence
pooling = "mean"       # mean over real tokens (the padding mask excludes the rest)
n_layer = 4
n_head = 4
n_embd = 256
block_size = 64        # longest example kept, in words (SST-2 sentences are shorter than ~56)
dropout = 0.1

batch_size = 64
learning_rate = 5e-4
min_lr = 5e-5
max_iters = 3000
warmup_iters = 100
weight_decay = 0.1

# no compilation: the steps replay CUDA graphs, one per padded batch length, recorded in seconds.
# The whole process took 26.5 s this way, 56.2 s eager without graphs (one H200, 2026-12-01,
# results/speed-2026-12-01c/) and 73.0 s compiled (an earlier run, results/speed-2026-12-01b/)
compile = False
cuda_graph = True

eval_interval = 250
eval_batch_size = 512
log_interval = 50
