# Tiny Shakespeare with GPT-2 BPE tokens (302k train / 36k val tokens), one GPU.
# python train.py config/shakespeare_bpe.py
out_dir = "out-shakespeare-bpe"
dataset = "shakespeare_bpe"

n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
dropout = 0.2          # 300k tokens are few: the model memorises them quickly without it

batch_size = 32
learning_rate = 6e-4
min_lr = 6e-5
max_iters = 2000
warmup_iters = 100

eval_interval = 200
eval_batch_size = 64
log_interval = 20
