"""Where a train.py process's first seconds go on this machine, one stage at a time."""
import sys, time, json
from pathlib import Path
sys.path.insert(0, str(Path.cwd()))  # run from the repository root
t0 = time.time(); marks = {}
def mark(name):
    global t0
    now = time.time(); marks[name] = round(now - t0, 3); t0 = now
import torch; mark("import torch")
import train; mark("import train (the rest)")
torch.cuda.is_available(); mark("cuda.is_available")
torch.zeros(1, device="cuda"); torch.cuda.synchronize(); mark("CUDA context")
cfg, kw = train.parse_args(["config/shakespeare_speedrun.py"]); mark("parse_args")
import torch._dynamo; mark("import torch._dynamo")
import torch._inductor.compile_fx; mark("import inductor")
print(json.dumps(marks)); open(sys.argv[1], "w").write(json.dumps(marks, indent=2) + "\n")
