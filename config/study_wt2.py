# The open questions of the WikiText-2 recipe, against one shared baseline (the 8,000-step recipe,
# pinned in study_wt2avg.py), so that a round of them costs one baseline run per seed instead of
# one per question: trained context (config/study_wt2ctx.py), stochastic depth
# (config/study_wt2drop.py) and ALiBi read past its trained window (config/study_wt2alibi.py).
# Selected on val (best val loss, each variant scored with its own evaluation window and stride).
# python ablate.py wt2 --seeds 3 --jobs 6
# (split a run over time limits with --stop_after, or stop it with SIGTERM, and run the same
# command again: finished runs are skipped and cut-off ones resume)
import runpy
from pathlib import Path

_here = Path(__file__).parent
description = "WikiText-2: trained context, stochastic depth, ALiBi read at longer windows"
_avg = runpy.run_path(str(_here / "study_wt2avg.py"))  # the same base and sizes
base, metric, higher_is_better, baseline = _avg["base"], _avg["metric"], False, "baseline"
overrides, gpu, cpu, quick = _avg["overrides"], _avg["gpu"], _avg["cpu"], _avg["quick"]

variants = {"baseline": {}}  # the 8,000-step recipe
for _study, _shipped in (("wt2ctx", "ctx=256"), ("wt2drop", "baseline"), ("wt2alibi", "rope")):
    _theirs = runpy.run_path(str(_here / f"study_{_study}.py"))["variants"]
    variants.update({name: v for name, v in _theirs.items() if name != _shipped})
