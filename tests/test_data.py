"""data.py: loading a prepared data set (and its errors), the tokenizers, the batches.

    python -m pytest tests/test_data.py -q

The data sets come from conftest's tiny_data (prepared once per session from the fixture files);
a test that damages one works on its own copy.
"""
import json
import shutil

import numpy as np
import pytest
import torch

import data as D


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
    assert [b[0].shape for b in batches] == [(3, 6), (1, 2)]
    assert torch.cat([b[2] for b in batches]).tolist() == labels.tolist()
    assert torch.cat([b[1].sum(1) for b in batches]).tolist() == [len(s) for s in seqs]
