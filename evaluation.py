"""
Exact evaluation: a model's metrics over a whole split (never random batches, which blur ablation
deltas), sharded over processes and all-reduced. Language models: loss, perplexity, bits per token
and per character; classifiers: accuracy, macro-F1, per-class scores and the confusion matrix.
Dynamic evaluation of a language model (dynamic_evaluate) is a separate figure.

    metrics = evaluate(raw, data, "val", cfg, device, autocast)   # {"loss": ..., "perplexity": ...}
    print(headline(metrics))  # loss 1.4712 | perplexity 4.3553 | ...
"""
import functools
import math
import sys
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from data import SEED, cls_eval_batches, lm_eval_batches, mlm_mask
from parallel import all_reduce, sharded


@torch.no_grad()
def evaluate(model, data, split, cfg, device, autocast, rank=0, world=1, stride=None):
    """Metrics over the whole split. Batches are sharded over processes and the sums all-reduced.
    Language models are scored with cfg.eval_stride (or stride): see data.lm_eval_batches.
    Always eager: compiling the inference shapes too would cost more than a few evaluations take."""
    with eager():
        return _evaluate(model, data, split, cfg, device, autocast, rank, world, stride)


def eager():
    """Compiled code runs its original Python inside the block. If the compiler was never
    imported, nothing is compiled, and importing it (for set_stance) would cost seconds."""
    if "torch._dynamo" not in sys.modules:
        return nullcontext()
    return torch.compiler.set_stance("force_eager")


def _evaluate(model, data, split, cfg, device, autocast, rank, world, stride=None):
    model.eval()
    block_size = model.config.block_size
    if data.task != "cls":  # language models: the summed next-token (lm) or masked-token (mlm) loss
        window = cfg.eval_context or block_size  # the evaluation window (eval_context)
        masked = data.task == "mlm"
        stride = 0 if masked else cfg.eval_stride if stride is None else stride
        generator = torch.Generator().manual_seed(SEED)  # mlm: the same masks at every evaluation
        tokens = split_on_device(data, split, device)
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss (nats), targets
        for i, (x, y) in enumerate(lm_eval_batches(tokens, cfg.eval_batch_size, window, stride)):
            if masked:  # every process draws every batch's masks, so that all draw the same ones
                x, y = mlm_mask(x, data.mask_id, data.vocab_size, generator)
            if i % world == rank:
                with autocast:
                    logits, _ = model(x, window=window)
                sums[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                           ignore_index=-1, reduction="sum")
                sums[1] += (y >= 0).sum()
        # one batch fewer than some others: FSDP's forward gathers the weights with every process,
        # so each runs as many forwards
        if sharded(model) and rank >= (i + 1) % world > 0:
            with autocast:
                model(x, window=window)
        all_reduce(sums, world)
        metrics = lm_metrics(sums[0].item(), int(sums[1].item()), data, split)
        if not masked:
            metrics["eval_stride"] = stride
            if window != block_size:
                metrics["eval_context"] = window
    else:
        tokens, offsets, labels = data.examples(split)
        preds, loss_sum = [], torch.zeros((), dtype=torch.float64, device=device)
        for x, mask, y in cls_eval_batches(tokens, offsets, labels, cfg.eval_batch_size,
                                           block_size, data.pad_id, device):
            with autocast:
                logits, _ = model(x, attention_mask=mask)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            preds.append(logits.argmax(-1).cpu())
        preds = torch.cat(preds).numpy()
        metrics = {"loss": loss_sum.item() / len(labels),
                   **classification_metrics(preds, labels, data.label_names)}
    if sharded(model):  # FSDP keeps the root's weights gathered after a forward, for the backward
        model.reshard()  # that usually follows: free them, and hand the optimizer its shards back
    model.train()
    return metrics


def dynamic_evaluate(model, data, split, cfg, device, autocast, lr, decay=0.0):
    """Dynamic evaluation (Krause et al. 2018, the SGD form with a decay to the trained weights): a
    language model's split scored in order, one window at a time (cfg.eval_stride's windows, so
    every target once, as evaluate scores them), and after each window is scored, one SGD step of
    learning rate lr on the mean loss of the targets it scored, then the weights pulled a fraction
    decay of the way back to the trained ones. The model adapts to the text it has already been
    scored on, never to a token before scoring it. A figure apart from the static one (evaluate),
    which it never replaces; the trained weights are restored afterwards. One process; dropout off."""
    if data.task != "lm":
        raise ValueError(f"dynamic evaluation scores language models; {data.name!r} is a "
                         f"{data.task} data set")
    params = [p for p in model.parameters() if p.requires_grad]
    weights = [p.detach() for p in params]
    trained = [w.clone() for w in weights]
    tokens = split_on_device(data, split, device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss (nats), targets
    model.eval()
    try:
        with eager():
            window = cfg.eval_context or model.config.block_size
            for x, y in lm_eval_batches(tokens, 1, window, cfg.eval_stride):
                with autocast:
                    logits, _ = model(x, window=window)
                nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1,
                                       reduction="sum")
                n = (y >= 0).sum()
                sums += torch.stack([nats.detach().double(), n.double()])
                grads = torch.autograd.grad(nats / n.clamp(min=1), params)
                with torch.no_grad():  # scored first, then learned from
                    torch._foreach_add_(weights, grads, alpha=-lr)
                    if decay:
                        torch._foreach_lerp_(weights, trained, decay)
    finally:
        with torch.no_grad():
            torch._foreach_copy_(weights, trained)
        model.train()
    metrics = lm_metrics(sums[0].item(), int(sums[1].item()), data, split)
    return {**metrics, "eval_stride": cfg.eval_stride, "dynamic_lr": lr, "dynamic_decay": decay}


def lm_metrics(nats, n_targets, data, split):
    """Loss per token, perplexity, and bits per token; bits per character for text tokenizers."""
    loss = nats / n_targets
    m = {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
         "tokens": n_targets}
    if data.meta["tokenizer"]["kind"] in ("char", "tiktoken"):
        m["bits_per_char"] = nats / math.log(2) / target_chars(data, split)
    return m


# evaluation runs every eval_interval steps: load each split and count its characters only once
# (Batches takes the train split from here too)
@functools.lru_cache(maxsize=8)
def split_on_device(data, split, device):
    return torch.from_numpy(np.asarray(data.tokens(split), dtype=np.int64)).to(device)


@functools.lru_cache(maxsize=8)
def target_chars(data, split):
    """Characters the targets spell out (every token but the first)."""
    return len(data.decode(np.asarray(data.tokens(split)[1:], dtype=np.int64).tolist()))


def classification_metrics(pred, true, label_names):
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: true).
    A 0/0 precision or recall counts as 0 (scikit-learn's zero_division=0). Macro-F1 averages over
    the classes that occur in true or pred, as scikit-learn's f1_score(average='macro') does without
    labels=: a class absent from both (say from a small test split) has no F1 to count, not an F1 of
    0."""
    k = len(label_names)
    pred, true = np.asarray(pred, dtype=np.int64), np.asarray(true, dtype=np.int64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros(k), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros(k), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    per_class = {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                        "support": int(s)}
                 for name, p, r, f, s in zip(label_names, precision, recall, f1, confusion.sum(1))}
    present = (confusion.sum(0) > 0) | (confusion.sum(1) > 0)
    macro_f1 = float(f1[present].mean()) if present.any() else 0.0
    return {"accuracy": float(tp.sum() / max(1, len(true))), "macro_f1": macro_f1,
            "per_class": per_class, "confusion": confusion.tolist(), "labels": list(label_names)}


def headline(metrics):
    keys = ("loss", "perplexity", "bits_per_char", "accuracy", "macro_f1")
    return " | ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)

