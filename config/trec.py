# TREC-6 question classification (5.5k questions), a bidirectional encoder from scratch.
# python train.py config/trec.py
# python train.py config/trec.py --eval_only=true --eval_split=test
out_dir = "out-trec"
dataset = "trec"

causal = False
pooling = "mean"
n_layer = 2
n_head = 4
n_embd = 128
block_size = 48
dropout = 0.2

batch_size = 32
learning_rate = 5e-4
min_lr = 5e-5
max_iters = 1500
warmup_iters = 50

eval_interval = 100
eval_batch_size = 512
log_interval = 50
