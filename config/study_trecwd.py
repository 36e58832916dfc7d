# Weight decay for TREC-6 from scratch: config/study_sst2wd.py's question on 4.9k questions.
# Selected on the validation split (best val accuracy, mean over seeds).
# python ablate.py trecwd --seeds 3 --jobs 12 --test
import runpy
from pathlib import Path

description = "TREC-6 from scratch: AdamW's weight decay 0.1 (as shipped), 0.5, 1.0, 2.0"
_sst2 = runpy.run_path(str(Path(__file__).with_name("study_sst2wd.py")))  # the same sizes and variants
metric, higher_is_better, baseline = _sst2["metric"], True, "baseline"
base = "config/trec.py"
overrides, gpu, cpu, quick = _sst2["overrides"], _sst2["gpu"], _sst2["cpu"], _sst2["quick"]
variants = _sst2["variants"]
