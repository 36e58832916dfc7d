"""The val loss of a unigram character model: each val character scored by its frequency in the
training split, the loss a network reaches if it learns nothing but how often each character occurs.
    PYTHONPATH=. python results/postln-L12/unigram.py results/postln-L12/unigram.json
(from the repository root, after `python prepare.py shakespeare_char`)"""
import json
import sys

import numpy as np

import data

d = data.load("shakespeare_char")
train, val = (np.asarray(d.tokens(split), dtype=np.int64) for split in ("train", "val"))
counts = np.bincount(train, minlength=d.vocab_size).astype(np.float64)
p = counts / counts.sum()
loss = float(-np.log(p[val]).mean())  # every val character occurs in train
out = {"unigram_val_loss": loss, "uniform_val_loss": float(np.log(d.vocab_size)),
       "train_chars": int(train.size), "val_chars": int(val.size), "vocab_size": d.vocab_size}
print(out)
open(sys.argv[1], "w").write(json.dumps(out, indent=2) + "\n")
