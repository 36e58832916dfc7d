"""The WikiText-2 training step with the fused head's elementwise work compiled (`shipped`: what
compile_scope='block' does since model.LogitGrads) or eager (`eager_loss`: as before, by giving the
model a fresh, uncompiled LogitGrads after parallel.compile_model). Everything else is bench.py's
train mode on config/wikitext2.py; extra arguments go to bench.py.

    python results/speed-2026-12-07d/wt2_step.py --variant shipped --json wt2_shipped.json
    python results/speed-2026-12-07d/wt2_step.py --variant eager_loss --json wt2_eager_loss.json
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import bench  # noqa: E402
import model  # noqa: E402
import parallel  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--variant", choices=["shipped", "eager_loss"], required=True)
p.add_argument("--json", required=True)
a, extra = p.parse_known_args()

if a.variant == "eager_loss":
    compile_model = parallel.compile_model

    def eager_loss(raw, *args, **kwargs):
        out = compile_model(raw, *args, **kwargs)
        raw.logit_grads = model.LogitGrads()  # not compiled
        return out

    parallel.compile_model = eager_loss

sys.exit(bench.main([str(ROOT / "config/wikitext2.py"), "--mode=train", f"--json={a.json}",
                     *extra]))
