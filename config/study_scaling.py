# How val loss scales with parameters on Tiny Shakespeare: five widths x depths at a fixed budget of
# 3,000 steps of 64 x 256 characters (49M tokens, about 49 epochs) with config/shakespeare.py's recipe
# (Muon, dropout 0.35). results.json holds each variant's parameter count next to its loss, for a
# loss-vs-parameters plot; on a 1M-character corpus the large models are expected to be limited by
# data, not size (Kaplan et al. 2020; Hoffmann et al. 2022), which is the point of measuring it.
# python ablate.py scaling --seeds 3 --jobs 5
# (torch.compile stays on: each size compiles once and runs 3,000 steps)
# --quick: the variants set the model sizes, so shrink them all to test the machinery:
# python ablate.py scaling --quick --set n_layer=1 --set n_embd=32 --set n_head=2
description = "Tiny Shakespeare: val loss against model size (layers x width), fixed tokens"
base = "config/shakespeare.py"
metric = "best_val"           # lowest exact val loss of the run
higher_is_better = False
baseline = "6x384"

overrides = dict(cpu_config="", eval_interval=250, log_interval=50)
gpu = {}
cpu = dict(block_size=64, batch_size=16, max_iters=250, warmup_iters=25, eval_interval=250, log_interval=25,
           compile=False, optimizer="adamw", n_head=4)
quick = dict(block_size=32, batch_size=8, max_iters=20, warmup_iters=2, eval_interval=20, log_interval=5,
             eval_batch_size=512, compile=False, optimizer="adamw", n_head=2)

variants = {
    "6x384": {},                                          # 10.7M: the main job
    "2x128": dict(n_layer=2, n_embd=128, n_head=4),       # ~0.4M
    "4x256": dict(n_layer=4, n_embd=256, n_head=4),       # ~3.2M
    "8x512": dict(n_layer=8, n_embd=512, n_head=8),       # ~25M
    "12x768": dict(n_layer=12, n_embd=768, n_head=12),    # ~85M
}
