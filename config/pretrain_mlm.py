# Masked-language-model pretraining (BERT's objective, Devlin et al. 2019) of a bidirectional encoder on
# the training text of WikiText-2, SST-2 and TREC (never their val or test text), in one shared word
# vocabulary, so that config/sst2_pretrained.py and config/trec_pretrained.py can start from it.
# python train.py config/pretrain_mlm.py
# The published fine-tuning figures (results/benchmarks/summary.md) start from this run's full 6,000
# steps (ckpt_best.pt, step 6,000: held-out masked-LM perplexity 21.12; 138 s on one H100,
# results/benchmarks/pretrain-6k/). Stopped at step 4,000 (perplexity 26.04) the encoder gave
# TREC 0.9312 and SST-2 0.8436 fine-tuned at a flat lr 2e-4 (results/benchmarks/*-pretrained-6x384/).
out_dir = "out-pretrain"
dataset = "mlm_corpus"

causal = False         # an encoder; 15% of the tokens are corrupted and predicted (data.mlm_mask)
n_layer = 6            # 4 x 256 for 5,000 steps gave the fine-tuned classifiers 1-1.4 points less
n_head = 6             # (val: SST-2 0.8248 against 0.8338, TREC 0.8993 against 0.9131; 5 seeds each)
n_embd = 384
block_size = 128       # windows of the corpus; the classifiers use shorter texts (RoPE: any length)
dropout = 0.1

batch_size = 128
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 6000
warmup_iters = 600
weight_decay = 0.1

compile_scope = "block"  # the head stays eager, so it can score the masked tokens alone (model.py)

eval_interval = 2000
eval_batch_size = 256
log_interval = 100
