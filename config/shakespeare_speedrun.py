# The fastest way we know to an exact val loss of 1.47 on Tiny Shakespeare (characters), one GPU.
# python bench.py config/shakespeare_speedrun.py --mode=time_to_loss --target=1.47
# The main job's 6x384 model, with AdamW and dropout 0.2, twice the batch, a higher learning rate and a
# short schedule, evaluated often (exactly, on the whole val split) so the target is seen as soon as
# it is reached.
out_dir = "out-shakespeare-speedrun"
dataset = "shakespeare_char"

n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
dropout = 0.2
pos_encoding = "rope"

batch_size = 128
learning_rate = 3e-3
min_lr = 2e-4
max_iters = 800
warmup_iters = 50
beta2 = 0.99

# compile one block (all six run the same code: one compilation) and record forward + backward as
# one CUDA graph: the speed of compiling the whole model, in a fraction of the compile time
compile_scope = "block"
cuda_graph = True

eval_interval = 50
eval_batch_size = 512
log_interval = 50
stop_at_loss = 1.47
save_checkpoints = False  # one checkpoint at the end: writing 130 MB at every evaluation costs seconds here
