"""data.py: loading a prepared data set (and its errors), the tokenizers, the batches.

    python -m pytest tests/test_data.py -q

The data sets come from conftest's tiny_data (prepared once per session from the fixture files);
a test that damages one works on its own copy.
"""
import itertools
import json
import os
import shutil
import stat

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

import data as D
from model import POOLINGS, POS_ENCODINGS, Transformer, TransformerConfig


@pytest.fixture
def tiny(tiny_data, tmp_path):
    """A data_dir with a private copy of the tiny shakespeare_char, free to damage."""
    shutil.copytree(tiny_data / "shakespeare_char", tmp_path / "shakespeare_char")
    return tmp_path

# -----------------------------------------------------------------------------
# loading and tokenizers


def test_char_encode_unknown_characters(tiny_data):
    d = D.load("shakespeare_char", tiny_data)
    assert d.decode(d.encode("First Citizen:\n")) == "First Citizen:\n"
    with pytest.raises(ValueError, match=r"2 symbol\(s\).*\['é', '€'\]"):
        d.encode("First Citizen é€")


def test_tiktoken_finds_its_files_in_the_offline_mirror(tmp_path, monkeypatch):
    """Offline, tiktoken's BPE files come from the mirror's tiktoken_cache unless the user named a
    cache of their own."""
    (tmp_path / "tiktoken_cache").mkdir()
    seen = []
    monkeypatch.setattr(D.tiktoken, "get_encoding", lambda name: seen.append(os.environ.get("TIKTOKEN_CACHE_DIR")))
    monkeypatch.setenv(D.MIRROR_ENV, str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "x")  # (so that monkeypatch restores what was there)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    D._tiktoken("gpt2")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/the/users/own")
    D._tiktoken("gpt2")
    assert seen == [str(tmp_path / "tiktoken_cache"), "/the/users/own"]


def test_decode_takes_a_tensor_or_an_array_as_it_takes_a_list(tiny_data):
    """decode(model.generate(...)[0]) as a user writes it: the elements of a tensor hash by
    identity, so the classifier vocabulary's <pad> and <cls> would not be skipped without int()"""
    for name, text in (("shakespeare_char", "First Citizen:\n"), ("trec", "What is the name ?")):
        d = D.load(name, tiny_data)
        ids = d.encode(text) + ([d.pad_id] * 3 if name == "trec" else [])  # trec: <cls> first
        want = d.decode(ids)
        assert "<pad>" not in want and "<cls>" not in want
        assert d.decode(torch.tensor(ids)) == want == d.decode(np.array(ids, dtype=np.uint16))


def test_load_missing_and_corrupt(tiny, tmp_path):
    hint = "run `python prepare.py shakespeare_char"
    with pytest.raises(D.DataError, match="meta.json not found") as e:
        D.load("shakespeare_char", tmp_path / "empty")
    assert hint in str(e.value)
    d = tiny / "shakespeare_char"
    train = (d / "train.bin").read_bytes()
    (d / "train.bin").write_bytes(train[:-2])  # one token short
    with pytest.raises(D.DataError, match=r"train.bin is missing or has \d+ bytes") as e:
        D.load("shakespeare_char", tiny)
    assert hint in str(e.value)
    (d / "train.bin").unlink()
    with pytest.raises(D.DataError, match="train.bin is missing"):
        D.load("shakespeare_char", tiny)
    (d / "train.bin").write_bytes(train)
    assert D.load("shakespeare_char", tiny).tokens("train").shape == (len(train) // 2,)
    meta = json.loads((d / "meta.json").read_text())
    no_dtype = json.dumps({k: v for k, v in meta.items() if k != "dtype"})  # every other key intact
    for garbage in ["{not json", "[1, 2]", '{"task": "lm"}', no_dtype]:
        (d / "meta.json").write_text(garbage)
        with pytest.raises(D.DataError, match="meta.json is unreadable") as e:
            D.load("shakespeare_char", tiny)
        assert hint in str(e.value)


@pytest.mark.parametrize("shift", [-1, 1])
def test_a_data_set_of_another_format_version_is_refused_when_loaded(tiny, shift):
    """Data reads its own format_version only: an older data set (prepared by earlier code), like a
    newer one, is refused with the command that rebuilds it, even with its sha256 made consistent
    and its files intact. Bug caught: only newer versions refused (`version > FORMAT_VERSION`), so
    an old data set is read with today's layout."""
    path = tiny / "shakespeare_char" / "meta.json"
    meta = json.loads(path.read_text())
    meta["format_version"] = D.FORMAT_VERSION + shift
    meta["sha256"] = D.meta_digest(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(D.DataError, match=rf"format version {D.FORMAT_VERSION + shift}, this code "
                                          rf"reads {D.FORMAT_VERSION}: run `python prepare.py "
                                          rf"shakespeare_char --data_dir .* --force`"):
        D.load("shakespeare_char", tiny)


def test_a_split_the_data_set_lacks_is_named_with_the_ones_it_has(tiny_data):
    """Bug caught: the split check skipped, leaving a raw FileNotFoundError (for `--eval_split=test`
    on shakespeare_char) instead of an error that lists the splits."""
    with pytest.raises(D.DataError, match=r"shakespeare_char has no split 'test'; it has train, val"):
        D.load("shakespeare_char", tiny_data).tokens("test")


def test_atomic_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
    """A write that fails before its rename leaves the previous contents, whole, and no temporary
    file. Bug caught: writing to the path itself (a crash mid-write leaves half a file)."""
    path = tmp_path / "meta.json"
    D.write_atomic(path, "old")

    def fail(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(D.os, "replace", fail)
    with pytest.raises(OSError):
        D.write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def is_dir(fd):
    return stat.S_ISDIR(os.fstat(fd).st_mode)


@pytest.mark.parametrize("stage", ["write", "fsync", "directory fsync"])
def test_atomic_write_failing_at_any_stage_leaves_no_temporary_file(tmp_path, monkeypatch, stage):
    """Whatever fails, the error names the file meant and no temporary file stays; before the
    rename the old file stays whole, after it (the directory's fsync) the new one is there whole."""
    path = tmp_path / "meta.json"
    D.write_atomic(path, "old")
    fsync = os.fsync

    def full(f):  # a disk that fills half-way
        f.write(b"ne")
        raise OSError(28, "No space left on device")

    def failing_fsync(fd):
        if is_dir(fd) == (stage == "directory fsync"):
            raise OSError(5, "Input/output error")
        fsync(fd)
    if stage != "write":
        monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError) as info:
        D.write_atomic(path, full if stage == "write" else "new")
    assert info.value.filename == str(path) and path.read_text() == (
        "new" if stage == "directory fsync" else "old")
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_atomic_write_reaches_the_disk_before_its_rename(tmp_path, syncs):
    """Bug caught: the rename before the bytes are synced (after a power cut the new name could
    hold an empty file)."""
    D.write_atomic(tmp_path / "x.json", "{}")
    assert syncs[:2] == [("fsync", (tmp_path / "x.json").stat().st_ino), ("replace", "x.json")]
    assert (tmp_path / "x.json").read_text() == "{}"


@pytest.mark.skipif(os.name != "posix", reason="directories are opened (and synced) on POSIX")
def test_atomic_write_syncs_its_directory_after_the_rename(tmp_path, syncs):
    """The file is synced, renamed, then its directory synced. Bug caught: no fsync of the
    directory (after a power cut the name could still hold the old file, or none, though the
    write had returned)."""
    path = tmp_path / "run" / "x.json"
    path.parent.mkdir()
    D.write_atomic(path, b"{}")
    assert syncs == [("fsync", path.stat().st_ino), ("replace", "x.json"),
                     ("fsync", path.parent.stat().st_ino)]


@pytest.mark.parametrize("refused", ["open", "fsync"])
def test_atomic_write_where_a_directory_cannot_be_synced(tmp_path, monkeypatch, refused):
    """Where a directory cannot be opened (Windows) or fsynced (EINVAL on some file systems), the
    write goes on without that fsync."""
    real_open, real_fsync = os.open, os.fsync

    def open_(path, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def fsync(fd):
        if is_dir(fd):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)
    monkeypatch.setattr(os, refused, open_ if refused == "open" else fsync)
    D.write_atomic(tmp_path / "x.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").read_text() == "{}"


def test_split_words():
    assert D.split_words("Don't stop, it's GREAT!") == [
        "do", "n't", "stop", ",", "it", "'s", "great", "!"]
    assert D.split_words('He said "wow" (twice) in the U.S. 10,000 times. Ok.') == [
        "he", "said", "``", "wow", "''", "(", "twice", ")", "in", "the", "u.s.", "10,000", "times",
        ".", "ok", "."]
    # text tokenized like the data passes through unchanged
    s = "it 's a charming and often affecting journey . "
    assert D.split_words(s) == s.split()

# -----------------------------------------------------------------------------
# batching


def test_lm_batch_stays_inside_the_split():
    data = torch.arange(20)
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        x, y = D.lm_batch(data, 8, 5, g)
        assert x.shape == y.shape == (8, 5) and x.dtype == y.dtype == torch.long
        # y is x shifted by one, never past the end
        assert torch.equal(y, x + 1) and int(y.max()) <= 19
        assert torch.equal(x, x[:, :1] + torch.arange(5))  # contiguous windows
        starts |= set(x[:, 0].tolist())
    assert starts == set(range(20 - 5))  # every legal start, including the last one, is drawn
    with pytest.raises(ValueError, match="block_size=20"):
        D.lm_batch(data, 2, 20, g)
    x, y = D.lm_batch(data, 2, 19, g)  # 20 tokens hold exactly one window of 19 and its targets
    assert torch.equal(x, torch.arange(19).expand(2, 19)) and torch.equal(y, x + 1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(D.lm_batch(data, 4, 3, g1)[0], D.lm_batch(data, 4, 3, g2)[0])  # reproducible


@pytest.mark.parametrize("n,batch_size,block_size",
                         [(23, 2, 4), (21, 2, 4), (9, 4, 8), (100, 3, 7)])
def test_lm_eval_batches_cover_every_target_once(n, batch_size, block_size):
    data = torch.randint(1, 50, (n,))
    xs, ys = zip(*D.lm_eval_batches(data, batch_size, block_size))
    assert all(x.shape == y.shape and x.shape[0] <= batch_size and x.shape[1] == block_size
               for x, y in zip(xs, ys))
    x, y = torch.cat(xs).flatten(), torch.cat(ys).flatten()
    real = y != -1
    assert int(real.sum()) == n - 1
    # in order, each target once
    assert torch.equal(y[real], data[1:]) and torch.equal(x[real], data[:-1])
    assert (x[~real] == 0).all() and bool(real[:n - 1].all())  # padding only at the very end


def test_cls_batches():
    seqs = [[2, 5, 6], [2], [2, 7, 8, 9, 10, 11], [2, 4]]
    tokens = np.array([t for s in seqs for t in s], dtype=np.uint16)
    offsets = np.cumsum([0] + [len(s) for s in seqs])
    labels = np.array([1, 0, 1, 0])
    x, mask, y = D.cls_batch(tokens, offsets, labels, torch.tensor([2, 0, 1]), max_len=4, pad_id=0,
                             device="cpu")
    # truncated keeps <cls>, right padding
    assert x.tolist() == [[2, 7, 8, 9], [2, 5, 6, 0], [2, 0, 0, 0]]
    assert mask.sum(1).tolist() == [4, 3, 1] and (x[~mask] == 0).all() and y.tolist() == [1, 1, 0]
    batches = list(D.cls_eval_batches(tokens, offsets, labels, batch_size=3, max_len=16, pad_id=0,
                                      device="cpu"))
    assert [b[0].shape for b in batches] == [(3, 8), (1, 8)]  # lengths 6 and 2: the 8 bucket
    assert torch.cat([b[2] for b in batches]).tolist() == labels.tolist()
    assert torch.cat([b[1].sum(1) for b in batches]).tolist() == [len(s) for s in seqs]


def test_classifier_batches_pad_with_pad_id_and_keep_every_real_token():
    """With a pad id other than 0 (1 here; 0 is then a real token), cls_batch and
    cls_batches_of_every_length pad with that id, and keep every real token that fits, also those
    of an example as long as the batch (16 tokens). Catches: padding written as 0 whatever pad_id
    is, in either function, and cls_batches_of_every_length cutting the last real column
    (`keep = min(n, x.size(1)) - 1`)."""
    seqs = [[2] + list(range(10, 25)), [2, 7, 0]]  # 16 tokens; 3
    tokens = np.array([t for s in seqs for t in s], dtype=np.uint16)
    offsets = np.cumsum([0] + [len(s) for s in seqs])
    x, mask, y = D.cls_batch(tokens, offsets, np.array([4, 5]), [0, 1], max_len=24, pad_id=1,
                             device="cpu")
    assert x.tolist() == [seqs[0], seqs[1] + [1] * 13] and mask.sum(1).tolist() == [16, 3]
    batches = D.cls_batches_of_every_length((x, mask, y), 24, pad_id=1)
    assert [b[0].shape[1] for b in batches] == [8, 16, 24]
    for xb, mb, yb in batches:
        n = min(xb.size(1), 16)
        assert torch.equal(xb[:, :n], x[:, :n]) and torch.equal(mb[:, :n], mask[:, :n])
        assert (xb[:, n:] == 1).all() and not mb[:, n:].any() and yb.tolist() == [4, 5]


# -----------------------------------------------------------------------------
# classifier batches: padded to one of a few lengths (data.PAD_LENGTHS)


def examples(lengths, seed=0):
    """tokens, offsets, labels of random examples with these lengths, each starting with <cls>."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(3, 50, offsets[-1]).astype(np.uint16)
    tokens[offsets[:-1]] = 2
    return tokens, offsets, rng.integers(0, 3, len(lengths))


def sst2_like(n, seed=0):
    """Lengths like SST-2's training examples (phrases and sentences: median 8 tokens, 90% under
    23, the longest 53): log-normal, clipped to 2..56."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(9), 0.8, n)), 2, 56).astype(np.int64)


def test_pad_length_is_the_first_bucket_that_holds_the_batch():
    assert [D.pad_length(n, 64) for n in (1, 8, 9, 24, 25, 33, 48, 49, 64)] == [
        8, 8, 16, 24, 32, 48, 48, 64, 64]
    assert D.pad_length(70, 100) == 96 and D.pad_length(97, 100) == 100  # capped at max_len
    assert D.pad_length(3, 4) == 4 and D.pad_length(2000, 2048) == 2048  # beyond the list: max_len


def test_an_epoch_of_classifier_batches_has_few_lengths():
    """Over a shuffled epoch of SST-2-like examples, the batches come in at most as many lengths
    as there are buckets up to max_len, each the smallest bucket that holds the batch, with every
    example intact. Catches padding to the longest example again (some 30 lengths), a bucket
    that cuts the longest example, or padding that overwrites tokens."""
    lengths = sst2_like(20_000)
    tokens, offsets, labels = examples(lengths)
    order = np.random.default_rng(1).permutation(len(lengths))
    buckets = {n for n in D.PAD_LENGTHS if n < 64} | {64}
    widths, longest = set(), set()
    batches = [D.cls_batch(tokens, offsets, labels, order[s:s + 64], 64, 0, "cpu")
               for s in range(0, len(order), 64)]
    batches += list(D.cls_eval_batches(tokens, offsets, labels, 512, 64, 0, "cpu"))
    for x, mask, _ in batches:
        widths.add(x.shape[1])
        longest.add(int(mask.sum(1).max()))
        assert x.shape[1] == min(b for b in buckets if b >= int(mask.sum(1).max()))
    assert widths <= buckets and len(longest) > 3 * len(buckets)  # the lengths do vary
    x, mask, _ = batches[0]
    for row, i in enumerate(order[:64]):
        n = min(lengths[i], 64)
        assert x[row, :n].tolist() == tokens[offsets[i]:offsets[i] + n].tolist()
        assert mask[row].tolist() == [True] * n + [False] * (x.shape[1] - n)
    assert (x[~mask] == 0).all()


# every position encoding and pooling of the model, causal or not, both attention paths
SETTINGS = [s for s in itertools.product(POS_ENCODINGS, POOLINGS, (False, True), ("manual", "sdpa"))
            if not (s[1] == "first" and s[2])]  # a causal model's first token sees only itself


@pytest.mark.parametrize("pos_encoding, pooling, causal, attention", SETTINGS)
def test_bucket_padding_leaves_classifier_outputs_unchanged(pos_encoding, pooling, causal,
                                                            attention):
    """Logits and loss of a batch padded to its bucket (48 here) equal those of the same batch
    padded to its longest example (37), in float32, to rounding. Catches padding that leaks in:
    a key mask dropped from attention, mean pooling over all positions, 'last' pooling that
    takes the last position rather than the last real token."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(
        vocab_size=50, n_classes=3, n_layer=2, n_head=2, n_embd=32, block_size=64,
        pos_encoding=pos_encoding, pooling=pooling, causal=causal, attention=attention)).eval()
    tokens, offsets, labels = examples([37, 5, 20, 33, 1])
    x, mask, y = D.cls_batch(tokens, offsets, labels, range(5), 64, 0, "cpu")
    assert x.shape == (5, 48)
    with torch.no_grad():
        logits, loss = model(x, y, attention_mask=mask)
        logits_37, loss_37 = model(x[:, :37], y, attention_mask=mask[:, :37])
    torch.testing.assert_close(logits, logits_37, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, loss_37, rtol=1e-5, atol=1e-6)


def test_classifier_batches_of_several_lengths_compile_once():
    """torch.compile as training calls it (dynamic shapes left to automatic) builds one graph for
    classifier batches of any length. Catches cls_batch not marking the length dynamic: the
    first length is then compiled as a constant and the second compiles everything again."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, n_classes=3, n_layer=2, n_head=2,
                                          n_embd=32, block_size=64, causal=False))
    tokens, offsets, labels = examples(sst2_like(64))
    torch._dynamo.reset()
    counters.clear()
    try:
        compiled = torch.compile(model, backend="eager")  # dynamo alone: graphs, not kernels
        widths = set()
        for s in range(0, 64, 8):
            x, mask, y = D.cls_batch(tokens, offsets, labels, range(s, s + 8), 64, 0, "cpu")
            widths.add(x.shape[1])
            compiled(x, y, attention_mask=mask)[1].backward()
        assert len(widths) >= 3 and counters["stats"]["unique_graphs"] == 1, widths
    finally:
        torch._dynamo.reset()


def test_cls_batches_of_every_length_cover_what_training_pads_to():
    """One example batch per padded length a classifier sees (for one CUDA graph per shape): every
    length pad_length can return for texts of 1..max_len tokens, and nothing else; each keeps the
    real tokens that fit and pads the rest. Bugs caught: a length missing (a step would find no
    graph), max_len itself left out when it is not in PAD_LENGTHS, the mask or labels mangled."""
    from data import cls_batches_of_every_length, cls_lengths, pad_length
    assert cls_lengths(64) == [8, 16, 24, 32, 48, 64]
    assert cls_lengths(50) == [8, 16, 24, 32, 48, 50] and cls_lengths(5) == [5]
    for max_len in (5, 50, 64, 300):
        assert set(cls_lengths(max_len)) == {pad_length(n, max_len) for n in range(1, max_len + 1)}
    x = torch.tensor([[1, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    mask = x != 0
    y = torch.tensor([1, 0])
    batches = cls_batches_of_every_length((x, mask, y), 24, pad_id=0)
    assert [b[0].shape for b in batches] == [(2, 8), (2, 16), (2, 24)]
    for xb, mb, yb in batches:
        assert torch.equal(xb[:, :4], x[:, :4]) and not xb[:, 4:].any()
        assert torch.equal(mb.sum(1), mask.sum(1)) and torch.equal(yb, y)
