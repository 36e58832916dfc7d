"""
Sample text from a trained language model, or label text with a trained classifier.

    python sample.py  # the main job (out-shakespeare-char), streamed
    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=3 \\
        --max_new_tokens=500 --temperature=0.8 --top_k=200 --top_p=0.95 --seed=1337
    python sample.py --start=FILE:prompt.txt --temperature=0  # prompt from a file, greedy decoding
    python sample.py --out_dir=out-trec \\
        --start="Who wrote Hamlet ?"  # a classifier: label and probabilities

One sample is printed as it is generated; several are generated as one batch and printed in turn,
separated by a line of dashes. Generation runs with the model's KV cache (model.generate_stream).
For a classifier, --start is one text or FILE:path with one text per line.
"""
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from configurator import DEVICE_HELP, ConfigError, device_problems, opt, parse, print_help
from checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from data import DataError, Tokenizer
from train import resolve_device

MAIN_OUT_DIR = "out-shakespeare-char"  # what `python train.py config/shakespeare.py` writes
MAIN_TRAIN_CMD = "python train.py config/shakespeare.py"
# in order of preference
CHECKPOINTS = {"best": ("ckpt_best.pt", "ckpt_last.pt"), "last": ("ckpt_last.pt",)}


@dataclass
class SampleConfig:
    out_dir: str = opt(MAIN_OUT_DIR, "the training run to load")
    checkpoint: str = opt("best", "'best' (ckpt_best.pt, else ckpt_last.pt) or 'last'")
    start: str = opt("\n", "the prompt, a newline by default (classifier: the text); "
                           "FILE:path reads a file")
    num_samples: int = opt(1, "samples to draw; 1 streams, more run as one batch")
    max_new_tokens: int = opt(500, "tokens generated per sample")
    temperature: float = opt(0.8, "< 1 sharper, > 1 more random, 0 greedy "
                                  "(then the seed does not matter)")
    top_k: int = opt(200, "keep only the k most likely tokens; 0: off")
    top_p: float = opt(1.0, "keep the smallest set of tokens with probability >= p; 1.0: off")
    seed: int = opt(1337, "the same seed gives the same text")
    device: str = opt("auto", DEVICE_HELP)
    dtype: str = opt("auto", "'auto' (bf16 on CUDA; on a CPU for one sample; else fp32), "
                             "'bfloat16', 'float16', 'float32'")
    compile: bool = opt(False, "CUDA: compile the decode step (faster tokens after a compilation "
                               "of some seconds; docs/PERFORMANCE.md)")


class SampleError(ValueError):
    """A problem the user can fix: options, prompt, input file."""


# ----------------------------------------------------------------------------------------------
# options: --key=value as in train.py, every key checked against SampleConfig

def parse_args(argv):
    try:
        return parse(argv, SampleConfig, validate, script="sample.py")
    except ConfigError as e:
        raise SampleError(str(e)) from None


def validate(cfg):
    errors = []
    if not cfg.out_dir.strip():
        errors.append("out_dir='' is empty: name a run directory "
                      "(e.g. --out_dir=out-shakespeare-char)")
    if cfg.checkpoint not in CHECKPOINTS:
        errors.append(f"checkpoint={cfg.checkpoint!r} is not one of 'best', 'last'")
    if cfg.num_samples < 1:
        errors.append(f"num_samples={cfg.num_samples} must be >= 1")
    if cfg.max_new_tokens < 0:
        errors.append(f"max_new_tokens={cfg.max_new_tokens} must be >= 0")
    if cfg.temperature < 0:
        errors.append(f"temperature={cfg.temperature} must be >= 0 (0 is greedy decoding)")
    if cfg.top_k < 0:
        errors.append(f"top_k={cfg.top_k} must be >= 0 (0 turns it off)")
    if not 0 <= cfg.seed < 2**63:
        errors.append(f"seed={cfg.seed} must be in [0, 2**63)")
    if not 0 < cfg.top_p <= 1:
        errors.append(f"top_p={cfg.top_p} must be in (0, 1] (1 turns it off)")
    errors += device_problems(cfg.device)
    if cfg.dtype not in ("auto", "bfloat16", "float16", "float32"):
        errors.append(f"dtype={cfg.dtype!r} is not one of 'auto', 'bfloat16', 'float16', 'float32'")
    return errors


# ----------------------------------------------------------------------------------------------
# loading

def find_checkpoint(out_dir, which="best"):
    out = Path(out_dir)
    for name in CHECKPOINTS[which]:
        if (out / name).is_file():
            return out / name
    looked = " or ".join(CHECKPOINTS[which])
    config = config_for(out_dir)
    if (out / "config.json").exists():
        fix = "its run stopped before its first checkpoint; train it again with --overwrite=true"
    elif config:
        fix = f"train it first: `python train.py {config}`"
        if config == MAIN_TRAIN_CMD.split()[-1] and not torch.cuda.is_available():
            fix += (" (sized for a GPU; on a CPU "
                    "`python train.py config/shakespeare_cpu.py` is minutes)")
    else:
        fix = (f"train a model there first, e.g. "
               f"`python train.py config/NAME.py --out_dir={out_dir}`")
    runs = sorted({str(p.parent) for p in Path().glob("out*/ckpt_*.pt")} - {str(out)})
    if runs:
        fix += f"; or sample a run that exists: {', '.join(f'--out_dir={r}' for r in runs)}"
    raise CheckpointError(f"no checkpoint in {out}/ (looked for {looked}): {fix}")


def config_for(out_dir):
    """The shipped config that trains into out_dir, if one does
    (config/NAME.py sets out_dir = "...")."""
    for path in sorted((Path(__file__).resolve().parent / "config").glob("*.py")):
        found = re.search(r'^out_dir = "([^"]+)"', path.read_text(), re.M)
        if found and found.group(1) == str(out_dir).rstrip("/"):
            return f"config/{path.name}"
    return None


def get_device(name):
    problems = device_problems(name)
    if problems:
        raise SampleError(problems[0])
    return resolve_device(name)


def load(out_dir, which="best", device="cpu"):
    """(model on device in eval mode, tokenizer, checkpoint dict, checkpoint path)."""
    path = find_checkpoint(out_dir, which)
    ckpt = load_checkpoint(path)
    try:
        model = model_from_checkpoint(ckpt, dropout=0.0)
        tokenizer = Tokenizer(ckpt["data"]["meta"]["tokenizer"])
    except (KeyError, TypeError, RuntimeError) as e:  # RuntimeError: state dict and config disagree
        raise CheckpointError(f"{path} does not hold a complete model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return model.to(device).eval(), tokenizer, ckpt, path


def inference_dtype(dtype, device, decode_batch=None):
    """The torch dtype for dtype='auto' | 'bfloat16' | 'float16' | 'float32'. 'auto': bf16 on CUDA;
    on the CPU only to decode a single sequence (decode_batch=1). Decoding one token at a time reads
    every weight once per token, so batch 1 is memory-bound and bf16 weights halve the bytes read;
    a batch, or a classifier's forward over whole texts, is compute-bound, and CPUs without bf16
    units compute faster in fp32 (PERFORMANCE.md, section 4)."""
    if dtype == "auto":
        bf16 = (device.type == "cpu" and decode_batch == 1) or \
            (device.type == "cuda" and torch.cuda.is_bf16_supported())
        dtype = "bfloat16" if bf16 else "float32"
    return getattr(torch, dtype)


def cast_for_inference(model, dtype):
    """Store the model's parameters in dtype (in place; returns the model). Inference then needs no
    autocast, whose per-call casts of every weight are as many extra kernels (and bytes) as the
    matrix products themselves when decoding one token. LayerNorm and softmax still accumulate in
    fp32 inside their kernels, RoPE rotates in fp32, and the fixed position
    tables (buffers) stay fp32."""
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


def read_start(start):
    """--start's text: the string itself, or the contents of the file named by FILE:path."""
    if not start.startswith("FILE:"):
        return start
    path = Path(start[len("FILE:"):]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SampleError(f"prompt file {path} (from --start={start}) not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SampleError(f"prompt file {path} cannot be read as UTF-8 text ({e})") from None


def _short(text, n=40):
    return repr(text if len(text) <= n else text[:n] + "...")


# ----------------------------------------------------------------------------------------------
# generation

class StreamDecoder:
    """Text for a growing list of token ids, handed out as it becomes final.

    Char and word tokenizers decode token by token. A BPE token can end in the middle of a
    multi-byte UTF-8 character, which decodes to U+FFFD until the next token completes it, so BPE
    ids are held back until they decode without a trailing U+FFFD."""

    def __init__(self, tokenizer):
        self.tokenizer, self.pending = tokenizer, []

    def push(self, ids):
        self.pending += ids
        text = self.tokenizer.decode(self.pending)
        if self.tokenizer.kind == "tiktoken" and text.endswith("\ufffd"):
            return ""
        self.pending = []
        return text

    def flush(self):
        text, self.pending = self.tokenizer.decode(self.pending) if self.pending else "", []
        return text


@torch.no_grad()
def generate(model, tokenizer, vocab_size, prompt, num_samples=1, max_new_tokens=500,
             temperature=0.8, top_k=200, top_p=1.0, seed=1337, stream=None, compile=False):
    """Texts (prompt + continuation) of num_samples samples; with stream, written there as well:
    one sample as its tokens arrive, several one after another between lines of dashes.
    The model computes in the dtype of its parameters (see cast_for_inference)."""
    try:
        ids = tokenizer.encode(prompt)
    except ValueError as e:  # characters or words the training data never had
        raise SampleError(f"prompt {_short(prompt)}: {e}; use only symbols of the training data, "
                          f"or another --start") from None
    if not ids:
        raise SampleError(f"the prompt {_short(prompt)} encodes to no tokens: give --start=TEXT "
                          f"(the default is a newline)")
    device = next(model.parameters()).device
    # the seed fixes the text: torch.multinomial draws only from this generator
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (B, T)
    kw = dict(temperature=temperature, top_k=top_k or None, top_p=top_p, generator=generator,
              vocab_limit=vocab_size,  # a padded vocabulary's extra rows are never sampled
              compile=compile)
    if num_samples == 1:
        decoder = StreamDecoder(tokenizer)
        pieces = [decoder.push(ids)]
        write = stream.write if stream is not None else (lambda s: None)
        write(pieces[0])
        for nxt in model.generate_stream(idx, max_new_tokens, **kw):  # (1, 1)
            pieces.append(decoder.push([nxt.item()]))
            write(pieces[-1])
            if stream is not None:
                stream.flush()  # show each piece now, not when the buffer fills
        pieces.append(decoder.flush())
        write(pieces[-1] + "\n")
        return ["".join(pieces)]
    out = model.generate(idx, max_new_tokens, **kw)  # (B, T + max_new_tokens)
    texts = [tokenizer.decode(row.tolist()) for row in out]
    if stream is not None:
        stream.write(("\n" + "-" * 40 + "\n").join(texts) + "\n")
        stream.flush()
    return texts


def sample(out_dir=MAIN_OUT_DIR, start="\n", num_samples=1, max_new_tokens=500, temperature=0.8,
           top_k=200, top_p=1.0, seed=1337, device="auto", dtype="auto", checkpoint="best",
           stream=None, compile=False):
    """Load out_dir's checkpoint and sample from it; returns the texts (prompt included)."""
    device = get_device(device)
    model, tokenizer, ckpt, path = load(out_dir, checkpoint, device)
    if model.config.n_classes:
        raise SampleError(f"{path} is a classifier ({model.config.n_classes} classes), not a "
                          f"language model: use classify()")
    cast_for_inference(model, inference_dtype(dtype, device, num_samples))
    return generate(model, tokenizer, ckpt["data"]["meta"]["vocab_size"], read_start(start),
                    num_samples, max_new_tokens, temperature, top_k, top_p, seed, stream, compile)


# ----------------------------------------------------------------------------------------------
# classification

@torch.no_grad()
def label(model, tokenizer, label_names, texts, stream=None, batch_size=64):
    """For each text {"text", "label", "probs": {label: p} from most to least likely}."""
    device = next(model.parameters()).device
    pad = tokenizer.stoi[tokenizer.spec["pad"]]
    results = []
    for s in range(0, len(texts), batch_size):
        chunk = texts[s:s + batch_size]
        # encode() gives <cls> + word ids, unknown words as <unk>; cut to the context, keeping <cls>
        seqs = [tokenizer.encode(t)[:model.config.block_size] for t in chunk]
        for t, seq in zip(chunk, seqs):
            if len(seq) < 2:  # <cls> alone: no words at all
                raise SampleError(f"text {_short(t)} has no words to classify")
        x = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
        # True = real token, right padding as in training
        mask = torch.zeros(x.shape, dtype=torch.bool)
        for r, seq in enumerate(seqs):
            x[r, :len(seq)], mask[r, :len(seq)] = torch.tensor(seq), True
        logits, _ = model(x.to(device), attention_mask=mask.to(device))
        probs = F.softmax(logits.float(), dim=-1).cpu()  # (B, n_classes)
        unk = tokenizer.stoi[tokenizer.spec["unk"]]
        for t, p, seq in zip(chunk, probs.tolist(), seqs):
            ranked = dict(sorted(zip(label_names, p), key=lambda kv: -kv[1]))
            results.append({"text": t, "label": next(iter(ranked)), "probs": ranked})
            # the model saw nothing it knows: its label is a prior
            if all(i == unk for i in seq[1:]):
                results[-1]["note"] = (f"every word ({len(seq) - 1}) was unknown to the model's "
                                       f"vocabulary: the label says nothing about this text")
            if stream is not None:
                shown = "  ".join(f"{k} {v:.2f}" for k, v in ranked.items())
                note = f"\n{'':<10} note: {results[-1]['note']}" if "note" in results[-1] else ""
                stream.write(f"{results[-1]['label']:<10} {t}\n{'':<10} {shown}{note}\n")
    if stream is not None:
        stream.flush()
    return results


def texts_to_classify(start):
    """--start as texts: one text, or FILE:path with one text per line (blank lines skipped)."""
    if start.startswith("FILE:"):
        texts = [line.strip() for line in read_start(start).splitlines() if line.strip()]
    else:
        texts = [start.strip()] if start.strip() else []
    if not texts:
        raise SampleError(f"nothing to classify in --start={start!r}: give "
                          f"--start=\"some text\" or --start=FILE:texts.txt with one text per line")
    return texts


def classify(out_dir, start, device="auto", dtype="auto", checkpoint="best", stream=None):
    """Load out_dir's classifier and label --start's text(s) (see texts_to_classify),
    or a list of texts."""
    device = get_device(device)
    model, tokenizer, ckpt, path = load(out_dir, checkpoint, device)
    if not model.config.n_classes:
        raise SampleError(f"{path} is a language model, not a classifier: use sample()")
    texts = texts_to_classify(start) if isinstance(start, str) else list(start)
    cast_for_inference(model, inference_dtype(dtype, device))
    return label(model, tokenizer, ckpt["data"]["meta"]["label_names"], texts, stream)


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help(__doc__, SampleConfig, note="Keys (defaults shown):")
        return 0
    try:
        cfg = parse_args(argv)
        device = get_device(cfg.device)
        model, tokenizer, ckpt, path = load(cfg.out_dir, cfg.checkpoint, device)
        meta = ckpt["data"]["meta"]
        # to stderr, so that stdout holds nothing but the text (python sample.py > out.txt)
        print(f"{path}: step {ckpt['step']}, {model.num_params() / 1e6:.2f}M parameters, {device}",
              file=sys.stderr)
        if model.config.n_classes:
            texts = texts_to_classify(cfg.start)
            cast_for_inference(model, inference_dtype(cfg.dtype, device))
            label(model, tokenizer, meta["label_names"], texts, sys.stdout)
        else:
            cast_for_inference(model, inference_dtype(cfg.dtype, device, cfg.num_samples))
            generate(model, tokenizer, meta["vocab_size"], read_start(cfg.start), cfg.num_samples,
                     cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed,
                     sys.stdout, cfg.compile)
    except (SampleError, CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # python sample.py | head: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")  # so that the interpreter's own final flush stays silent
    return 0


if __name__ == "__main__":
    sys.exit(main())
