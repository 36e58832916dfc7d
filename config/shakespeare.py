# Tiny Shakespeare, characters: the main job, sized for one GPU (under two minutes on an H100).
# python train.py config/shakespeare.py
out_dir = "out-shakespeare-char"
dataset = "shakespeare_char"
cpu_config = "config/shakespeare_cpu.py"

# a 10.7M-parameter model with a 256-character context, as nanoGPT's baseline
n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
dropout = 0.35         # 1M characters overfit quickly: dropout is what keeps val loss going down
pos_encoding = "rope"

batch_size = 64
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 3000       # with Muon and dropout 0.35 the val loss is still flat here (see docs/PERFORMANCE.md)
warmup_iters = 100
beta2 = 0.99           # a small data set gives few tokens per step: a shorter second-moment memory helps
optimizer = "muon"     # Muon for the blocks' matrices (AdamW for the rest)

compile_mode = "reduce-overhead"  # CUDA graphs: fewer kernel launches per step (small model, CPU-bound step)

eval_interval = 250
eval_batch_size = 512
log_interval = 50
