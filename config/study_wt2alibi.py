# ALiBi on WikiText-2, read at longer windows than it was trained on: ALiBi's linear distance
# penalty lets a model trained on short windows evaluate on longer ones (Press et al. 2022, "Train
# Short, Test Long"), and dynamic evaluation's gain on this data set (README) says that text further
# back than 256 tokens still predicts. Trained at 256 tokens in every variant; the eval_context
# variants train as 'alibi' does (the same seed, the same steps: each its own run) and differ in
# the evaluation window, a quarter of which is the stride; each keeps its best checkpoint by its own
# window's val loss. Selected on val (best val loss). (--quick takes minutes here: its tiny models
# are still scored in 512- and 1,024-token windows.)
# python ablate.py wt2alibi --seeds 3 --jobs 4
import runpy
from pathlib import Path

description = "WikiText-2: RoPE against ALiBi, and ALiBi evaluated on windows past its trained 256"
_avg = runpy.run_path(str(Path(__file__).with_name("study_wt2avg.py")))  # the same base and sizes
base, metric, higher_is_better, baseline = _avg["base"], _avg["metric"], False, "rope"
overrides, gpu, cpu, quick = _avg["overrides"], _avg["gpu"], _avg["cpu"], _avg["quick"]

variants = {
    "rope": {},                                             # the 8,000-step recipe
    "alibi": dict(pos_encoding="alibi"),                    # scored like the recipe: 256, stride 64
    "alibi+eval512": dict(pos_encoding="alibi", eval_context=512, eval_stride=128, eval_batch_size=32),
    "alibi+eval1024": dict(pos_encoding="alibi", eval_context=1024, eval_stride=256, eval_batch_size=16),
}
