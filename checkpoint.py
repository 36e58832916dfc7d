"""
Checkpoints and the run directory: a versioned dict written durably (data.write_atomic), with a
sha256 of its contents checked on load (weights_only=True); out_dir's lock,
log.jsonl trimmed on resume.

    save_checkpoint(out / "ckpt_last.pt", model_state, optimizer_states, scaler, step, best, cfg,
                    model_cfg, data, metrics)
    ckpt = load_checkpoint("out-shakespeare-char/ckpt_best.pt")   # CheckpointError names a bad file
    model = model_from_checkpoint(ckpt, dropout=0.0)
"""
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from configurator import ConfigError, model_config
from data import write_atomic
from model import Transformer
from parallel import sharded

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def last_good(out_dir):
    """Where a run's last good checkpoint is, said for an error message."""
    path = Path(out_dir) / "ckpt_last.pt"
    return (f"the last good checkpoint is {path}" if path.is_file()
            else "no checkpoint was written yet")


def write_failure(e, path):
    """Why writing path failed, in words, with the space left there: a full disk is the usual
    cause, and torch.save's own errors say little of it ('unexpected pos ...')."""
    why = e.strerror if isinstance(e, OSError) and e.strerror else \
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        why += f"; {shutil.disk_usage(Path(path).parent).free / 2**20:,.0f} MiB free there"
    except OSError:
        pass
    return why


def state_digest(obj, h=None):
    """sha256 over every tensor's bytes and every other value of a checkpoint, in order. torch.load
    checks no checksum, so a byte changed in place would otherwise load as a
    silently different model."""
    h = h or hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        for k, v in obj.items():
            h.update(repr(k).encode())
            state_digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)}".encode())
        for v in obj:
            state_digest(v, h)
    else:
        h.update(repr(obj).encode())
    return h.hexdigest()


def rng_state():
    """This process's random generators: dropout draws from them (the data order needs no state,
    see train.Batches)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def rng_of_every_process(world, device):
    """Every process's generators, in rank order (all processes take part), or None with one:
    the CPU's and those of its own device, the one GPU it draws on (a resume may give a rank
    another GPU)."""
    if world == 1:
        return None
    states = [None] * world
    torch.distributed.all_gather_object(states, {
        "torch": torch.get_rng_state(),
        "device": torch.cuda.get_rng_state(device) if device.type == "cuda" else None})
    return states


def save_checkpoint(path, model_state, optimizer_states, scaler, step, best, cfg, model_cfg, data,
                    metrics, average=None, rng_ranks=None):

    state = {
        "version": CHECKPOINT_VERSION,
        "model": model_state, "optimizers": optimizer_states,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step, "best": best, "metrics": metrics,
        "average": average,  # optimizers.WeightAverage's state, with ema_decay > 0
        "config": {"train": asdict(cfg), "model": asdict(model_cfg)},
        "data": {"name": data.name, "meta": data.meta},
        "rng": rng_state(),  # rank 0's (or the one process's)
        "rng_ranks": rng_ranks,  # several processes: each one's (rng_of_every_process)
    }
    state["digest"] = state_digest(state)  # checked by load_checkpoint
    try:  # data.write_atomic: a crash or a power cut leaves the old checkpoint or the whole new one
        write_atomic(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as e:  # a full disk, an unwritable directory
        raise CheckpointError(f"cannot write checkpoint {path}: {write_failure(e, path)}; "
                              f"{last_good(Path(path).parent)}") from None


def load_checkpoint(path):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, wrong format: all end here
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be loaded "
                              f"({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not a version-{CHECKPOINT_VERSION} checkpoint of this project")
    digest = ckpt.pop("digest", None)  # checkpoints written before the digest existed have none
    if digest is not None and state_digest(ckpt) != digest:
        raise CheckpointError(f"{path} is damaged: its contents no longer match the checksum "
                              f"written with it; use another checkpoint of the run, or train it "
                              f"again (--overwrite=true)")
    return ckpt


# FSDP: the sharded state is gathered into whole tensors on rank 0's CPU and written as the one file
# a single process writes, so sample.py, eval_only and a resume with any number of processes read it
# unchanged. The price: rank 0's host memory holds the whole model and optimizer state while saving
# (16 bytes a parameter with AdamW: 12 GB for 774M parameters), and every process reads the whole
# file on resume. A model too large for that would need sharded files
# (torch.distributed.checkpoint.save).

def gather_state(model, optimizers):
    """(model state dict, optimizer state dicts) as one process would save them. If FSDP shards the
    model, every process must call this, and only rank 0 gets the tensors."""
    if not sharded(model):
        return model.state_dict(), [o.state_dict() for o in optimizers]
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optimizer_states = [get_optimizer_state_dict(model, o, options=options) for o in optimizers]
    return get_model_state_dict(model, options=options), [
        relabel(state, {name: i for i, name in
                        enumerate(n for g in state["param_groups"] for n in g["params"])})
        if state else state for state in optimizer_states]


def load_optimizer_states(model, optimizers, states):
    """The inverse of gather_state for the optimizers: whole tensors in, each
    process keeps its shards."""
    if not sharded(model):
        for opt, state in zip(optimizers, states):
            opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    names = {p: name for name, p in model.named_parameters()}
    for opt, state in zip(optimizers, states):
        order = [names[p] for g in opt.param_groups for p in g["params"]]
        # how torch.optim.AdamW computes is this run's choice, not the file's: a state saved by
        # optimizers.AdamW names no kernel, and loading it would drop fused=True
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
        set_optimizer_state_dict(model, opt, relabel(state, dict(enumerate(order))),
                                 options=StateDictOptions(full_state_dict=True))
        for group, kept in zip(opt.param_groups, kernels):
            group.update(kept)


def relabel(state, key):
    """An optimizer state dict with every parameter key k replaced by key[k]. torch.optim keys its
    state by position (0, 1, ... over the param groups in order);
    torch.distributed.checkpoint by name."""
    return {"state": {key[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [key[k] for k in g["params"]]}
                             for g in state["param_groups"]]}


def model_from_checkpoint(ckpt, **overrides):
    """The raw model of a checkpoint (strict key matching) and its config."""
    model_cfg = model_config({**ckpt["config"]["model"], **overrides})
    model = Transformer(model_cfg)
    model.load_state_dict(ckpt["model"], strict=True)
    return model

def lock_out_dir(out, stack):
    """Hold an exclusive lock on out_dir/train.lock until stack closes; the OS drops it when the
    process ends, however it ends. A second run into the same out_dir stops at once
    instead of writing over it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    f = stack.enter_context(open(out / "train.lock", "a+"))
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        raise ConfigError(f"out_dir {str(out)!r} is in use by another training run "
                          f"(pid {f.read().strip() or '?'}): let it finish or stop it, "
                          f"or choose another --out_dir") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()


def writable_problem(path):
    """Why a directory could not be created or written, checked without
    creating it; None if it can."""
    path = Path(path).absolute()
    probe = next(p for p in (path, *path.parents) if p.exists())
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    return None


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def trim_log(out, step):
    """On resume, drop log records past the checkpoint (they belong to the interrupted tail). The
    checkpoint of step `step` is written after that step's evaluation and before its training step,
    so the evaluation record of `step` stays and its training record goes (the
    resumed run writes it)."""
    path = out / "log.jsonl"
    if step == 0:
        path.unlink(missing_ok=True)
    elif path.exists():
        def kept(line):  # the step of a damaged line is inf: dropped
            at = line_step(line)
            return at < step or (at == step and json.loads(line).get("kind") == "eval")
        keep = [line for line in path.read_text(errors="replace").splitlines()
                if line and kept(line)]
        write_atomic(path, "".join(line + "\n" for line in keep))


def line_step(line):
    """The step of a log.jsonl line; a line damaged in place (or cut off by a
    crash) counts as past any."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf

