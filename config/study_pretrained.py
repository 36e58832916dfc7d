# Fine-tuning from the masked-LM encoder (config/pretrain_mlm.py): which learning rate, selected on
# the validation split (best val accuracy, mean over seeds)? Run one study per data set:
# python ablate.py pretrained --seeds 5 --test                      # SST-2
# python ablate.py pretrained --seeds 5 --test --set dataset=trec_shared --set block_size=48 --out results/trec-pretrained
description = "classifier fine-tuned from the masked-LM encoder: learning rate"
base = "config/sst2_pretrained.py"
metric = "best_val"           # highest exact val accuracy of the run (the checkpoint the test split scores)
higher_is_better = True
baseline = "lr=2e-4"

overrides = dict(compile=False, cpu_config="")
gpu = {}
cpu = dict(max_iters=300, warmup_iters=30, eval_interval=100)
quick = dict(max_iters=20, warmup_iters=2, eval_interval=10, batch_size=8)

variants = {
    "lr=2e-4": {},
    "lr=1e-4": dict(learning_rate=1e-4, min_lr=1e-5),
    "lr=3e-4": dict(learning_rate=3e-4, min_lr=3e-5),
    "lr=5e-4": dict(learning_rate=5e-4, min_lr=5e-5),
    # layer-wise learning rates (layer_lr_decay): the head at lr, each layer below at 0.8x the one
    # above, the embeddings at 0.8^7 = 0.21x for 6 layers (Howard & Ruder 2018; Clark et al. 2020)
    "llrd=0.8": dict(layer_lr_decay=0.8),
    "lr=4e-4+llrd=0.8": dict(learning_rate=4e-4, min_lr=4e-5, layer_lr_decay=0.8),
}
