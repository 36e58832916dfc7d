# Weight decay for TREC-6 from scratch: config/study_sst2wd.py's question on 4.9k questions.
# Selected on the validation split (best val accuracy, mean over seeds).
# python ablate.py trecwd --seeds 3 --jobs 12 --test
import runpy
from pathlib import Path

description = "TREC-6 from scratch: AdamW's weight decay 0.1 (as shipped), 0.5, 1.0, 2.0"
_here = Path(__file__).parent
_reg = runpy.run_path(str(_here / "study_trecreg.py"))  # the same base and sizes
base, metric, higher_is_better, baseline = _reg["base"], _reg["metric"], True, "baseline"
overrides, gpu, cpu, quick = _reg["overrides"], _reg["gpu"], _reg["cpu"], _reg["quick"]
variants = runpy.run_path(str(_here / "study_sst2wd.py"))["variants"]
