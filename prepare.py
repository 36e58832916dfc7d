"""
Build the data sets on disk: download (or read a local mirror), verify against pinned sha256s,
tokenize and write data/NAME/: token memmaps plus meta.json. A run reads them through data.py.

    python prepare.py --list                                 # what exists, sizes, sources
    python prepare.py shakespeare_char                       # download (cached), verify, tokenize
    python prepare.py wikitext2 --source ../shared/data      # offline: a mirror, dir, file or URL
    TFS_DATA_MIRROR=../shared/data python prepare.py sst2    # same, for machines with no internet

Data sets (split names are always train / val / test, whichever exist):
- shakespeare_char  Tiny Shakespeare, one token per character (the 65 characters of the file),
                    nanoGPT's split: first 90% of the characters train, last 10% val ->
                    1,003,854 / 111,540 tokens.
- shakespeare_bpe   the same split, GPT-2 BPE (tiktoken "gpt2", encode_ordinary) ->
                    301,966 / 36,059 tokens.
- wikitext2         WikiText-2 wikitext-2-v1 (already <unk>-closed), words split on whitespace and
                    <eos> appended to every line, vocabulary over all splits (33,278), exactly as
                    pytorch/examples word_language_model counts: 2,088,628 / 217,646 / 245,569.
                    This is the setup of the published LSTM / AWD-LSTM perplexities.
                    val = wiki.valid.tokens.
- sst2              GLUE SST-2, binary. test = GLUE dev.tsv (872; GLUE's own test labels are
                    withheld). val is carved out of train without leaking: train holds every
                    sentence *and* its sub-phrases, so a random split would put phrases of val
                    sentences in train. We find the full sentences (examples that are not a word
                    span of another example, 6,885), hold out 1,000 of them (seed 1337) as val, and
                    drop from train every example that is a word span of a held-out sentence
                    (10,315 phrases). train = 56,034, val = 1,000.
- trec              TREC-6 question classification (6 coarse classes), test = TREC_10.label (500).
                    val is a 10% stratified sample of the distinct training questions (seed 1337);
                    all copies of a held-out question go to val, so no question is in both:
                    train 4,904, val 548. train_5500.label holds one Latin-1 byte
                    ("sister\\xf0city"), so it is read as Latin-1.

Classification vocabularies are words of the train split seen at least twice (so <unk> occurs in
training), ids 0 <pad>, 1 <unk>, 2 <cls>; every example starts with <cls>. Text goes through
split_words() (data.py): lower-case plus the few PTB rules that SST-2 / TREC were tokenized with,
the same function for the data and user text.

Output in data/NAME/: {split}.bin raw token ids (uint16, uint32 if an id exceeds 65,535); for
classification also {split}.offsets.bin (int64, n+1) and {split}.labels.bin (int64). meta.json
(written last, it marks a complete data set) holds the tokenizer, counts, label names and sha256
of every source and output file. Raw sources are cached, verified, in data/_downloads/ laid out
like the mirror. From Python: prepare("trec", source="../shared/data") returns data/trec, which
data.load("trec") reads.
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
from tqdm import tqdm

from data import (FORMAT_VERSION, META_KEYS, MIRROR_ENV, SEED, TASKS, DataError, Tokenizer,
                  check_name, meta_digest, split_words, sync_directory, write_atomic,
                  write_synced)

MIN_COUNT = 2  # classification vocab: train words seen twice or more; singletons become <unk>
SPECIALS = ["<pad>", "<unk>", "<cls>"]

# Pinned sources: mirror-relative path -> (canonical URL, sha256 of the file). See
# shared/data/SOURCES.md. "URL#member" names a file inside a zip archive; the member's sha256 is
# what we check (the zip's md5 from GLUE is 9f81648d4199384278b86e315dac217c, but a re-zipped
# mirror would differ, the members would not).
_WT2 = ("https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
        "wikitext-2/")
_SST2 = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip#SST-2/"
_TREC = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
SOURCES = {
    "tinyshakespeare/input.txt": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    # pytorch/examples ships wikitext-2-v1's wiki.*.tokens byte for byte; the original S3 zip is
    # often gone
    "wikitext-2/wiki.train.tokens": (
        _WT2 + "train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
    "wikitext-2/wiki.valid.tokens": (
        _WT2 + "valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
    "wikitext-2/wiki.test.tokens": (
        _WT2 + "test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    "sst2/train.tsv": (
        _SST2 + "train.tsv", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    "sst2/dev.tsv": (
        _SST2 + "dev.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
    "trec/train_5500.label": (
        _TREC + "train_5500.label",
        "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
    "trec/TREC_10.label": (
        _TREC + "TREC_10.label",
        "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e"),
}


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
    """Stream url into dest + '.part' and return that path; the caller renames it once it checks
    out."""
    tmp = dest.with_name(dest.name + ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    try:
        with requests.get(url, stream=True, timeout=30) as r:
            if r.status_code != 200:
                raise DataError(f"download failed: {url} answered HTTP {r.status_code} "
                                f"{r.reason}")
            # Content-Length counts the bytes on the wire: a compressed answer (Content-Encoding)
            # decodes to another size, so only an unencoded one is checked against it
            encoded = r.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
            total = None if encoded else int(r.headers.get("Content-Length", 0)) or None
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
        raise DataError(f"download of {url} failed after {got:,} bytes: {e}; without internet "
                        f"pass --source PATH or set {MIRROR_ENV} to a local copy of shared/data"
                        ) from e
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
    # a member of a zip: keep the archive next to the cache, so its other members need no second
    # download
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

    source: None (TFS_DATA_MIRROR if set, else the cache in data_dir/_downloads, else the canonical
    URL), a URL (the file itself for one-file data sets, else a base URL holding the canonical file
    names), or a local path: the file itself, a directory holding the canonical file names, or a
    mirror root."""
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
                                f"({', '.join(Path(r).name for r in rels)}): pass the directory "
                                f"holding them")
            tried = [p] if p.is_file() else [p / rel, p / Path(rel).name]
            found = next((c for c in tried if c.is_file()), None)
            if found is None:
                raise DataError(f"{what}: {Path(rel).name} not found (looked for "
                                f"{', '.join(map(str, tried))})")
            out[rel] = _read_local(found, rel)
            log(f"read {found} (sha256 ok)", quiet)
    return out

# -----------------------------------------------------------------------------
# builders: verified source bytes -> tokenizer spec and token ids per split


def build_shakespeare(raw, bpe):
    text = raw["tinyshakespeare/input.txt"].decode("utf-8")
    n = len(text)
    # nanoGPT's split, so that results compare
    parts = {"train": text[:int(n * 0.9)], "val": text[int(n * 0.9):]}
    spec = ({"kind": "tiktoken", "encoding": "gpt2"} if bpe
            else {"kind": "char", "chars": "".join(sorted(set(text)))})
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
    return dict(tokenizer=spec, splits={s: tok.encode(t) for s, t in texts.items()},
                eos_id=vocab["<eos>"], notes="val = wiki.valid.tokens; whitespace words + <eos> "
                                             "per line; vocabulary over all splits")


def _word_spans(s):
    """Every contiguous word span of a space-joined sentence, as strings."""
    starts = [0] + [m.end() for m in re.finditer(" ", s)]
    ends = [m.start() for m in re.finditer(" ", s)] + [len(s)]
    return {s[b:e] for i, b in enumerate(starts) for e in ends[i:]}


def _sst2_splits(raw, n_val=1000):
    """(train, val, test) rows of (text, label), and the notes and carve record of how val was
    made."""
    def rows(rel):  # "sentence \tlabel" after a header; normalise the trailing space away
        lines = raw[rel].decode("utf-8").split("\n")[1:]
        return [(" ".join(s.split()), int(y))
                for s, y in (ln.rsplit("\t", 1) for ln in lines if ln)]
    train = rows("sst2/train.tsv")
    # the pretraining corpus never reads the test file
    test = rows("sst2/dev.tsv") if "sst2/dev.tsv" in raw else []
    # Full sentences are the examples that are no word span of another one. Longest first, a
    # sentence that is not yet covered is maximal, and only maximal sentences need their spans
    # listed (~1 s, not minutes).
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
    notes = (f"test = GLUE dev.tsv. val = {len(val)} of the {len(full)} full training sentences "
             f"(examples that are no word span of another), random seed {SEED}; {dropped} training "
             f"examples that are word spans of a val sentence were dropped so val does not leak "
             f"into train")
    carve = {"method": "held-out full sentences, their sub-phrases dropped", "seed": SEED,
             "full_sentences": len(full), "val": len(val), "dropped_from_train": dropped}
    return (kept, val, test), notes, carve


def build_sst2(raw, vocab=None):
    splits, notes, carve = _sst2_splits(raw)
    return dict(_build_cls(*splits, vocab=vocab), label_names=["negative", "positive"],
                notes=notes, carve=carve)


# coarse classes in the order Hugging Face uses
TREC_LABELS = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]


def _trec_splits(raw, val_frac=0.1):
    """(train, val, test) rows of (question, label), and the notes and carve record of how val was
    made."""
    names = TREC_LABELS

    def rows(rel):  # "DESC:manner How did ... ?"; train_5500.label is Latin-1 (one 0xF0 byte)
        lines = raw[rel].decode("latin-1").splitlines()
        return [(q, names.index(lab.split(":")[0]))
                for lab, q in (ln.split(" ", 1) for ln in lines)]
    train = rows("trec/train_5500.label")
    # the pretraining corpus never reads the test file
    test = rows("trec/TREC_10.label") if "trec/TREC_10.label" in raw else []
    # stratified by class over distinct questions; 63 questions occur more than once and all
    # copies go together
    rng, held = random.Random(SEED), set()
    for c in range(len(names)):
        qs = sorted({q for q, y in train if y == c})
        held |= set(rng.sample(qs, round(val_frac * len(qs))))
    val = [(q, y) for q, y in train if q in held]
    kept = [(q, y) for q, y in train if q not in held]
    notes = (f"test = TREC_10.label. val = {len(val)} examples: {val_frac:.0%} of the distinct "
             f"training questions of each class, seed {SEED}, all copies of a question on the "
             f"same side")
    carve = {"method": "stratified by class over distinct questions", "seed": SEED,
             "fraction": val_frac, "val": len(val), "dropped_from_train": 0}
    return (kept, val, test), notes, carve


def build_trec(raw, vocab=None):
    splits, notes, carve = _trec_splits(raw)
    return dict(_build_cls(*splits, vocab=vocab), label_names=TREC_LABELS, notes=notes,
                carve=carve)


def _build_cls(train, val, test, vocab=None):
    """Word ids of every example, with the vocabulary of the train split's words seen at least
    MIN_COUNT times, or the given vocabulary spec (the shared one of the pretraining corpus)."""
    rows = {"train": train, "val": val, "test": test}
    words = {s: [split_words(t) for t, _ in r] for s, r in rows.items()}
    if vocab is None:
        # train only: val/test words stay unseen
        counts = Counter(w for ws in words["train"] for w in ws)
        vocab = _word_spec(sorted((w for w, c in counts.items() if c >= MIN_COUNT),
                                  key=lambda w: (-counts[w], w)))
    tok = Tokenizer(vocab)
    # encode(text) == encode_words(split_words(text)); the words were split once above to save time
    splits = {s: ([tok.encode_words(ws) for ws in words[s]], [y for _, y in r])
              for s, r in rows.items()}
    return dict(tokenizer=vocab, splits=splits, pad_id=0, unk_id=1, cls_id=2)


def _word_spec(words, specials=SPECIALS, **extra):
    return {"kind": "word", "vocab": specials + words, "pad": "<pad>", "unk": "<unk>",
            "cls": "<cls>", "split": "split_words (lower-case, PTB-like)", "min_count": MIN_COUNT,
            **extra}


# -----------------------------------------------------------------------------
# the pretraining corpus: the training text of every word-level data set, one shared vocabulary

MLM_SOURCES = ["wikitext-2/wiki.train.tokens", "sst2/train.tsv", "trec/train_5500.label"]


def _mlm_texts(raw):
    """The training texts only: WikiText-2's train lines, and the train sides of the SST-2 and TREC
    carves (never a val or test text of any benchmark)."""
    wiki = [ln for ln in raw["wikitext-2/wiki.train.tokens"].decode("utf-8").splitlines()
            if ln.strip()]
    sst2, _, _ = _sst2_splits(raw)
    trec, _, _ = _trec_splits(raw)
    return wiki + [t for t, _ in sst2[0]] + [t for t, _ in trec[0]]


def mlm_vocab(raw):
    """The shared word vocabulary: words of the pretraining texts seen MIN_COUNT times or more,
    most frequent first, after <pad> <unk> <cls> <mask>."""
    counts = Counter(w for t in _mlm_texts(raw) for w in split_words(t))
    words = sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return _word_spec(words, SPECIALS + ["<mask>"], mask="<mask>")


def build_mlm_corpus(raw, val_every=100):
    """A token stream of "<cls> text" per training text, every val_every-th text held out as val
    (for the masked-LM loss only: it is training text of the benchmarks, never their val or
    test)."""
    vocab = mlm_vocab(raw)
    tok = Tokenizer(vocab)
    texts = _mlm_texts(raw)
    parts = {"train": [], "val": []}
    for i, t in enumerate(texts):
        parts["val" if i % val_every == val_every - 1 else "train"].extend(
            tok.encode_words(split_words(t)))
    notes = (f"WikiText-2 train lines, SST-2 and TREC train-side texts ({len(texts):,} texts), "
             f"each as <cls> + words; every {val_every}th text is val; vocabulary: words seen >= "
             f"{MIN_COUNT} times")
    return dict(tokenizer=vocab, splits=parts, pad_id=0, unk_id=1, cls_id=2, mask_id=3, notes=notes)


# How each data set is built (its task is also in data.TASKS, which a run reads without this file)
DATASETS = {
    "shakespeare_char": dict(task="lm", build=lambda raw: build_shakespeare(raw, bpe=False),
                             sources=["tinyshakespeare/input.txt"],
                             size="1,003,854 / 111,540 tokens",
                             description="Tiny Shakespeare, characters"),
    "shakespeare_bpe": dict(task="lm", build=lambda raw: build_shakespeare(raw, bpe=True),
                            sources=["tinyshakespeare/input.txt"], size="301,966 / 36,059 tokens",
                            description="Tiny Shakespeare, GPT-2 BPE"),
    "wikitext2": dict(task="lm", build=build_wikitext2,
                      size="2,088,628 / 217,646 / 245,569 tokens",
                      sources=[f"wikitext-2/wiki.{s}.tokens" for s in ("train", "valid", "test")],
                      description="WikiText-2 (v1), words + <eos>"),
    "sst2": dict(task="cls", build=build_sst2, sources=["sst2/train.tsv", "sst2/dev.tsv"],
                 size="56,034 / 1,000 / 872 examples",
                 description="GLUE SST-2 sentiment, 2 classes"),
    "trec": dict(task="cls", build=build_trec,
                 sources=["trec/train_5500.label", "trec/TREC_10.label"],
                 size="4,904 / 548 / 500 examples", description="TREC question type, 6 classes"),
    # masked-LM pretraining, and the two classification sets in its vocabulary (to fine-tune
    # from it)
    "mlm_corpus": dict(task="mlm", build=build_mlm_corpus, sources=MLM_SOURCES,
                       size="train text of wikitext2, sst2, trec",
                       description="pretraining corpus, shared words"),
    "sst2_shared": dict(task="cls", build=lambda raw: build_sst2(raw, mlm_vocab(raw)),
                        sources=MLM_SOURCES + ["sst2/dev.tsv"],
                        size="56,034 / 1,000 / 872 examples",
                        description="SST-2 in mlm_corpus's vocabulary"),
    "trec_shared": dict(task="cls", build=lambda raw: build_trec(raw, mlm_vocab(raw)),
                        sources=MLM_SOURCES + ["trec/TREC_10.label"],
                        size="4,904 / 548 / 500 examples",
                        description="TREC-6 in mlm_corpus's vocabulary"),
}
assert [(n, d["task"]) for n, d in DATASETS.items()] == list(TASKS.items()), "update data.TASKS"

# -----------------------------------------------------------------------------
# building: skipped when the output is intact; every file synced, renamed, then meta.json last


def _up_to_date(out, name):
    try:
        meta = json.loads((out / "meta.json").read_text())
        want = {rel: SOURCES[rel][1] for rel in DATASETS[name]["sources"]}
        intact = all(hashlib.sha256((out / f).read_bytes()).hexdigest() == info["sha256"]
                     for f, info in meta["files"].items())
        complete = all(k in meta for k in META_KEYS)  # what Data reads; else it is rebuilt
        return meta["format_version"] == FORMAT_VERSION and meta["sources"] == want and intact \
            and complete and meta.get("sha256", meta_digest(meta)) == meta_digest(meta)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def prepare(name, source=None, data_dir="data", quiet=False, force=False):
    """Fetch, verify and tokenize data set `name` into data_dir/name; return that directory. Skips
    when meta.json and every output file's sha256 are intact (unless force)."""
    check_name(name)
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
        raise DataError(f"cannot create output directory {out}: {e}; pass --data_dir DIR somewhere "
                        f"writable") from e
    if not force and _up_to_date(out, name):
        log(f"{out} is up to date (all files match meta.json); --force rebuilds it", quiet)
        return out
    # a mirror root also has the BPE files
    if source is not None and Path(source, "tiktoken_cache").is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(source, "tiktoken_cache")))
    try:
        # everything is verified before any output is touched
        raw = fetch(name, source, data_dir, quiet)
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
                              "label_counts": np.bincount(
                                  labels, minlength=len(built["label_names"])).tolist()}
    # uint16 halves the memmaps; check the real maximum id before casting rather than trusting
    # vocab_size
    dtype = np.uint16 if max(int(a.max()) for a in ids.values()) < 2**16 else np.uint32
    blobs = {f"{s}.bin": a.astype(dtype).tobytes() for s, a in ids.items()}
    blobs.update({f: a.tobytes() for f, a in extra.items()})
    meta = {"format_version": FORMAT_VERSION, "name": name, "task": spec["task"],
            "description": spec["description"], "tokenizer": tok, "vocab_size": vocab_size,
            "dtype": np.dtype(dtype).name, "splits": splits_meta,
            "files": {f: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                      for f, b in blobs.items()},
            "sources": {rel: SOURCES[rel][1] for rel in spec["sources"]}, "notes": built["notes"]}
    meta.update({k: built[k] for k in ("label_names", "carve", "eos_id", "pad_id", "unk_id",
                                       "cls_id", "mask_id")
                 if k in built})
    meta["sha256"] = meta_digest(meta)
    # meta.json goes first and comes back last: a half-replaced directory reads as "not prepared",
    # never as a mix of old and new files. Errors before this point leave the previous output as
    # it was.
    tmps = {}
    try:
        for f, b in blobs.items():
            tmps[f] = out / f".{f}.tmp"
            write_synced(tmps[f], b)  # on the disk before meta.json names it
        (out / "meta.json").unlink(missing_ok=True)
        for f, tmp in tmps.items():
            os.replace(tmp, out / f)
            log(f"wrote {out / f} ({len(blobs[f]):,} bytes)", quiet)
        sync_directory(out)  # the renames too
        write_atomic(out / "meta.json",
                     (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode())
    except OSError as e:
        raise DataError(f"cannot write {out}: {e}") from e
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    counts = ", ".join(f"{s} {m.get('examples', m['tokens']):,}" for s, m in splits_meta.items())
    log(f"{name}: {counts} {'examples' if spec['task'] == 'cls' else 'tokens'}, "
        f"vocab {vocab_size:,}, {meta['dtype']} -> {out}", quiet)
    return out

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
    print("\nsst2 val: 1,000 held-out full sentences; their 10,315 sub-phrases are dropped from "
          "train.\n"
          "trec val: 10% of the distinct training questions, stratified by class.\n"
          f"Offline: --source DIR or {MIRROR_ENV}=DIR, a directory laid out like shared/data.")


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Download, verify and tokenize a data set into DATA_DIR/DATASET.")
    p.add_argument("dataset", nargs="?", help=", ".join(DATASETS))
    p.add_argument("--list", action="store_true",
                   help="show the data sets, sizes, sources and what is prepared")
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
