# Tiny Shakespeare, characters, sized for a laptop CPU: about 70 s on 2 cores to an exact val loss near 1.80.
# python train.py config/shakespeare_cpu.py
# At ~19k tokens/s on two cores a 70 s run sees about 1.2 epochs, so this trades depth for optimizer
# steps and a high learning rate: 2 layers x 128 beat 3 and 4 layers x 128 at the same wall time
# (docs/PERFORMANCE.md has the sweep).
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

eval_interval = 1600   # one exact evaluation, at the end (111,540 characters cost ~3 s on 2 cores)
eval_batch_size = 512
log_interval = 100
