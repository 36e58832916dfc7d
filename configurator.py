"""
The configuration of a training run: one TrainConfig dataclass (plus the model's TransformerConfig),
set from config files and --key=value arguments, every key and value checked before anything runs.

    cfg, model_kw = parse_args(["config/shakespeare.py", "--batch_size=32", "--compile=false"])
    parse_args(["--batch_sise=32"])  # ConfigError: unknown key 'batch_sise' (did you mean 'batch_size'?)

Config files are plain Python assignments, run in their own namespace (runpy), never exec'd into
ours; command-line values are split on the first '=' and converted to the key's type.
"""
import difflib
import inspect
import math
import re
import runpy
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

import prepare
from model import TransformerConfig


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = "out"             # checkpoints, config.json, log.jsonl and metrics.json go here
    init_from: str = "scratch"       # 'scratch', 'resume' (out_dir/ckpt_last.pt), or a pretrained encoder's checkpoint
    overwrite: bool = False          # allow a fresh run into an out_dir that already holds a run
    eval_interval: int = 250         # steps between exact evaluations (and checkpoints)
    log_interval: int = 10           # steps between log lines
    eval_only: bool = False          # evaluate out_dir's checkpoint on eval_split, write metrics_SPLIT.json
    eval_split: str = "val"          # split for eval_only: 'val' or 'test'
    stop_after: int = 0              # stop (saving ckpt_last.pt) after this many steps of this run; 0: off
    stop_at_loss: float = 0.0        # stop once the exact val loss is <= this (time-to-loss runs); 0: off
    save_checkpoints: bool = True    # write ckpt_last.pt / ckpt_best.pt at every evaluation (false: at the end only)
    cpu_config: str = ""             # a smaller config to point to when this one is started on a CPU
    # data
    dataset: str = "shakespeare_char"  # a data set of prepare.py
    data_dir: str = "data"           # where prepare.py writes its data sets
    batch_size: int = 64             # sequences per micro-batch, per process
    grad_accum: int = 1              # micro-batches per optimizer step, per process
    eval_batch_size: int = 256       # sequences per evaluation batch
    eval_stride: int = 0             # LM eval: 0 = separate windows; s = window sliding by s (context >= block_size-s)
    # optimizer
    learning_rate: float = 1e-3      # peak learning rate, reached after warmup
    min_lr: float = 1e-4             # floor of the cosine decay, reached at max_iters
    max_iters: int = 5000            # optimizer steps
    warmup_iters: int = 100          # linear warmup steps (0: none)
    weight_decay: float = 0.1        # AdamW decay, applied to 2-D tensors only
    beta1: float = 0.9               # AdamW beta1
    beta2: float = 0.99              # AdamW beta2
    grad_clip: float = 1.0           # clip the global gradient norm to this; 0: off
    optimizer: str = "adamw"         # 'adamw', or 'muon' (GPU; torch >= 2.9): Muon for the blocks' matrices, AdamW for the rest
    muon_momentum: float = 0.95      # Muon's Nesterov momentum
    # system
    device: str = "auto"             # 'auto' (cuda, then mps, then cpu), or e.g. 'cuda:1', 'cpu'
    dtype: str = "auto"              # 'auto' (bf16 on CUDA if supported, else fp16; fp32 elsewhere), 'bfloat16', 'float16', 'float32'
    compile: bool = True             # torch.compile the model (CUDA only; CPU and MPS run eagerly)
    compile_mode: str = "default"    # torch.compile mode: 'default' or 'reduce-overhead' (adds CUDA graphs)
    compile_scope: str = "model"     # 'model': one graph for the network; 'block': one compilation for all layers
    cuda_graph: bool = False         # replay forward+backward as one recorded CUDA graph (CUDA, LMs, no DDP or FSDP)
    parallel: str = "ddp"            # with torchrun: 'ddp' (each process holds the whole model) or 'fsdp' (sharded)
    seed: int = 1337                 # seeds the model init, dropout and the data order


DATA_KEYS = ("vocab_size", "real_vocab_size", "n_classes", "mlm")  # model keys the data set sets, not the user
MODEL_KEYS = [f.name for f in fields(TransformerConfig) if f.name not in DATA_KEYS]
TRAIN_KEYS = [f.name for f in fields(TrainConfig)]
DEFAULTS = {**asdict(TransformerConfig()), **asdict(TrainConfig())}
FIELD_TYPES = {k: type(v) for k, v in DEFAULTS.items()}  # every default is a bool, int, float or str


class ConfigError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# configuration: defaults <- config files (plain Python, own namespace) <- --key=value

def _help_lines():
    """One line per key, read from the comments beside the dataclass fields (the single source)."""
    lines = []
    for cls, keys in ((TrainConfig, TRAIN_KEYS), (TransformerConfig, MODEL_KEYS)):
        for line in inspect.getsource(cls).splitlines():
            field = re.match(r"\s+(\w+): \w+ = (.+?)\s*(?:#\s*(.*))?$", line)
            if field and field.group(1) in keys:
                setting = f"--{field.group(1)}={field.group(2)}"
                lines.append(f"  {setting:<34} {field.group(3) or ''}".rstrip())
            elif re.match(r"\s+# \w", line):  # a section heading
                lines.append(line.strip())
    return "\n".join(lines)


def _coerce(key, value, source):
    """Value of the right type for key, from a command-line string or a config-file object."""
    return coerce_value(FIELD_TYPES[key], key, value, source)


def coerce_value(kind, key, value, source="command line"):
    if source == "command line" and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{key}={value!r} ({source}) is not a boolean: use true or false")
        try:
            number = float(text) if kind is float else int(text)
        except ValueError:
            try:  # allow --max_iters=5e3
                number = float(text)
                if kind is int and not number.is_integer():
                    raise ValueError
                number = kind(number)
            except ValueError:
                raise ConfigError(f"{key}={value!r} ({source}) is not a valid {kind.__name__}") from None
        return finite(key, number, source)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} ({source}) should be a {kind.__name__}, not {type(value).__name__}")
    return finite(key, value, source)


def finite(key, value, source="command line"):
    """nan and inf pass every `x < 0` range check, so they are refused here, once, for every key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} ({source}) is not a finite number")
    return value


def run_config_file(path):
    """A config file's namespace; a file that does not parse or raises becomes one line naming where."""
    try:
        return runpy.run_path(str(path)), None
    except SyntaxError as e:
        return None, f"config file {path}, line {e.lineno}: {e.msg} (a config file is plain Python)"
    except Exception as e:
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                     if Path(f.filename).resolve() == Path(path).resolve()), "?")
        return None, f"config file {path}, line {line}: {type(e).__name__}: {e}"


def parse_args(argv):
    """Config files and --key=value overrides, in order -> (TrainConfig, model kwargs).
    Every problem is collected and reported in one ConfigError."""
    settings, errors = {}, []
    for arg in argv:
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")  # split on the first '=' only
            if not sep:
                if FIELD_TYPES.get(key) is bool:
                    value = "true"  # a bare --flag means true
                else:
                    errors.append(f"{arg}: expected --{key}=VALUE")
                    continue
            pairs = [(key, value, "command line")]
        else:
            path = Path(arg)
            if not path.is_file():
                errors.append(f"config file {arg!r} not found (configs live in config/, e.g. config/shakespeare.py)")
                continue
            namespace, problem = run_config_file(path)  # its own namespace, not our globals
            if problem:
                errors.append(problem)
                continue
            pairs = [(k, v, str(path)) for k, v in namespace.items()
                     if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"]
        for key, value, source in pairs:
            if key not in FIELD_TYPES or key in DATA_KEYS:
                close = difflib.get_close_matches(key, TRAIN_KEYS + MODEL_KEYS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else " (python train.py --help lists every key)"
                errors.append(f"unknown key '{key}' in {source}{hint}")
                continue
            try:
                settings[key] = _coerce(key, value, source)
            except ConfigError as e:
                errors.append(str(e))
    train_kw = {k: v for k, v in settings.items() if k in TRAIN_KEYS}
    model_kw = {k: v for k, v in settings.items() if k in MODEL_KEYS}
    cfg = TrainConfig(**train_kw)
    errors += validate(cfg, model_kw)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return cfg, model_kw


def validate(cfg, model_kw):
    errors = [f"{k}={getattr(cfg, k)!r} is empty: name a directory (e.g. --{k}=out-mine)"
              for k in ("out_dir", "data_dir") if not getattr(cfg, k).strip()]
    positive = ("eval_interval", "log_interval", "batch_size", "grad_accum", "eval_batch_size")
    errors += [f"{k}={getattr(cfg, k)} must be >= 1" for k in positive if getattr(cfg, k) < 1]
    errors += [f"{k}={getattr(cfg, k)} must be >= 0" for k in
               ("max_iters", "warmup_iters", "weight_decay", "grad_clip", "stop_after", "stop_at_loss")
               if getattr(cfg, k) < 0]
    block_size = model_kw.get("block_size", DEFAULTS["block_size"])
    if not 0 <= cfg.eval_stride <= block_size:
        errors.append(f"eval_stride={cfg.eval_stride} must be in [0, block_size={block_size}]: 0 for separate "
                      f"windows, s for a window sliding s tokens at a time")
    if not 0 <= cfg.seed < 2**63:
        errors.append(f"seed={cfg.seed} must be in [0, 2**63)")
    if cfg.warmup_iters > cfg.max_iters:
        errors.append(f"warmup_iters={cfg.warmup_iters} is longer than training (max_iters={cfg.max_iters})")
    if cfg.learning_rate <= 0:
        errors.append(f"learning_rate={cfg.learning_rate} must be > 0")
    if not 0 <= cfg.min_lr <= cfg.learning_rate:
        errors.append(f"min_lr={cfg.min_lr} must be in [0, learning_rate={cfg.learning_rate}]")
    errors += [f"{k}={getattr(cfg, k)} must be in [0, 1)" for k in ("beta1", "beta2", "muon_momentum")
               if not 0 <= getattr(cfg, k) < 1]
    choices = dict(eval_split=("val", "test"), optimizer=("adamw", "muon"),
                   compile_mode=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   compile_scope=("model", "block"), parallel=("ddp", "fsdp"),
                   dtype=("auto", "bfloat16", "float16", "float32"), dataset=tuple(prepare.DATASETS))
    errors += [f"{k}={getattr(cfg, k)!r} is not one of {', '.join(map(repr, c))}"
               for k, c in choices.items() if getattr(cfg, k) not in c]
    if cfg.cuda_graph and cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune"):
        errors.append(f"cuda_graph=True and compile_mode={cfg.compile_mode!r} both record CUDA graphs; "
                      f"use compile_mode='default' or 'max-autotune-no-cudagraphs', or --compile=false")
    if cfg.cuda_graph and prepare.DATASETS.get(cfg.dataset, {}).get("task") == "cls":
        errors.append(f"cuda_graph=True needs batches of one shape: a language model, not {cfg.dataset!r} "
                      f"(whose batches are padded to their longest text)")
    if cfg.cuda_graph and cfg.dtype == "float16":
        errors.append("cuda_graph=True is not supported with dtype='float16' (its loss scaling); use 'bfloat16'")
    if cfg.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
        errors.append(f"optimizer='muon' needs torch >= 2.9 (this is {torch.__version__}); use 'adamw'")
    if cfg.optimizer == "muon" and cfg.parallel == "fsdp":
        errors.append("optimizer='muon' is not supported with parallel='fsdp': Muon orthogonalises whole weight "
                      "matrices and each process holds only a shard of them; use 'adamw' or parallel='ddp'")
    errors += device_problems(cfg.device, cfg.dtype)
    # the model keys, with a stand-in vocabulary; for an unknown data set, what is wrong for either task
    task = prepare.DATASETS.get(cfg.dataset, {}).get("task")
    found = []
    for n_classes in [2 if task == "cls" else 0] if task else [0, 2]:
        try:
            TransformerConfig(vocab_size=1, n_classes=n_classes, mlm=task == "mlm", **model_kw)
            found.append([])
        except ValueError as e:
            found.append([line.strip() for line in str(e).splitlines()[1:]])
    errors += [e for e in found[0] if all(e in other for other in found)]
    return errors


def device_problems(device, dtype="auto"):
    """What is wrong with device (and dtype) on this machine, as messages (sample.py shares it)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        return [f"device={device!r} should be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'"]
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        return [f"device={device!r}: this machine has no CUDA GPU (torch {torch.__version__}, "
                f"{'a CPU-only build' if torch.version.cuda is None else 'no device visible'}); use --device=auto or cpu"]
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        return [f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), cuda:0.."
                f"cuda:{torch.cuda.device_count() - 1}"]
    if device == "mps" and not mps:
        return ["device='mps' is not available on this machine; use --device=auto or cpu"]
    on_cpu = device == "cpu" or device == "auto" and not torch.cuda.is_available() and not mps
    if dtype == "float16" and on_cpu:
        return ["dtype='float16' on a CPU is emulated (about 10x slower than float32) and needs loss "
                "scaling: use --dtype=auto (float32) or bfloat16"]
    return []


def print_help(usage):
    print(usage.strip())
    print("\nKeys (defaults shown; set them in a config file or as --key=value):")
    print(_help_lines())
