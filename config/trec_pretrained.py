# TREC-6 fine-tuned from the masked-LM encoder of config/pretrain_mlm.py (run that first). The shape
# (layers, width, heads, positions) comes from the checkpoint; the data set is TREC-6 in the
# pretraining corpus's vocabulary.
# python train.py config/pretrain_mlm.py && python train.py config/trec_pretrained.py
# python train.py config/trec_pretrained.py --eval_only=true --eval_split=test
out_dir = "out-trec-pretrained"
dataset = "trec_shared"
init_from = "out-pretrain/ckpt_best.pt"

pooling = "mean"
block_size = 48
dropout = 0.1

batch_size = 64
learning_rate = 4e-4   # at the head; each layer below at 0.8x the one above (Howard & Ruder 2018;
min_lr = 4e-5          # Clark et al. 2020): val 0.9186 against 0.9120 for a flat 2e-4, 5 seeds
layer_lr_decay = 0.8   # each, p = 0.057 (results/benchmarks/trec-pretrained-6k/)
max_iters = 1500
warmup_iters = 100
weight_decay = 0.1

compile = False        # the steps replay CUDA graphs instead (see config/sst2.py)
cuda_graph = True

eval_interval = 100
eval_batch_size = 512
log_interval = 50
