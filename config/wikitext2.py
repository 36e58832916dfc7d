# WikiText-2, word level (vocabulary 33,278): the standard small language-modelling benchmark.
# Word-level perplexity on val/test compares with published LSTM numbers (Merity et al. 2016/2017).
# python train.py config/wikitext2.py
# python train.py config/wikitext2.py --eval_only=true --eval_split=test
out_dir = "out-wikitext2"
dataset = "wikitext2"

n_layer = 6
n_head = 8
n_embd = 512
block_size = 256
dropout = 0.3          # 2M training tokens: heavy regularisation, as in AWD-LSTM

batch_size = 32
learning_rate = 6e-4
min_lr = 6e-5
max_iters = 6000
warmup_iters = 200
weight_decay = 0.1

eval_interval = 500
eval_batch_size = 64
log_interval = 50
