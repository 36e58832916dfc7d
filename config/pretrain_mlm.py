# Masked-language-model pretraining (BERT's objective, Devlin et al. 2019) of a bidirectional encoder on
# the training text of WikiText-2, SST-2 and TREC (never their val or test text), in one shared word
# vocabulary, so that config/sst2_pretrained.py and config/trec_pretrained.py can start from it.
# python train.py config/pretrain_mlm.py
out_dir = "out-pretrain"
dataset = "mlm_corpus"

causal = False         # an encoder; 15% of the tokens are corrupted and predicted (data.mlm_mask)
n_layer = 4
n_head = 4
n_embd = 256
block_size = 128       # windows of the corpus; the classifiers use shorter texts (RoPE: any length)
dropout = 0.1

batch_size = 128
learning_rate = 1e-3
min_lr = 1e-4
max_iters = 5000
warmup_iters = 500
weight_decay = 0.1

compile_scope = "block"  # the head stays eager, so it can score the masked tokens alone (model.py)

eval_interval = 1000
eval_batch_size = 256
log_interval = 100
