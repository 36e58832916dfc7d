"""
Download, verify and tokenize the data sets into data/NAME/: token memmaps plus meta.json.

    python prepare.py --list                                    # what exists, sizes, sources
    python prepare.py shakespeare_char                          # download (cached), verify, tokenize
    python prepare.py wikitext2 --source ../shared/data         # offline: a local mirror, dir, file or URL
    TFS_DATA_MIRROR=../shared/data python prepare.py sst2       # same, for machines with no internet

Data sets (split names are always train / val / test, whichever exist):
- shakespeare_char  Tiny Shakespeare, one token per character (the 65 characters of the file), nanoGPT's
                    split: first 90% of the characters train, last 10% val -> 1,003,854 / 111,540 tokens.
- shakespeare_bpe   the same split, GPT-2 BPE (tiktoken "gpt2", encode_ordinary) -> 301,966 / 36,059.
- wikitext2         WikiText-2 wikitext-2-v1 (already <unk>-closed), words split on whitespace and <eos>
                    appended to every line, vocabulary over all splits (33,278), exactly as pytorch/examples
                    word_language_model counts: 2,088,628 / 217,646 / 245,569. This is the setup of the
                    published LSTM / AWD-LSTM perplexities. val = wiki.valid.tokens.
- sst2              GLUE SST-2, binary. test = GLUE dev.tsv (872; GLUE's own test labels are withheld).
                    val is carved out of train without leaking: train holds every sentence *and* its
                    sub-phrases, so a random split would put phrases of val sentences in train. We find the
                    full sentences (examples that are not a word span of another example, 6,885), hold out
                    1,000 of them (seed 1337) as val, and drop from train every example that is a word span
                    of a held-out sentence (10,315 phrases). train = 56,034, val = 1,000.
- trec              TREC-6 question classification (6 coarse classes), test = TREC_10.label (500). val is a
                    10% stratified sample of the distinct training questions (seed 1337); all copies of a
                    held-out question go to val, so no question is in both: train 4,904, val 548.
                    train_5500.label holds one Latin-1 byte ("sister\\xf0city"), so it is read as Latin-1.

Classification vocabularies are words of the train split seen at least twice (so <unk> occurs in training),
ids 0 <pad>, 1 <unk>, 2 <cls>; every example starts with <cls>. Text goes through split_words(): lower-case
plus the few PTB rules that SST-2 / TREC were tokenized with, the same function for the data and user text.

Output in data/NAME/: {split}.bin raw token ids (uint16, uint32 if an id exceeds 65,535); for classification
also {split}.offsets.bin (int64, n+1) and {split}.labels.bin (int64). meta.json (written last, it marks a
complete data set) holds the tokenizer, counts, label names and sha256 of every source and output file.
Raw sources are cached, verified, in data/_downloads/ laid out like the mirror. Use it from Python:
    d = load("wikitext2"); train = torch.from_numpy(d.tokens("train").astype(np.int64))
    x, y = lm_batch(train, batch_size=8, block_size=64, generator=torch.Generator().manual_seed(0))
"""
import argparse
import hashlib
import json
import os
import random
import re
import sys
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests
import tiktoken
import torch
from tqdm import tqdm

FORMAT_VERSION = 1
MIRROR_ENV = "TFS_DATA_MIRROR"  # a directory laid out like shared/data, for machines without internet
SEED = 1337
MIN_COUNT = 2  # classification vocab: train words seen at least twice; singletons become <unk> in training
SPECIALS = ["<pad>", "<unk>", "<cls>"]

# Pinned sources: mirror-relative path -> (canonical URL, sha256 of the file). See shared/data/SOURCES.md.
# "URL#member" names a file inside a zip archive; the member's sha256 is what we check (the zip's md5 from
# GLUE is 9f81648d4199384278b86e315dac217c, but a re-zipped mirror would differ, the members would not).
_WT2 = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
_SST2 = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip#SST-2/"
_TREC = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
SOURCES = {
    "tinyshakespeare/input.txt": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    # pytorch/examples ships wikitext-2-v1's wiki.*.tokens byte for byte; the original S3 zip is often gone
    "wikitext-2/wiki.train.tokens": (_WT2 + "train.txt",
                                     "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
    "wikitext-2/wiki.valid.tokens": (_WT2 + "valid.txt",
                                     "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
    "wikitext-2/wiki.test.tokens": (_WT2 + "test.txt",
                                    "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    "sst2/train.tsv": (_SST2 + "train.tsv", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    "sst2/dev.tsv": (_SST2 + "dev.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
    "trec/train_5500.label": (_TREC + "train_5500.label",
                              "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
    "trec/TREC_10.label": (_TREC + "TREC_10.label",
                           "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e"),
}


class DataError(RuntimeError):
    """A data problem the user can fix (missing files, bad checksum, failed download)."""


def log(msg, quiet=False):
    if not quiet:
        print(msg, flush=True)


def _check(data, sha, what):
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise DataError(f"checksum mismatch for {what}: sha256 {actual}, expected {sha} "
                        f"(a truncated or different file; fetch it again or check --source)")
    return data

# -----------------------------------------------------------------------------
# fetching: cache, local mirror, --source path or URL; everything is checked against SOURCES


def _download(url, dest, quiet):
    """Stream url into dest + '.part' and return that path; the caller renames it once it checks out."""
    tmp = dest.with_name(dest.name + ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    try:
        with requests.get(url, stream=True, timeout=30) as r:
            if r.status_code != 200:
                raise DataError(f"download failed: {url} answered HTTP {r.status_code} {r.reason}")
            total = int(r.headers.get("Content-Length", 0)) or None
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                       disable=quiet or not sys.stderr.isatty())
            with open(tmp, "wb") as f, bar:
                for chunk in r.iter_content(1 << 16):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if total is not None and got != total:  # requests usually raises first; belt and braces
            raise DataError(f"download of {url} stopped after {got:,} of {total:,} bytes")
        return tmp
    except requests.RequestException as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed after {got:,} bytes: {e}; without internet pass "
                        f"--source PATH or set {MIRROR_ENV} to a local copy of shared/data") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fetch_url(url, rel, dest, quiet):
    """Download one source into the cache file dest, checked before it is renamed into place."""
    _, sha = SOURCES[rel]
    base, _, member = url.partition("#")
    if not member:
        tmp = _download(url, dest, quiet)
        try:
            data = _check(tmp.read_bytes(), sha, url)
        except DataError:
            tmp.unlink()
            raise
        os.replace(tmp, dest)
        return data
    # a member of a zip: keep the archive next to the cache so its other members need no second download
    zpath = dest.parent / Path(urlparse(base).path).name
    if not zpath.exists():
        os.replace(_download(base, zpath, quiet), zpath)
    try:
        with zipfile.ZipFile(zpath) as z:
            data = _check(z.read(member), sha, url)
    except (zipfile.BadZipFile, KeyError, DataError) as e:
        zpath.unlink()  # a bad archive must not stick in the cache
        raise DataError(f"{base} ({zpath}) is not a zip holding a good {member}: {e}") from e
    write_atomic(dest, data)
    return data


def _read_local(path, rel):
    if path.suffix == ".zip":  # e.g. --source SST-2.zip
        member = SOURCES[rel][0].partition("#")[2] or Path(rel).name
        try:
            with zipfile.ZipFile(path) as z:
                data = z.read(member)
        except (zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"--source {path}: no member {member} ({e})") from e
        return _check(data, SOURCES[rel][1], f"{path}#{member}")
    return _check(path.read_bytes(), SOURCES[rel][1], str(path))


def fetch(name, source=None, data_dir="data", quiet=False):
    """Return {mirror-relative path: verified bytes} for every source file of data set `name`.

    source: None (TFS_DATA_MIRROR if set, else the cache in data_dir/_downloads, else the canonical URL),
    a URL (the file itself for one-file data sets, else a base URL holding the canonical file names),
    or a local path: the file itself, a directory holding the canonical file names, or a mirror root."""
    rels = DATASETS[name]["sources"]
    from_env = source is None and bool(os.environ.get(MIRROR_ENV))
    if from_env:
        source = os.environ[MIRROR_ENV]
    out = {}
    for rel in rels:
        url, sha = SOURCES[rel]
        if source is None:  # canonical URL through the cache: a second run verifies and skips
            dest = Path(data_dir) / "_downloads" / rel
            data = dest.read_bytes() if dest.exists() else b""
            if hashlib.sha256(data).hexdigest() == sha:
                log(f"cached {dest} (sha256 ok)", quiet)
                out[rel] = data
            else:
                log(f"fetching {url}", quiet)
                out[rel] = _fetch_url(url, rel, dest, quiet)
        elif re.match(r"https?://", str(source)):
            s = str(source)
            if s.endswith(".zip") and "#" in url:
                s += "#" + url.partition("#")[2]
            elif len(rels) > 1:
                s = s.rstrip("/") + "/" + Path(rel).name
            log(f"fetching {s}", quiet)
            out[rel] = _fetch_url(s, rel, Path(data_dir) / "_downloads" / rel, quiet)
        else:
            p = Path(source)
            what = f"${MIRROR_ENV}={source}" if from_env else f"--source {source}"
            if not p.exists():
                raise DataError(f"{what}: no such file or directory")
            if p.is_file() and len(rels) > 1 and p.suffix != ".zip":
                raise DataError(f"{what} is a file, but {name} needs {len(rels)} files "
                                f"({', '.join(Path(r).name for r in rels)}): pass the directory holding them")
            tried = [p] if p.is_file() else [p / rel, p / Path(rel).name]
            found = next((c for c in tried if c.is_file()), None)
            if found is None:
                raise DataError(f"{what}: {Path(rel).name} not found (looked for {', '.join(map(str, tried))})")
            out[rel] = _read_local(found, rel)
            log(f"read {found} (sha256 ok)", quiet)
    return out

# -----------------------------------------------------------------------------
# tokenizers: one class, configured entirely by meta.json["tokenizer"]


# split_words: the PTB conventions SST-2 and TREC were tokenized with, as few rules as cover them
_NT = re.compile(r"(\w)n't\b")                                     # don't -> do n't, can't -> ca n't
_CLITIC = re.compile(r"(\w)'(s|re|ve|ll|d|m)\b")                   # it's -> it 's
_PUNCT = re.compile(r"(?=[;()!?,])([;()]|[!?]+|,(?!\d)|(?<!\d),)")    # not 10,000; (?=...) is 4x faster
_PERIOD = re.compile(r"(?<!\S)(?!(?:mrs?|ms|dr|st|jr|vs|no|etc|inc|co|bros|al)\.)([^\s.]{2,})\.(?!\S)")  # not u.s.


def split_words(text):
    """Lower-case and split like SST-2 / TREC (PTB style), so user text meets the data's vocabulary:
    "Don't stop, it's GREAT!" -> do n't stop , it 's great !  The data themselves are already tokenized
    and pass through unchanged but for 0.02% of the examples (sept. 11 -> sept . 11 and the like)."""
    t = text.lower().replace("\u2019", "'")
    if "'" in t:
        t = _CLITIC.sub(r"\1 '\2", _NT.sub(r"\1 n't", t))
    if '"' in t:
        t = re.sub(r'(^|\s)"', r"\1`` ", t).replace('"', " '' ")  # PTB quotes
    t = _PUNCT.sub(r" \1 ", t)
    return (_PERIOD.sub(r"\1 .", t) if "." in t else t).split()


def _tiktoken(name):
    # tiktoken fetches its BPE files on first use; offline it needs TIKTOKEN_CACHE_DIR (shared/data has one)
    mirror = os.environ.get(MIRROR_ENV)
    if "TIKTOKEN_CACHE_DIR" not in os.environ and mirror and (Path(mirror) / "tiktoken_cache").is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(mirror) / "tiktoken_cache")
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:
        raise DataError(f"tiktoken could not load encoding {name!r} ({e}); offline, set "
                        f"TIKTOKEN_CACHE_DIR to shared/data/tiktoken_cache") from e


class Tokenizer:
    """kind "char": one id per character. kind "tiktoken": a named BPE encoding. kind "word": a vocabulary
    list; with "unk" (classification) text goes through split_words, unknown words become <unk> and <cls>
    leads; without (WikiText) words are split on whitespace, every newline is <eos>, unknown words raise."""

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
        else:  # "a b\nc" -> a b <eos> c: encoding a whole WikiText file gives exactly its token stream
            pieces = []
            for k, line in enumerate(text.split("\n")):
                if k:
                    pieces.append(self.spec["eos"])
                pieces.extend(line.split())
        bad = sorted(set(pieces) - self.stoi.keys())
        if bad:
            raise ValueError(f"cannot encode {len(bad)} symbol(s) not in the vocabulary of {self.vocab_size}: "
                             f"{bad[:20]}{' ...' if len(bad) > 20 else ''}")
        return [self.stoi[p] for p in pieces]

    def encode_words(self, words):
        """Classification: <cls> then the words' ids, <unk> for words outside the (train) vocabulary."""
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
# builders: verified source bytes -> tokenizer spec and token ids per split


def build_shakespeare(raw, bpe):
    text = raw["tinyshakespeare/input.txt"].decode("utf-8")
    n = len(text)
    parts = {"train": text[:int(n * 0.9)], "val": text[int(n * 0.9):]}  # nanoGPT's split, so results compare
    spec = {"kind": "tiktoken", "encoding": "gpt2"} if bpe else {"kind": "char", "chars": "".join(sorted(set(text)))}
    tok = Tokenizer(spec)
    return dict(tokenizer=spec, splits={k: tok.encode(v) for k, v in parts.items()},
                notes="nanoGPT split: train = text[:int(n*0.9)], val = the rest (characters)")


def build_wikitext2(raw):
    texts = {s: raw[f"wikitext-2/wiki.{f}.tokens"].decode("utf-8")
             for s, f in [("train", "train"), ("val", "valid"), ("test", "test")]}
    # ids in order of first appearance over train, valid, test: the same ids as pytorch/examples
    vocab = {}
    for text in texts.values():
        for line in text.splitlines():
            for w in line.split() + ["<eos>"]:
                vocab.setdefault(w, len(vocab))
    spec = {"kind": "word", "vocab": list(vocab), "eos": "<eos>"}
    tok = Tokenizer(spec)
    return dict(tokenizer=spec, splits={s: tok.encode(t) for s, t in texts.items()}, eos_id=vocab["<eos>"],
                notes="val = wiki.valid.tokens; whitespace words + <eos> per line; vocabulary over all splits")


def _word_spans(s):
    """Every contiguous word span of a space-joined sentence, as strings."""
    starts = [0] + [m.end() for m in re.finditer(" ", s)]
    ends = [m.start() for m in re.finditer(" ", s)] + [len(s)]
    return {s[b:e] for i, b in enumerate(starts) for e in ends[i:]}


def _sst2_splits(raw, n_val=1000):
    """(train, val, test) rows of (text, label), and the notes and carve record of how val was made."""
    def rows(rel):  # "sentence \tlabel" after a header; normalise the trailing space away
        lines = raw[rel].decode("utf-8").split("\n")[1:]
        return [(" ".join(s.split()), int(y)) for s, y in (ln.rsplit("\t", 1) for ln in lines if ln)]
    train = rows("sst2/train.tsv")
    test = rows("sst2/dev.tsv") if "sst2/dev.tsv" in raw else []  # the pretraining corpus never reads it
    # Full sentences are the examples that are no word span of another one. Longest first, a sentence that
    # is not yet covered is maximal, and only maximal sentences need their spans listed (~1 s, not minutes).
    texts = set(t for t, _ in train)
    covered, full = set(), []
    for t in sorted(texts, key=lambda t: (-t.count(" "), t)):
        if t not in covered:
            full.append(t)
            covered |= (_word_spans(t) - {t}) & texts
    held = set(random.Random(SEED).sample(sorted(full), n_val))
    leaks = set().union(*(_word_spans(t) for t in held)) & texts
    val, kept, dropped = [], [], 0
    for t, y in train:
        if t in held and t not in {v for v, _ in val}:
            val.append((t, y))
        elif t in leaks:  # includes a second copy of a held-out sentence
            dropped += 1
        else:
            kept.append((t, y))
    notes = (f"test = GLUE dev.tsv. val = {len(val)} of the {len(full)} full training sentences (examples "
             f"that are no word span of another), random seed {SEED}; {dropped} training examples that are "
             f"word spans of a val sentence were dropped so val does not leak into train")
    carve = {"method": "held-out full sentences, their sub-phrases dropped", "seed": SEED,
             "full_sentences": len(full), "val": len(val), "dropped_from_train": dropped}
    return (kept, val, test), notes, carve


def build_sst2(raw, vocab=None):
    splits, notes, carve = _sst2_splits(raw)
    return dict(_build_cls(*splits, vocab=vocab), label_names=["negative", "positive"], notes=notes, carve=carve)


TREC_LABELS = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]  # coarse classes in the order Hugging Face uses


def _trec_splits(raw, val_frac=0.1):
    """(train, val, test) rows of (question, label), and the notes and carve record of how val was made."""
    names = TREC_LABELS

    def rows(rel):  # "DESC:manner How did ... ?"; train_5500.label is Latin-1 (one 0xF0 byte)
        lines = raw[rel].decode("latin-1").splitlines()
        return [(q, names.index(lab.split(":")[0])) for lab, q in (ln.split(" ", 1) for ln in lines)]
    train = rows("trec/train_5500.label")
    test = rows("trec/TREC_10.label") if "trec/TREC_10.label" in raw else []  # the pretraining corpus never reads it
    # stratified by class over distinct questions; 63 questions occur more than once and all copies go together
    rng, held = random.Random(SEED), set()
    for c in range(len(names)):
        qs = sorted({q for q, y in train if y == c})
        held |= set(rng.sample(qs, round(val_frac * len(qs))))
    val = [(q, y) for q, y in train if q in held]
    kept = [(q, y) for q, y in train if q not in held]
    notes = (f"test = TREC_10.label. val = {len(val)} examples: {val_frac:.0%} of the distinct training "
             f"questions of each class, seed {SEED}, all copies of a question on the same side")
    carve = {"method": "stratified by class over distinct questions", "seed": SEED,
             "fraction": val_frac, "val": len(val), "dropped_from_train": 0}
    return (kept, val, test), notes, carve


def build_trec(raw, vocab=None):
    splits, notes, carve = _trec_splits(raw)
    return dict(_build_cls(*splits, vocab=vocab), label_names=TREC_LABELS, notes=notes, carve=carve)


def _build_cls(train, val, test, vocab=None):
    """Word ids of every example, with the vocabulary of the train split's words seen at least
    MIN_COUNT times, or the given vocabulary spec (the shared one of the pretraining corpus)."""
    rows = {"train": train, "val": val, "test": test}
    words = {s: [split_words(t) for t, _ in r] for s, r in rows.items()}
    if vocab is None:
        counts = Counter(w for ws in words["train"] for w in ws)  # train only: val/test words stay unseen
        vocab = _word_spec(sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w)))
    tok = Tokenizer(vocab)
    # encode(text) == encode_words(split_words(text)); the words were split once above to save time
    splits = {s: ([tok.encode_words(ws) for ws in words[s]], [y for _, y in r]) for s, r in rows.items()}
    return dict(tokenizer=vocab, splits=splits, pad_id=0, unk_id=1, cls_id=2)


def _word_spec(words, specials=SPECIALS, **extra):
    return {"kind": "word", "vocab": specials + words, "pad": "<pad>", "unk": "<unk>", "cls": "<cls>",
            "split": "split_words (lower-case, PTB-like)", "min_count": MIN_COUNT, **extra}


# -----------------------------------------------------------------------------
# the pretraining corpus: the training text of every word-level data set, one shared vocabulary

MLM_SOURCES = ["wikitext-2/wiki.train.tokens", "sst2/train.tsv", "trec/train_5500.label"]


def _mlm_texts(raw):
    """The training texts only: WikiText-2's train lines, and the train sides of the SST-2 and TREC
    carves (never a val or test text of any benchmark)."""
    wiki = [ln for ln in raw["wikitext-2/wiki.train.tokens"].decode("utf-8").splitlines() if ln.strip()]
    sst2, _, _ = _sst2_splits(raw)
    trec, _, _ = _trec_splits(raw)
    return wiki + [t for t, _ in sst2[0]] + [t for t, _ in trec[0]]


def mlm_vocab(raw):
    """The shared word vocabulary: words of the pretraining texts seen MIN_COUNT times or more, most
    frequent first, after <pad> <unk> <cls> <mask>."""
    counts = Counter(w for t in _mlm_texts(raw) for w in split_words(t))
    words = sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return _word_spec(words, SPECIALS + ["<mask>"], mask="<mask>")


def build_mlm_corpus(raw, val_every=100):
    """A token stream of "<cls> text" per training text, every val_every-th text held out as val
    (for the masked-LM loss only: it is training text of the benchmarks, never their val or test)."""
    vocab = mlm_vocab(raw)
    tok = Tokenizer(vocab)
    texts = _mlm_texts(raw)
    parts = {"train": [], "val": []}
    for i, t in enumerate(texts):
        parts["val" if i % val_every == val_every - 1 else "train"].extend(tok.encode_words(split_words(t)))
    notes = (f"WikiText-2 train lines, SST-2 and TREC train-side texts ({len(texts):,} texts), each as <cls> + "
             f"words; every {val_every}th text is val; vocabulary: words seen >= {MIN_COUNT} times")
    return dict(tokenizer=vocab, splits=parts, pad_id=0, unk_id=1, cls_id=2, mask_id=3, notes=notes)


DATASETS = {
    "shakespeare_char": dict(task="lm", build=lambda raw: build_shakespeare(raw, bpe=False),
                             sources=["tinyshakespeare/input.txt"], size="1,003,854 / 111,540 tokens",
                             description="Tiny Shakespeare, characters"),
    "shakespeare_bpe": dict(task="lm", build=lambda raw: build_shakespeare(raw, bpe=True),
                            sources=["tinyshakespeare/input.txt"], size="301,966 / 36,059 tokens",
                            description="Tiny Shakespeare, GPT-2 BPE"),
    "wikitext2": dict(task="lm", build=build_wikitext2, size="2,088,628 / 217,646 / 245,569 tokens",
                      sources=[f"wikitext-2/wiki.{s}.tokens" for s in ("train", "valid", "test")],
                      description="WikiText-2 (v1), words + <eos>"),
    "sst2": dict(task="cls", build=build_sst2, sources=["sst2/train.tsv", "sst2/dev.tsv"],
                 size="56,034 / 1,000 / 872 examples", description="GLUE SST-2 sentiment, 2 classes"),
    "trec": dict(task="cls", build=build_trec, sources=["trec/train_5500.label", "trec/TREC_10.label"],
                 size="4,904 / 548 / 500 examples", description="TREC question type, 6 classes"),
    # masked-LM pretraining, and the two classification sets in its vocabulary (to fine-tune from it)
    "mlm_corpus": dict(task="mlm", build=build_mlm_corpus, sources=MLM_SOURCES,
                       size="train text of wikitext2, sst2, trec", description="pretraining corpus, shared words"),
    "sst2_shared": dict(task="cls", build=lambda raw: build_sst2(raw, mlm_vocab(raw)),
                        sources=MLM_SOURCES + ["sst2/dev.tsv"], size="56,034 / 1,000 / 872 examples",
                        description="SST-2 in mlm_corpus's vocabulary"),
    "trec_shared": dict(task="cls", build=lambda raw: build_trec(raw, mlm_vocab(raw)),
                        sources=MLM_SOURCES + ["trec/TREC_10.label"], size="4,904 / 548 / 500 examples",
                        description="TREC-6 in mlm_corpus's vocabulary"),
}

# -----------------------------------------------------------------------------
# writing: temp file + os.replace for every file, meta.json last


def write_atomic(path, data):
    """Write bytes (or text, as UTF-8) to path through a temporary file and a rename, so a reader
    or a crash never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:  # name the file meant, not the temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


META_KEYS = ("format_version", "task", "files", "splits", "dtype", "tokenizer", "vocab_size")


def meta_digest(meta):
    """sha256 of meta.json's own contents (all but this field): a value changed in place, say a
    character of the tokenizer, is found on load rather than decoding every sample differently.
    Data sets prepared before it existed have none and are read as they are."""
    return hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True,
                                     ensure_ascii=False).encode()).hexdigest()


def _up_to_date(out, name):
    try:
        meta = json.loads((out / "meta.json").read_text())
        want = {rel: SOURCES[rel][1] for rel in DATASETS[name]["sources"]}
        intact = all(hashlib.sha256((out / f).read_bytes()).hexdigest() == info["sha256"]
                     for f, info in meta["files"].items())
        complete = all(k in meta for k in META_KEYS)  # what Data reads; a meta.json without one is rebuilt
        return meta["format_version"] == FORMAT_VERSION and meta["sources"] == want and intact and complete \
            and meta.get("sha256", meta_digest(meta)) == meta_digest(meta)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _known(name):
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")


def prepare(name, source=None, data_dir="data", quiet=False, force=False):
    """Fetch, verify and tokenize data set `name` into data_dir/name; return that directory. Skips when
    meta.json and every output file's sha256 are intact (unless force)."""
    _known(name)
    existed = _dirs(data_dir)
    try:
        return _prepare(name, source, data_dir, quiet, force)
    except BaseException:  # a failed download or build leaves no empty directories behind
        for d in sorted(_dirs(data_dir) - existed, key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
        raise


def _dirs(root):
    root = Path(root)
    return {root, *(p for p in root.rglob("*") if p.is_dir())} if root.is_dir() else set()


def _prepare(name, source, data_dir, quiet, force):
    spec, out = DATASETS[name], Path(data_dir) / name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output directory {out}: {e}; pass --data_dir DIR somewhere writable") from e
    if not force and _up_to_date(out, name):
        log(f"{out} is up to date (all files match meta.json); --force rebuilds it", quiet)
        return out
    if source is not None and Path(source, "tiktoken_cache").is_dir():  # a mirror root also has the BPE files
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(source, "tiktoken_cache")))
    try:
        raw = fetch(name, source, data_dir, quiet)  # everything is verified before any output is touched
    except OSError as e:  # an unreadable --source file, a cache directory that cannot be written
        raise DataError(f"cannot read or cache the sources of {name}: {e}; check --source, or pass "
                        f"--data_dir DIR somewhere writable") from e
    built = spec["build"](raw)
    tok = built["tokenizer"]
    vocab_size = Tokenizer(tok).vocab_size
    ids, extra, splits_meta = {}, {}, {}  # token streams; offsets and labels (classification)
    for split, data in built["splits"].items():
        if spec["task"] in ("lm", "mlm"):  # token streams
            ids[split] = np.asarray(data, dtype=np.int64)
            splits_meta[split] = {"tokens": len(data)}
            continue
        seqs, labels = data
        ids[split] = np.fromiter((i for s in seqs for i in s), dtype=np.int64)
        extra[f"{split}.offsets.bin"] = np.cumsum([0] + [len(s) for s in seqs], dtype=np.int64)
        extra[f"{split}.labels.bin"] = np.asarray(labels, dtype=np.int64)
        splits_meta[split] = {"examples": len(seqs), "tokens": len(ids[split]),
                              "label_counts": np.bincount(labels, minlength=len(built["label_names"])).tolist()}
    # uint16 halves the memmaps; check the real maximum id before casting rather than trusting vocab_size
    dtype = np.uint16 if max(int(a.max()) for a in ids.values()) < 2**16 else np.uint32
    blobs = {f"{s}.bin": a.astype(dtype).tobytes() for s, a in ids.items()}
    blobs.update({f: a.tobytes() for f, a in extra.items()})
    meta = {"format_version": FORMAT_VERSION, "name": name, "task": spec["task"],
            "description": spec["description"], "tokenizer": tok, "vocab_size": vocab_size,
            "dtype": np.dtype(dtype).name, "splits": splits_meta,
            "files": {f: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for f, b in blobs.items()},
            "sources": {rel: SOURCES[rel][1] for rel in spec["sources"]}, "notes": built["notes"]}
    meta.update({k: built[k] for k in ("label_names", "carve", "eos_id", "pad_id", "unk_id", "cls_id", "mask_id")
                 if k in built})
    meta["sha256"] = meta_digest(meta)
    # meta.json goes first and comes back last: a half-replaced directory reads as "not prepared", never as
    # a mix of old and new files. Errors before this point leave the previous output as it was.
    tmps = {}
    try:
        for f, b in blobs.items():
            tmps[f] = out / f".{f}.tmp"
            tmps[f].write_bytes(b)
        (out / "meta.json").unlink(missing_ok=True)
        for f, tmp in tmps.items():
            os.replace(tmp, out / f)
            log(f"wrote {out / f} ({len(blobs[f]):,} bytes)", quiet)
        write_atomic(out / "meta.json", (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())
    except OSError as e:
        raise DataError(f"cannot write {out}: {e}") from e
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    counts = ", ".join(f"{s} {m.get('examples', m['tokens']):,}" for s, m in splits_meta.items())
    log(f"{name}: {counts} {'examples' if spec['task'] == 'cls' else 'tokens'}, vocab {vocab_size:,}, "
        f"{meta['dtype']} -> {out}", quiet)
    return out

# -----------------------------------------------------------------------------
# loading: what train.py, sample.py and plot.py use


class Data:
    """A prepared data set: meta.json (checked against its own sha256), tokenizer and split files (checked
    by size and sha256 on load: bytes changed in place, not only truncation; ~10 ms for WikiText-2)."""

    def __init__(self, name, data_dir="data"):
        _known(name)
        self.name, self.dir = name, Path(data_dir) / name
        cmd = f"python prepare.py {name}" + (f" --data_dir {data_dir}" if str(data_dir) != "data" else "")
        try:
            self.meta = json.loads((self.dir / "meta.json").read_text())
            self.task, version = self.meta["task"], self.meta["format_version"]
            sizes = {f: (int(info["bytes"]), info["sha256"]) for f, info in self.meta["files"].items()}
            self.splits = tuple(self.meta["splits"])
            self.dtype = np.dtype(self.meta["dtype"])
            tokenizer, self.vocab_size = self.meta["tokenizer"], self.meta["vocab_size"]
            intact = self.meta.get("sha256", meta_digest(self.meta)) == meta_digest(self.meta)
        except FileNotFoundError:
            raise DataError(f"{self.dir / 'meta.json'} not found: run `{cmd}`") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{self.dir / 'meta.json'} is unreadable ({e!r}): run `{cmd} --force`") from None
        if version != FORMAT_VERSION:
            raise DataError(f"{self.dir} has format version {version}, this code reads {FORMAT_VERSION}: "
                            f"run `{cmd} --force`")
        if not intact:
            raise DataError(f"{self.dir / 'meta.json'} was changed after it was written (its sha256 does not "
                            f"match): run `{cmd} --force`")
        for f, (want, sha) in sizes.items():
            size = (self.dir / f).stat().st_size if (self.dir / f).exists() else None
            if size != want:
                raise DataError(f"{self.dir / f} is missing or has {size} bytes, expected {want:,}: "
                                f"run `{cmd} --force`")
            if hashlib.sha256((self.dir / f).read_bytes()).hexdigest() != sha:
                raise DataError(f"{self.dir / f} is damaged (its sha256 does not match meta.json): "
                                f"run `{cmd} --force`")
        self.tokenizer = Tokenizer(tokenizer)
        self.label_names = self.meta.get("label_names", [])
        self.n_classes = len(self.label_names)
        self.pad_id, self.eos_id = self.meta.get("pad_id"), self.meta.get("eos_id")
        self.mask_id = self.meta.get("mask_id")

    def __repr__(self):
        counts = {s: m.get("examples", m["tokens"]) for s, m in self.meta["splits"].items()}
        return f"Data({self.name!r}, task={self.task!r}, vocab_size={self.vocab_size}, splits={counts})"

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
        """(tokens memmap, offsets int64 n+1, labels int64 n): example i is tokens[offsets[i]:offsets[i+1]]."""
        self._split(split, "cls")
        return (np.memmap(self.dir / f"{split}.bin", dtype=self.dtype, mode="r"),
                np.fromfile(self.dir / f"{split}.offsets.bin", dtype=np.int64),
                np.fromfile(self.dir / f"{split}.labels.bin", dtype=np.int64))


def load(name, data_dir="data"):
    return Data(name, data_dir)

# -----------------------------------------------------------------------------
# batches (torch in, torch out; train.py keeps a split as one int64 tensor on the device)


def lm_batch(data, batch_size, block_size, generator):
    """Random windows: x = data[o:o+T], y = data[o+1:o+T+1], with o+T < len(data) so y never runs off."""
    n_starts = len(data) - block_size
    if n_starts < 1:
        raise ValueError(f"a split of {len(data)} tokens is too short for block_size={block_size}")
    o = torch.randint(n_starts, (batch_size,), generator=generator, device=generator.device).to(data.device)
    idx = o[:, None] + torch.arange(block_size, device=data.device)  # (B, T); gather beats a Python loop
    return data[idx].long(), data[idx + 1].long()


MLM_RATE = 0.15  # BERT: 15% of the tokens are chosen; of those 80% -> <mask>, 10% -> a random word, 10% kept
MLM_SPECIALS = 4  # ids below this (<pad> <unk> <cls> <mask>) are never chosen nor drawn as random words


def mlm_mask(x, mask_id, vocab_size, generator, rate=MLM_RATE):
    """BERT's masked-LM corruption (Devlin et al. 2019, 3.1) of token ids x (B, T): returns (x', y) with
    y = x at the chosen positions, -1 elsewhere. The random draws come from generator (on the CPU), so
    the masks are a function of its seed alone."""
    u, r = torch.rand(x.shape, generator=generator), torch.rand(x.shape, generator=generator)
    words = torch.randint(MLM_SPECIALS, vocab_size, x.shape, generator=generator)
    u, r, words = u.to(x.device), r.to(x.device), words.to(x.device)
    chosen = (u < rate) & (x >= MLM_SPECIALS)
    y = torch.where(chosen, x, -1)
    x = torch.where(chosen & (r < 0.8), mask_id, torch.where(chosen & (r >= 0.9), words, x))
    return x, y


def lm_eval_batches(data, batch_size, block_size, stride=0):
    """Every target data[1:] exactly once, as batches (x, y) of windows of block_size tokens; y = -1
    where a position is not scored. Exact loss = sum of token losses / (len(data) - 1).

    stride=0: consecutive non-overlapping windows (the last one padded with x = 0, y = -1), so a
    token sees on average half a window of context (nanoGPT's protocol).
    0 < stride <= block_size: a sliding window moved stride tokens at a time, scoring only the
    stride newest targets of each window (the first window scores all of its own), so every target
    after the first window sees at least block_size - stride + 1 tokens; stride=1 is full context."""
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
        raise ValueError(f"stride={stride} must be in [1, block_size={block_size}], or 0 for separate windows")
    # scored target ranges [lo, hi): the first window's, then stride at a time
    his = torch.tensor([min(block_size, n_targets)] + list(range(block_size + stride, n_targets, stride))
                       + ([n_targets] if n_targets > block_size else []))
    los = torch.cat([torch.zeros(1, dtype=torch.long), his[:-1]])
    starts = (his - block_size).clamp(min=0)  # each window ends at its last scored target
    offsets = torch.arange(block_size)
    for b in range(0, len(his), batch_size):
        pos = (starts[b:b + batch_size, None] + offsets).to(data.device)  # (rows, block_size) target index
        lo, hi = los[b:b + batch_size, None].to(data.device), his[b:b + batch_size, None].to(data.device)
        inside = pos < n_targets
        x = torch.where(inside, data[pos.clamp(max=n_targets - 1)], 0)
        y = torch.where(inside & (pos >= lo) & (pos < hi), data[(pos + 1).clamp(max=n_targets)], -1)
        yield x, y


def cls_batch(tokens, offsets, labels, idx, max_len, pad_id, device):
    """Examples idx, cut to max_len (the start, with <cls>, is kept) and right-padded to the longest one.
    Returns x (B, L) int64, mask (B, L) bool (True = real token), y (B,) int64, all on device."""
    idx = [int(i) for i in idx]
    seqs = [np.asarray(tokens[offsets[i]:offsets[i + 1]][:max_len], dtype=np.int64) for i in idx]
    x = np.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=np.int64)
    mask = np.zeros(x.shape, dtype=bool)
    for r, s in enumerate(seqs):
        x[r, :len(s)], mask[r, :len(s)] = s, True
    y = np.asarray(labels[idx], dtype=np.int64)
    return torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device), torch.from_numpy(y).to(device)


def cls_eval_batches(tokens, offsets, labels, batch_size, max_len, pad_id, device):
    """Every example once, in order."""
    n = len(offsets) - 1
    for s in range(0, n, batch_size):
        yield cls_batch(tokens, offsets, labels, range(s, min(s + batch_size, n)), max_len, pad_id, device)

# -----------------------------------------------------------------------------


def list_datasets(data_dir="data"):
    rows = [("name", "task", "what", "train / val / test", "source", "prepared")]
    for name, spec in DATASETS.items():
        url = SOURCES[spec["sources"][0]][0].partition("#")[0]
        done = "yes" if (Path(data_dir) / name / "meta.json").exists() else "no"
        rows.append((name, spec["task"], spec["description"], spec["size"], url, done))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nsst2 val: 1,000 held-out full sentences; their 10,315 sub-phrases are dropped from train.\n"
          "trec val: 10% of the distinct training questions, stratified by class.\n"
          f"Offline: --source DIR or {MIRROR_ENV}=DIR, a directory laid out like shared/data.")


def main(argv=None):
    p = argparse.ArgumentParser(description="Download, verify and tokenize a data set into DATA_DIR/DATASET.")
    p.add_argument("dataset", nargs="?", help=", ".join(DATASETS))
    p.add_argument("--list", action="store_true", help="show the data sets, sizes, sources and what is prepared")
    p.add_argument("--source", help=f"a local file, directory or mirror root, or a URL "
                                    f"(default: ${MIRROR_ENV} if set, else the canonical URL)")
    p.add_argument("--data_dir", default="data", help="where data sets go (default: data)")
    p.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    args = p.parse_args(argv)
    if args.list:
        list_datasets(args.data_dir)
        return 0
    if args.dataset is None:
        p.error(f"name a data set ({', '.join(DATASETS)}) or pass --list")
    try:
        prepare(args.dataset, args.source, args.data_dir, quiet=args.quiet, force=args.force)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
