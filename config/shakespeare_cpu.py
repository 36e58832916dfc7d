# Tiny Shakespeare, characters, sized for a laptop CPU: a couple of minutes on 2 cores.
# python train.py config/shakespeare_cpu.py
# A CPU sees little data in a few minutes, so this trades depth for optimizer steps and a high
# learning rate: a shallow, narrow model (measured figures belong in docs/PERFORMANCE.md).
out_dir = "out-shakespeare-char-cpu"
dataset = "shakespeare_char"
device = "cpu"

n_layer = 2
n_head = 4
n_embd = 128
block_size = 64
dropout = 0.0          # one epoch: nothing to overfit yet
pos_encoding = "rope"

batch_size = 12
learning_rate = 3e-3
min_lr = 1e-4
max_iters = 1600
warmup_iters = 50
beta2 = 0.99

eval_interval = 1600   # one exact evaluation, at the end (the whole val split)
eval_batch_size = 512
log_interval = 100
