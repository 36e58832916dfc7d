# Tiny Shakespeare, characters, sized for a laptop CPU: about a minute and a half on 2 cores.
# python train.py config/shakespeare_cpu.py
out_dir = "out-shakespeare-char-cpu"
dataset = "shakespeare_char"
device = "cpu"

n_layer = 4
n_head = 4
n_embd = 128
block_size = 64
dropout = 0.0
pos_encoding = "rope"

batch_size = 12
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 2000
warmup_iters = 100
beta2 = 0.99

eval_interval = 1000
eval_batch_size = 512
log_interval = 100
