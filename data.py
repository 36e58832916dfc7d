"""
What a run reads of a prepared data set: data/NAME/ loaded and checked against its meta.json
(Data, load), its tokenizer, and the batches of training and evaluation. prepare.py builds what
this reads; nothing here downloads or builds a data set.

    d = load("wikitext2")                      # after `python prepare.py wikitext2`
    x, y = lm_batch(torch.from_numpy(d.tokens("train").astype(np.int64)), 8, 64, torch.Generator())
    tokens, offsets, labels = load("sst2").examples("val")
    x, mask, y = cls_batch(tokens, offsets, labels, range(32), max_len=64, pad_id=0, device="cpu")
"""
import errno
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import tiktoken
import torch

FORMAT_VERSION = 1  # meta.json's format_version: prepare.py writes it, Data reads no other
MIRROR_ENV = "TFS_DATA_MIRROR"  # a directory laid out like shared/data, for machines offline
SEED = 1337  # prepare.py's val carves, and the masks of masked-LM evaluation (evaluation.py)
# Every data set prepare.py builds, and its task: "lm" and "mlm" data sets are token streams,
# "cls" ones labelled examples. prepare.DATASETS says how each is built (it checks that it agrees).
TASKS = {"shakespeare_char": "lm", "shakespeare_bpe": "lm", "wikitext2": "lm", "sst2": "cls",
         "trec": "cls", "mlm_corpus": "mlm", "sst2_shared": "cls", "trec_shared": "cls"}


class DataError(RuntimeError):
    """A data problem the user can fix (missing files, bad checksum, failed download)."""


def check_name(name):
    if name not in TASKS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(TASKS)}")

# -----------------------------------------------------------------------------
# files: every file of ours is written through write_atomic (checkpoints, results, meta.json), or,
# for a data set's token files, synced the same way before the meta.json that names them is written


def write_atomic(path, data):
    """Write data to path through a temporary file in the same directory and a rename, so a reader
    or a crash never sees half a file. data is bytes, text (written as UTF-8), or a function that
    writes to the open binary file it is given (torch.save, for checkpoints). The file is synced to
    the disk (fsync) before the rename and its directory after it, so that after a power cut the
    name holds the old file or the whole new one. A failure leaves no temporary file, and the old
    file if it came before the rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
        sync_directory(path.parent)
    except OSError as e:  # name the file meant, not the temporary one
        if e.errno is None:
            raise
        raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_synced(path, data):
    """Write data (as write_atomic takes it) to path and fsync it: the first half of write_atomic,
    for a caller that renames several files itself (prepare.py: a data set's files, then its
    meta.json)."""
    with open(path, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


def sync_directory(path):
    """fsync a directory, so that a rename in it survives a power cut. Skipped where directories
    cannot be opened (Windows) or synced (some file systems say EINVAL)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


# what Data reads of meta.json; prepare.py rebuilds a data set whose meta.json lacks one
META_KEYS = ("format_version", "task", "files", "splits", "dtype", "tokenizer", "vocab_size")


def meta_digest(meta):
    """sha256 of meta.json's own contents (all but this field): a value changed in place, say a
    character of the tokenizer, is found on load rather than decoding every sample differently.
    Data sets prepared before it existed have none and are read as they are."""
    return hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"},
                                     sort_keys=True, ensure_ascii=False).encode()).hexdigest()

# -----------------------------------------------------------------------------
# tokenizers: one class, configured entirely by meta.json["tokenizer"]


# split_words: the PTB conventions SST-2 and TREC were tokenized with, as few rules as cover them
_NT = re.compile(r"(\w)n't\b")  # don't -> do n't, can't -> ca n't
_CLITIC = re.compile(r"(\w)'(s|re|ve|ll|d|m)\b")  # it's -> it 's
# not 10,000; the lookahead (?=...) makes it 4x faster
_PUNCT = re.compile(r"(?=[;()!?,])([;()]|[!?]+|,(?!\d)|(?<!\d),)")
# a sentence's final period, but not that of u.s. or of the abbreviations listed
_PERIOD = re.compile(
    r"(?<!\S)(?!(?:mrs?|ms|dr|st|jr|vs|no|etc|inc|co|bros|al)\.)([^\s.]{2,})\.(?!\S)")


def split_words(text):
    """Lower-case and split like SST-2 / TREC (PTB style), so user text meets the data's
    vocabulary: "Don't stop, it's GREAT!" -> do n't stop , it 's great !  The data themselves are
    already tokenized and pass through unchanged but for 0.02% of the examples (sept. 11 ->
    sept . 11 and the like)."""
    t = text.lower().replace("\u2019", "'")
    if "'" in t:
        t = _CLITIC.sub(r"\1 '\2", _NT.sub(r"\1 n't", t))
    if '"' in t:
        t = re.sub(r'(^|\s)"', r"\1`` ", t).replace('"', " '' ")  # PTB quotes
    t = _PUNCT.sub(r" \1 ", t)
    return (_PERIOD.sub(r"\1 .", t) if "." in t else t).split()


def _tiktoken(name):
    # tiktoken fetches its BPE files on first use; offline it needs TIKTOKEN_CACHE_DIR (shared/data
    # has one)
    mirror = os.environ.get(MIRROR_ENV)
    if ("TIKTOKEN_CACHE_DIR" not in os.environ and mirror
            and (Path(mirror) / "tiktoken_cache").is_dir()):
        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(mirror) / "tiktoken_cache")
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:
        raise DataError(f"tiktoken could not load encoding {name!r} ({e}); offline, set "
                        f"TIKTOKEN_CACHE_DIR to shared/data/tiktoken_cache") from e


class Tokenizer:
    """kind "char": one id per character. kind "tiktoken": a named BPE encoding. kind "word": a
    vocabulary list; with "unk" (classification) text goes through split_words, unknown words
    become <unk> and <cls> leads; without (WikiText) words are split on whitespace, every newline
    is <eos>, unknown words raise."""

    def __init__(self, spec):
        self.spec, self.kind = spec, spec["kind"]
        if self.kind == "tiktoken":
            self.enc = _tiktoken(spec["encoding"])
            self.vocab_size = self.enc.n_vocab
            return
        self.itos = list(spec["chars"]) if self.kind == "char" else list(spec["vocab"])
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode(self, text):
        if self.kind == "tiktoken":
            return self.enc.encode_ordinary(text)
        if "unk" in self.spec:
            return self.encode_words(split_words(text))
        if self.kind == "char":
            pieces = text
        else:  # "a b\nc" -> a b <eos> c: a whole WikiText file encodes to exactly its token stream
            pieces = []
            for k, line in enumerate(text.split("\n")):
                if k:
                    pieces.append(self.spec["eos"])
                pieces.extend(line.split())
        bad = sorted(set(pieces) - self.stoi.keys())
        if bad:
            raise ValueError(f"cannot encode {len(bad)} symbol(s) not in the vocabulary of "
                             f"{self.vocab_size}: {bad[:20]}{' ...' if len(bad) > 20 else ''}")
        return [self.stoi[p] for p in pieces]

    def encode_words(self, words):
        """Classification: <cls> then the words' ids, <unk> for words outside the (train)
        vocabulary."""
        unk = self.stoi[self.spec["unk"]]
        return [self.stoi[self.spec["cls"]]] + [self.stoi.get(w, unk) for w in words]

    def decode(self, ids):
        ids = [int(i) for i in ids]
        if self.kind == "tiktoken":
            return self.enc.decode(ids)
        if self.kind == "char":
            return "".join(self.itos[i] for i in ids)
        if "unk" in self.spec:
            skip = {self.stoi[self.spec["pad"]], self.stoi[self.spec["cls"]]}
            return " ".join(self.itos[i] for i in ids if i not in skip)
        # WikiText's own layout: " w1 w2 \n" per line, so decode(encode(file)) == file
        eos = self.spec["eos"]
        return "".join(" \n" if self.itos[i] == eos else " " + self.itos[i] for i in ids)

# -----------------------------------------------------------------------------
# loading: what train.py, evaluation.py, sample.py and plot.py use


class Data:
    """A prepared data set: meta.json (checked against its own sha256), tokenizer and split files
    (checked by size and sha256 on load: bytes changed in place, not only truncation; ~10 ms for
    WikiText-2)."""

    def __init__(self, name, data_dir="data"):
        check_name(name)
        self.name, self.dir = name, Path(data_dir) / name
        cmd = f"python prepare.py {name}" + (f" --data_dir {data_dir}"
                                             if str(data_dir) != "data" else "")
        try:
            self.meta = json.loads((self.dir / "meta.json").read_text())
            self.task, version = self.meta["task"], self.meta["format_version"]
            sizes = {f: (int(info["bytes"]), info["sha256"])
                     for f, info in self.meta["files"].items()}
            self.splits = tuple(self.meta["splits"])
            self.dtype = np.dtype(self.meta["dtype"])
            tokenizer, self.vocab_size = self.meta["tokenizer"], self.meta["vocab_size"]
            intact = self.meta.get("sha256", meta_digest(self.meta)) == meta_digest(self.meta)
        except FileNotFoundError:
            raise DataError(f"{self.dir / 'meta.json'} not found: run `{cmd}`") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{self.dir / 'meta.json'} is unreadable ({e!r}): "
                            f"run `{cmd} --force`") from None
        if version != FORMAT_VERSION:
            raise DataError(f"{self.dir} has format version {version}, this code reads "
                            f"{FORMAT_VERSION}: run `{cmd} --force`")
        if not intact:
            raise DataError(f"{self.dir / 'meta.json'} was changed after it was written (its "
                            f"sha256 does not match): run `{cmd} --force`")
        for f, (want, sha) in sizes.items():
            size = (self.dir / f).stat().st_size if (self.dir / f).exists() else None
            if size != want:
                raise DataError(f"{self.dir / f} is missing or has {size} bytes, expected "
                                f"{want:,}: run `{cmd} --force`")
            if hashlib.sha256((self.dir / f).read_bytes()).hexdigest() != sha:
                raise DataError(f"{self.dir / f} is damaged (its sha256 does not match "
                                f"meta.json): run `{cmd} --force`")
        self.tokenizer = Tokenizer(tokenizer)
        self.label_names = self.meta.get("label_names", [])
        self.n_classes = len(self.label_names)
        self.pad_id, self.eos_id = self.meta.get("pad_id"), self.meta.get("eos_id")
        self.mask_id = self.meta.get("mask_id")

    def __repr__(self):
        counts = {s: m.get("examples", m["tokens"]) for s, m in self.meta["splits"].items()}
        return (f"Data({self.name!r}, task={self.task!r}, vocab_size={self.vocab_size}, "
                f"splits={counts})")

    def encode(self, text):
        return self.tokenizer.encode(text)

    def decode(self, ids):
        return self.tokenizer.decode(ids)

    def _split(self, split, task):
        if (self.task == "cls") != (task == "cls"):  # lm and mlm data sets are both token streams
            use = "examples(split)" if self.task == "cls" else "tokens(split)"
            raise DataError(f"{self.name} is a {self.task} data set: use {use}")
        if split not in self.splits:
            raise DataError(f"{self.name} has no split {split!r}; it has {', '.join(self.splits)}")

    def tokens(self, split):
        """The whole split as a read-only memmap of token ids (lm and mlm data sets)."""
        self._split(split, "lm")
        return np.memmap(self.dir / f"{split}.bin", dtype=self.dtype, mode="r")

    def examples(self, split):
        """(tokens memmap, offsets int64 n+1, labels int64 n): example i is
        tokens[offsets[i]:offsets[i+1]]."""
        self._split(split, "cls")
        return (np.memmap(self.dir / f"{split}.bin", dtype=self.dtype, mode="r"),
                np.fromfile(self.dir / f"{split}.offsets.bin", dtype=np.int64),
                np.fromfile(self.dir / f"{split}.labels.bin", dtype=np.int64))


def load(name, data_dir="data"):
    return Data(name, data_dir)

# -----------------------------------------------------------------------------
# batches (torch in, torch out; train.py keeps a split as one int64 tensor on the device)


def lm_batch(data, batch_size, block_size, generator):
    """Random windows: x = data[o:o+T], y = data[o+1:o+T+1], with o+T < len(data) so y never
    runs off."""
    n_starts = len(data) - block_size
    if n_starts < 1:
        raise ValueError(f"a split of {len(data)} tokens is too short for block_size={block_size}")
    o = torch.randint(n_starts, (batch_size,), generator=generator,
                      device=generator.device).to(data.device)
    idx = o[:, None] + torch.arange(block_size, device=data.device)  # (B, T); beats a Python loop
    return data[idx].long(), data[idx + 1].long()


# BERT: 15% of the tokens are chosen; of those 80% -> <mask>, 10% -> a random word, 10% kept
MLM_RATE = 0.15
MLM_SPECIALS = 4  # ids below this (<pad> <unk> <cls> <mask>) are never chosen nor drawn as words


def mlm_mask(x, mask_id, vocab_size, generator, rate=MLM_RATE):
    """BERT's masked-LM corruption (Devlin et al. 2019, 3.1) of token ids x (B, T): returns
    (x', y) with y = x at the chosen positions, -1 elsewhere. The random draws come from generator
    (on the CPU), so the masks are a function of its seed alone."""
    u, r = torch.rand(x.shape, generator=generator), torch.rand(x.shape, generator=generator)
    words = torch.randint(MLM_SPECIALS, vocab_size, x.shape, generator=generator)
    u, r, words = u.to(x.device), r.to(x.device), words.to(x.device)
    chosen = (u < rate) & (x >= MLM_SPECIALS)
    y = torch.where(chosen, x, -1)
    x = torch.where(chosen & (r < 0.8), mask_id, torch.where(chosen & (r >= 0.9), words, x))
    return x, y


def lm_eval_batches(data, batch_size, block_size, stride=0):
    """Every target data[1:] exactly once, as batches (x, y) of windows of block_size tokens;
    y = -1 where a position is not scored. Exact loss = sum of token losses / (len(data) - 1).

    stride=0: consecutive non-overlapping windows (the last one padded with x = 0, y = -1), so a
    token sees on average half a window of context (nanoGPT's protocol).
    0 < stride <= block_size: a sliding window moved stride tokens at a time, scoring only the
    stride newest targets of each window (the first window scores all of its own), so every target
    after the first window sees at least block_size - stride + 1 tokens; stride=1 is full
    context."""
    n_targets = len(data) - 1
    if not stride:
        step = batch_size * block_size
        for s in range(0, n_targets, step):
            e = min(s + step, n_targets)
            rows = -(-(e - s) // block_size)
            x = torch.zeros(rows * block_size, dtype=torch.long, device=data.device)
            y = torch.full_like(x, -1)
            x[:e - s], y[:e - s] = data[s:e], data[s + 1:e + 1]
            yield x.view(rows, block_size), y.view(rows, block_size)
        return
    if not 0 < stride <= block_size:
        raise ValueError(f"stride={stride} must be in [1, block_size={block_size}], or 0 for "
                         f"separate windows")
    # scored target ranges [lo, hi): the first window's, then stride at a time
    his = torch.tensor([min(block_size, n_targets)]
                       + list(range(block_size + stride, n_targets, stride))
                       + ([n_targets] if n_targets > block_size else []))
    los = torch.cat([torch.zeros(1, dtype=torch.long), his[:-1]])
    starts = (his - block_size).clamp(min=0)  # each window ends at its last scored target
    offsets = torch.arange(block_size)
    for b in range(0, len(his), batch_size):
        # (rows, block_size) target index
        pos = (starts[b:b + batch_size, None] + offsets).to(data.device)
        lo, hi = (los[b:b + batch_size, None].to(data.device),
                  his[b:b + batch_size, None].to(data.device))
        inside = pos < n_targets
        x = torch.where(inside, data[pos.clamp(max=n_targets - 1)], 0)
        y = torch.where(inside & (pos >= lo) & (pos < hi), data[(pos + 1).clamp(max=n_targets)],
                        -1)
        yield x, y


# Classifier batches are right-padded to the first of these lengths that holds their longest
# example (capped at max_len), not to that example's own length, so that their shapes come from a
# short fixed list: config/sst2.py's training batches take 4 lengths an epoch (24, 32, 48, 64)
# where padding to the longest made 32, config/trec.py's 4 rather than 22. What records or compiles
# one graph per shape (CUDA graphs, compile_mode='reduce-overhead', a static compile) then does so
# a handful of times. Steps of 8 up to 32 keep short texts cheap, then of a half or a third.
# Padding is masked (attention keys, pooling), so outputs change by float rounding only; the price
# is the padded tokens' compute: 1.22x (SST-2) and 1.17x (TREC) the tokens of padding to the
# longest, about 30% a step on a CPU (docs/PERFORMANCE.md). range(1, 2**20) pads to the longest.
PAD_LENGTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def pad_length(longest, max_len):
    """The length a batch is padded to when its longest example has `longest` <= max_len tokens."""
    return min(next((n for n in PAD_LENGTHS if n >= longest), max_len), max_len)


def cls_lengths(max_len):
    """Every length a classifier batch of at most max_len tokens is padded to (pad_length)."""
    return sorted({pad_length(n, max_len) for n in range(1, max_len + 1)})


def cls_batches_of_every_length(batch, max_len, pad_id):
    """The batch (x, mask, y) cut or padded to each of cls_lengths(max_len): examples of every
    shape training will see, for recording one CUDA graph per shape (parallel.GraphedStep)."""
    x, mask, y = batch
    out = []
    for n in cls_lengths(max_len):
        keep = min(n, x.size(1))
        xn = torch.full((x.size(0), n), pad_id, dtype=x.dtype, device=x.device)
        mn = torch.zeros((x.size(0), n), dtype=mask.dtype, device=mask.device)
        xn[:, :keep], mn[:, :keep] = x[:, :keep], mask[:, :keep]
        out.append((xn, mn, y))
    return out


def cls_batch(tokens, offsets, labels, idx, max_len, pad_id, device):
    """Examples idx, cut to max_len (the start, with <cls>, is kept) and right-padded to
    pad_length() of the longest one. Returns x (B, L) int64, mask (B, L) bool (True = real token),
    y (B,) int64, all on device."""
    idx = [int(i) for i in idx]
    seqs = [np.asarray(tokens[offsets[i]:offsets[i + 1]][:max_len], dtype=np.int64) for i in idx]
    x = np.full((len(seqs), pad_length(max(len(s) for s in seqs), max_len)), pad_id, dtype=np.int64)
    mask = np.zeros(x.shape, dtype=bool)
    for r, s in enumerate(seqs):
        x[r, :len(s)], mask[r, :len(s)] = s, True
    y = np.asarray(labels[idx], dtype=np.int64)
    x, mask = torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)
    # The length changes from batch to batch by design, so tell torch.compile: otherwise it
    # compiles the first length as a constant, then everything again, the length symbolic, when a
    # second one comes (2 graphs, however the batches are padded; 1 with the mark: 65 s -> 43 s
    # for config/sst2.py's model on a CPU, docs/PERFORMANCE.md). Eager code ignores the mark.
    # Only where the compiler is loaded: importing it costs a process about a second, and nothing
    # can be compiling where it is not.
    if "torch._dynamo" in sys.modules:
        torch._dynamo.maybe_mark_dynamic(x, 1)
        torch._dynamo.maybe_mark_dynamic(mask, 1)
    return x, mask, torch.from_numpy(y).to(device)


def cls_eval_batches(tokens, offsets, labels, batch_size, max_len, pad_id, device):
    """Every example once, in order."""
    n = len(offsets) - 1
    for s in range(0, n, batch_size):
        yield cls_batch(tokens, offsets, labels, range(s, min(s + batch_size, n)), max_len,
                        pad_id, device)
