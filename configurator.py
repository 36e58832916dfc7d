"""
The command line of every script, in one layer: a script declares its options as a dataclass whose
fields carry type, default and help (opt()); parse() reads --key=value arguments (and config files,
or one positional value) against it, converts each value to its field's type, and reports every
problem at once in one ConfigError. train.py's TrainConfig is here, and model_config(), the one
place a TransformerConfig is made from settings.

    cfg, model_kw = parse_args(["config/shakespeare.py", "--batch_size=32", "--compile=false"])
    parse_args(["--batch_sise=32"])
    # ConfigError: unknown key 'batch_sise' (did you mean 'batch_size'?)
    opts = parse(["--top_k=5"], SampleConfig, script="sample.py")

Config files are plain Python assignments, run in their own namespace (runpy), never exec'd into
ours; command-line values are split on the first '=' and converted to the key's type.
"""
import difflib
import inspect
import math
import re
import runpy
import traceback
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch

from data import TASKS
from model import TransformerConfig


class ConfigError(ValueError):
    pass


def opt(default, help, section=None, metavar=None):
    """A dataclass field with its --help line (section: a heading above it; metavar: what to show
    in place of the default)."""
    return field(default=default, metadata={"help": help, "section": section, "metavar": metavar})


# train.py's and sample.py's
DEVICE_HELP = "'auto' (cuda, then mps, then cpu), or e.g. 'cuda:1', 'cpu'"


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = opt("out", "checkpoints, config.json, log.jsonl and metrics.json go here",
                       section="I/O")
    init_from: str = opt("scratch", "'scratch', 'resume' (out_dir/ckpt_last.pt), or a pretrained "
                                    "encoder's checkpoint")
    overwrite: bool = opt(False, "allow a fresh run into an out_dir that already holds a run")
    eval_interval: int = opt(250, "steps between exact evaluations (and checkpoints)")
    log_interval: int = opt(10, "steps between log lines")
    eval_only: bool = opt(False, "evaluate out_dir's checkpoint on eval_split, write "
                                 "metrics_SPLIT.json")
    eval_split: str = opt("val", "split for eval_only: 'val' or 'test'")
    dynamic_lr: float = opt(0.0, "eval_only, language models: also score by dynamic evaluation "
                                 "(SGD at this learning rate after each window); 0: off")
    dynamic_decay: float = opt(0.0, "dynamic evaluation: pull towards the trained weights after "
                                    "each step, in [0, 1)")
    stop_after: int = opt(0, "stop (saving ckpt_last.pt) after this many steps of this run; 0: off")
    stop_at_loss: float = opt(0.0, "stop once the exact val loss is <= this (a language model's "
                                   "time-to-loss runs); 0: off")
    save_checkpoints: bool = opt(True, "write ckpt_last.pt / ckpt_best.pt at every evaluation "
                                       "(false: at the end only)")
    cpu_config: str = opt("", "a smaller config to point to when this one is started on a CPU")
    # data
    dataset: str = opt("shakespeare_char", "a data set of prepare.py", section="data")
    data_dir: str = opt("data", "where prepare.py writes its data sets")
    batch_size: int = opt(64, "sequences per micro-batch, per process")
    grad_accum: int = opt(1, "micro-batches per optimizer step, per process")
    eval_batch_size: int = opt(256, "sequences per evaluation batch")
    eval_stride: int = opt(0, "LM eval: 0 = separate windows; s = window sliding by s "
                              "(context >= window-s)")
    eval_context: int = opt(0, "LM eval: the window in tokens (0 = block_size); longer ones need "
                               "relative positions and attend over the whole window")
    # optimizer
    learning_rate: float = opt(1e-3, "peak learning rate, reached after warmup",
                               section="optimizer")
    min_lr: float = opt(1e-4, "floor of the cosine decay, reached at max_iters")
    max_iters: int = opt(5000, "optimizer steps")
    warmup_iters: int = opt(100, "linear warmup steps (0: none)")
    weight_decay: float = opt(0.1, "AdamW decay, applied to 2-D tensors only")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.99, "AdamW beta2")
    grad_clip: float = opt(1.0, "clip the global gradient norm to this; 0: off")
    optimizer: str = opt("adamw", "'adamw', or 'muon' (GPU; torch >= 2.9): Muon for the blocks' "
                                  "matrices, AdamW for the rest")
    muon_momentum: float = opt(0.95, "Muon's Nesterov momentum")
    ema_decay: float = opt(0.0, "average the weights, decay per step (e.g. 0.999): evaluations and "
                                "ckpt_best.pt use the average; 0: off")
    layer_lr_decay: float = opt(1.0, "learning rate x this per layer down from the head: blocks from "
                                     "the top, then the embeddings, with a tied head (fine-tuning; "
                                     "1: off)")
    # system
    device: str = opt("auto", DEVICE_HELP, section="system")
    dtype: str = opt("auto", "'auto' (bf16 on CUDA if supported, else fp16; fp32 elsewhere), "
                             "'bfloat16', 'float16', 'float32'")
    compile: bool = opt(True, "torch.compile the model (CUDA only; CPU and MPS run eagerly)")
    compile_mode: str = opt("default", "torch.compile mode: 'default' or 'reduce-overhead' "
                                       "(adds CUDA graphs)")
    compile_scope: str = opt("model", "'model': one graph for the network; 'block': one "
                                      "compilation for all layers")
    cuda_graph: bool = opt(False, "replay forward+backward as recorded CUDA graphs, one per batch "
                                  "shape (CUDA only, no DDP or FSDP; elsewhere ignored)")
    parallel: str = opt("ddp", "with torchrun: 'ddp' (each process holds the whole model) or "
                               "'fsdp' (sharded)")
    seed: int = opt(1337, "seeds the model init, dropout and the data order")


# model keys the data set sets, not the user
DATA_KEYS = ("vocab_size", "real_vocab_size", "n_classes", "mlm")


def field_types(cls, exclude=()):
    """{key: type} of a dataclass's fields, the type taken from the default (bool, int, float, str,
    or tuple for a repeatable option), so that it holds whatever the annotations say."""
    return {f.name: type(f.default if f.default is not MISSING else f.default_factory())
            for f in fields(cls) if f.name not in exclude}


TRAIN_TYPES = field_types(TrainConfig)
MODEL_TYPES = field_types(TransformerConfig, exclude=DATA_KEYS)
TRAIN_KEYS, MODEL_KEYS = list(TRAIN_TYPES), list(MODEL_TYPES)
DEFAULTS = {**asdict(TransformerConfig()), **asdict(TrainConfig())}


# ----------------------------------------------------------------------------------------------
# reading arguments: defaults <- config files (plain Python, own namespace) <- --key=value

def read_args(argv, types, files=False, positional=None, spaced=False, script="train.py"):
    """Settings from argv, in order, later ones winning: --key=value (split on the first '='; a bare
    --flag means true for a boolean; with spaced, --key value too), and config files (files=True) or
    one bare value for the key `positional`. Returns ({key: value of types[key]}, [problems]); a
    tuple-typed key is repeatable and collects its values."""
    settings, errors, args = {}, [], list(argv)
    hint = f" (python {script} --help lists every key)"
    while args:
        arg = args.pop(0)
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")  # split on the first '=' only
            if not sep and types.get(key) is bool:
                value = "true"  # a bare --flag means true
            elif not sep and spaced and key in types and args and not args[0].startswith("--"):
                value = args.pop(0)
            elif not sep and key in types:
                errors.append(f"{arg}: expected --{key}=VALUE")
                continue
            pairs = [(key, value, "command line")]
        elif positional:
            if positional in settings:
                errors.append(f"{arg!r}: one {positional} only (already {settings[positional]!r})")
                continue
            pairs = [(positional, arg, "command line")]
        elif files:
            namespace, problem = run_config_file(arg)  # its own namespace, not our globals
            if problem:
                errors.append(problem)
                continue
            pairs = [(k, v, arg) for k, v in namespace.items()
                     if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"]
        else:
            errors.append(f"{arg!r}: expected --key=VALUE{hint}")
            continue
        for key, value, source in pairs:
            if key not in types:
                close = difflib.get_close_matches(key, list(types), n=1)
                errors.append(f"unknown key '{key}' in {source}"
                              + (f" (did you mean '{close[0]}'?)" if close else hint))
                continue
            kind = types[key]
            try:
                value = coerce_value(str if kind is tuple else kind, key, value, source)
            except ConfigError as e:
                errors.append(str(e))
                continue
            settings[key] = settings.get(key, ()) + (value,) if kind is tuple else value
    return settings, errors


def coerce_value(kind, key, value, source="command line"):
    """Value of type kind for key, from a command-line string or a config-file object."""
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
                raise ConfigError(
                    f"{key}={value!r} ({source}) is not a valid {kind.__name__}") from None
        return finite(key, number, source)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} ({source}) should be a {kind.__name__}, "
                          f"not {type(value).__name__}")
    return finite(key, value, source)


def finite(key, value, source="command line"):
    """nan and inf pass every `x < 0` range check, so they are refused here, once, for every key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} ({source}) is not a finite number")
    return value


def run_config_file(path):
    """A config file's namespace; a file that is missing, does not parse or
    raises becomes one line."""
    if not Path(path).is_file():
        return None, (f"config file {str(path)!r} not found (configs live in config/, "
                      f"e.g. config/shakespeare.py)")
    try:
        return runpy.run_path(str(path)), None
    except SyntaxError as e:
        return None, f"config file {path}, line {e.lineno}: {e.msg} (a config file is plain Python)"
    except Exception as e:
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                     if Path(f.filename).resolve() == Path(path).resolve()), "?")
        return None, f"config file {path}, line {line}: {type(e).__name__}: {e}"


def fail(errors):
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def parse(argv, cls, check=None, **how):
    """argv -> an instance of the dataclass cls (how: read_args' options), every problem of the
    arguments and of check(instance) -> [messages] in one ConfigError."""
    settings, errors = read_args(argv, field_types(cls), **how)
    opts = cls(**settings)
    fail(errors + (check(opts) if check else []))
    return opts


def parse_args(argv):
    """train.py's arguments: config files and --key=value overrides, in order -> (TrainConfig, model
    kwargs: the model keys set, for model_config)."""
    settings, errors = read_args(argv, {**TRAIN_TYPES, **MODEL_TYPES}, files=True)
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in TRAIN_TYPES})
    model_kw = {k: v for k, v in settings.items() if k in MODEL_TYPES}
    fail(errors + validate(cfg, model_kw))
    return cfg, model_kw


# ----------------------------------------------------------------------------------------------
# the model's config, from settings

def padded_vocab(n):
    """Large vocabularies padded to a multiple of 64 for faster matmuls (50257 -> 50304); the extra
    rows are never targets, the model gives them no probability (real_vocab_size), and sampling
    masks them (sample.py passes vocab_limit)."""
    return n if n < 1024 else -(-n // 64) * 64


def model_config(keys, data=None, vocab_size=None):
    """The TransformerConfig of model keys (a config file and the command line, or a checkpoint's
    whole saved config). What only the data set knows (DATA_KEYS) comes from data: its vocabulary,
    padded, its classes, and whether it is masked LM; or vocab_size stands in for a vocabulary
    (estimates, benchmarks, checking the keys before any data set is loaded)."""
    if data is not None:
        keys = {**keys, "vocab_size": padded_vocab(data.vocab_size), "n_classes": data.n_classes,
                "real_vocab_size": data.vocab_size if data.task != "cls" else 0,
                "mlm": data.task == "mlm"}
    elif vocab_size is not None:
        keys = {**keys, "vocab_size": vocab_size}
    return TransformerConfig(**keys)


# ----------------------------------------------------------------------------------------------
# checks and help

def eval_window_errors(cfg, block_size, pos_encoding):
    """eval_stride and eval_context against the model's block_size and position encoding: from the
    command line here, and again from a checkpoint's model for eval_only and resume (train.py)."""
    errors = []
    window = cfg.eval_context or block_size
    if not 0 <= cfg.eval_stride <= window:
        errors.append(f"eval_stride={cfg.eval_stride} must be in [0, {window}] (the evaluation "
                      f"window, eval_context or block_size): 0 for separate windows, s for a "
                      f"window sliding s tokens at a time")
    if cfg.eval_context < 0:
        errors.append(f"eval_context={cfg.eval_context} must be >= 0 (0: block_size)")
    elif cfg.eval_context and TASKS.get(cfg.dataset, "lm") != "lm":
        errors.append(f"eval_context={cfg.eval_context} sets a language model's evaluation window; "
                      f"{cfg.dataset!r} is not a language-model data set: drop it")
    elif cfg.eval_context > block_size and pos_encoding in ("learned", "sinusoidal"):
        errors.append(f"eval_context={cfg.eval_context} is longer than block_size={block_size}, "
                      f"and pos_encoding={pos_encoding!r} has no positions past it: use "
                      f"eval_context <= {block_size}, or a model with 'alibi', 'rope' or 'none'")
    return errors


def validate(cfg, model_kw):
    errors = [f"{k}={getattr(cfg, k)!r} is empty: name a directory (e.g. --{k}=out-mine)"
              for k in ("out_dir", "data_dir") if not getattr(cfg, k).strip()]
    positive = ("eval_interval", "log_interval", "batch_size", "grad_accum", "eval_batch_size")
    errors += [f"{k}={getattr(cfg, k)} must be >= 1" for k in positive if getattr(cfg, k) < 1]
    errors += [f"{k}={getattr(cfg, k)} must be >= 0" for k in
               ("max_iters", "warmup_iters", "weight_decay", "grad_clip", "stop_after",
                "stop_at_loss", "dynamic_lr")
               if getattr(cfg, k) < 0]
    if not 0 <= cfg.dynamic_decay < 1:
        errors.append(f"dynamic_decay={cfg.dynamic_decay} must be in [0, 1)")
    if cfg.dynamic_lr and not (cfg.eval_only and TASKS.get(cfg.dataset, "lm") == "lm"):
        errors.append(f"dynamic_lr={cfg.dynamic_lr} is for scoring a language model "
                      f"(--eval_only=true on a language-model data set), not for training; "
                      f"drop it or add --eval_only=true")
    if cfg.stop_at_loss and TASKS.get(cfg.dataset, "lm") != "lm":
        errors.append(f"stop_at_loss={cfg.stop_at_loss} is a language model's target (its exact "
                      f"val loss), and {cfg.dataset!r} is a "
                      f"{dict(cls='classification', mlm='masked-LM')[TASKS[cfg.dataset]]} data "
                      f"set; drop it")
    errors += eval_window_errors(cfg, model_kw.get("block_size", DEFAULTS["block_size"]),
                                 model_kw.get("pos_encoding", DEFAULTS["pos_encoding"]))
    if not 0 <= cfg.seed < 2**63:
        errors.append(f"seed={cfg.seed} must be in [0, 2**63)")
    if cfg.warmup_iters > cfg.max_iters:
        errors.append(f"warmup_iters={cfg.warmup_iters} is longer than training "
                      f"(max_iters={cfg.max_iters})")
    if cfg.learning_rate <= 0:
        errors.append(f"learning_rate={cfg.learning_rate} must be > 0")
    if not 0 <= cfg.min_lr <= cfg.learning_rate:
        errors.append(f"min_lr={cfg.min_lr} must be in [0, learning_rate={cfg.learning_rate}]")
    errors += [f"{k}={getattr(cfg, k)} must be in [0, 1)"
               for k in ("beta1", "beta2", "muon_momentum", "ema_decay")
               if not 0 <= getattr(cfg, k) < 1]
    if not 0 < cfg.layer_lr_decay <= 1:
        errors.append(f"layer_lr_decay={cfg.layer_lr_decay} must be in (0, 1] (1: every layer at "
                      f"learning_rate)")
    choices = dict(eval_split=("val", "test"), optimizer=("adamw", "muon"),
                   compile_mode=("default", "reduce-overhead", "max-autotune",
                                 "max-autotune-no-cudagraphs"),
                   compile_scope=("model", "block"), parallel=("ddp", "fsdp"),
                   dtype=("auto", "bfloat16", "float16", "float32"), dataset=tuple(TASKS))
    errors += [f"{k}={getattr(cfg, k)!r} is not one of {', '.join(map(repr, c))}"
               for k, c in choices.items() if getattr(cfg, k) not in c]
    if cfg.cuda_graph and cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune"):
        errors.append(f"cuda_graph=True and compile_mode={cfg.compile_mode!r} both record CUDA "
                      f"graphs; use compile_mode='default' or 'max-autotune-no-cudagraphs', or "
                      f"--compile=false")
    if cfg.cuda_graph and cfg.dtype == "float16":
        errors.append("cuda_graph=True is not supported with dtype='float16' (its loss scaling); "
                      "use 'bfloat16'")
    if cfg.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
        errors.append(f"optimizer='muon' needs torch >= 2.9 (this is {torch.__version__}); "
                      f"use 'adamw'")
    if cfg.optimizer == "muon" and cfg.parallel == "fsdp":
        errors.append("optimizer='muon' is not supported with parallel='fsdp': Muon "
                      "orthogonalises whole weight matrices and each process holds only a shard "
                      "of them; use 'adamw' or parallel='ddp'")
    if cfg.ema_decay and cfg.parallel == "fsdp":
        errors.append("ema_decay is not supported with parallel='fsdp' (each process holds only "
                      "shards of the weights to average); use parallel='ddp' or ema_decay=0")
    errors += device_problems(cfg.device, cfg.dtype)
    # the model keys, with a stand-in vocabulary;
    # for an unknown data set, what is wrong for either task
    task = TASKS.get(cfg.dataset)
    found = []
    for n_classes in [2 if task == "cls" else 0] if task else [0, 2]:
        try:
            model_config({"n_classes": n_classes, "mlm": task == "mlm", **model_kw}, vocab_size=1)
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
                f"{'a CPU-only build' if torch.version.cuda is None else 'no device visible'}); "
                f"use --device=auto or cpu"]
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        return [f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                f"GPU(s), cuda:0..cuda:{torch.cuda.device_count() - 1}"]
    if device == "mps" and not mps:
        return ["device='mps' is not available on this machine; use --device=auto or cpu"]
    on_cpu = device == "cpu" or device == "auto" and not torch.cuda.is_available() and not mps
    if dtype == "float16" and on_cpu:
        return ["dtype='float16' on a CPU is emulated (about 10x slower than float32) and needs "
                "loss scaling: use --dtype=auto (float32) or bfloat16"]
    return []


def help_lines(cls, exclude=()):
    """One line per key, `--key=default  help`, from the fields' metadata (opt()), under the
    headings of their sections. A dataclass whose fields have no metadata (model.py's
    TransformerConfig: model.py imports nothing of ours) keeps its help in comments beside its
    fields, read from its source."""
    comments, lines, section = None, [], None
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta:
            comments = comments or source_comments(cls)
            meta = comments.get(f.name, {})
        # the heading of a key left out goes to the next one
        section = meta.get("section") or section
        if f.name in exclude:
            continue
        lines += [f"# {section}"] if section else []
        section = None
        default = f.default if f.default is not MISSING else f.default_factory()
        setting = f"--{f.name}={meta.get('metavar') or shown(default)}"
        lines.append(f"  {setting:<34} {meta.get('help', '')}".rstrip())
    return lines


def source_comments(cls):
    """{field: {"help": its comment, "section": the heading comment above it}} from cls's source.
    A comment line indented as the fields are is a heading (several lines: one heading); one
    indented further, right under a field, continues that field's comment."""
    found, section, last, indent = {}, None, None, None
    for line in inspect.getsource(cls).splitlines():
        field_line = re.match(r"(\s+)(\w+): \w+ = .+?(?:#\s*(.*))?$", line)
        comment = re.match(r"(\s+)#\s*(.*)", line)
        if field_line:
            indent = field_line.group(1)
            last = found[field_line.group(2)] = {"help": field_line.group(3) or "",
                                                 "section": section}
            section = None
        elif comment and last and len(comment.group(1)) > len(indent):
            last["help"] = f"{last['help']} {comment.group(2)}".strip()
        elif comment and comment.group(1) == (indent or comment.group(1)):
            section, last = f"{section} {comment.group(2)}" if section else comment.group(2), None
        else:
            last = None
    return found


def shown(value):
    """A default as one would type it: --out_dir=out, --start='\\n', --cpu_config='',
    --learning_rate=1e-3."""
    if isinstance(value, str):
        return value if value and value.isprintable() and value.strip() == value else repr(value)
    if isinstance(value, float) and 0 < abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return str(value)


def print_help(usage, *classes, exclude=(),
               note="Keys (defaults shown; set them in a config file or as --key=value):"):
    print(usage.strip())
    print(f"\n{note}")
    print("\n".join(line for cls in classes for line in help_lines(cls, exclude)))
