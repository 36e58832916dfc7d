"""
Train a Transformer language model or classifier; the task follows from the data set.

    python train.py config/shakespeare.py                      # the main job, one GPU
    python train.py config/shakespeare_cpu.py --max_iters=500  # minutes on a laptop CPU
    python train.py config/sst2.py --compile=false --seed=2
    torchrun --standalone --nproc_per_node=4 train.py config/shakespeare.py
    torchrun --standalone --nproc_per_node=8 train.py config/shakespeare.py \\
        --parallel=fsdp                                        # sharded
    python train.py --help                                     # every key, its default and meaning

Multi-node: run the same torchrun command on every node with --nnodes=N --node_rank=i
--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT (HOST being node 0); rank 0 writes all files.
--parallel=ddp keeps the whole model, its gradients and optimizer state in every process;
--parallel=fsdp shards all three over the processes, for models that do not fit on one
GPU (see parallelize()).
"""
import json
import math
import os
import signal
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

import prepare
from checkpoint import (CheckpointError, gather_state, last_good, load_checkpoint,
                        load_optimizer_states, lock_out_dir, rng_of_every_process, save_checkpoint,
                        trim_log, write_json, writable_problem)
from configurator import (DATA_KEYS, DEFAULTS, MODEL_KEYS, TRAIN_KEYS, ConfigError,  # noqa: F401
                          TrainConfig, eval_window_errors, model_config, parse_args,
                          print_help)  # (the keys are re-exported)
from data import (Data, DataError, cls_batch, cls_batches_of_every_length, lm_batch,
                  mlm_mask)
from evaluation import dynamic_evaluate, evaluate, headline, split_on_device
from model import Transformer, TransformerConfig
from optimizers import WeightAverage, lr_at, make_optimizers
from parallel import GraphedStep, all_reduce, parallelize, setup_distributed, sharded


# ----------------------------------------------------------------------------------------------
# device and precision

# Dense bf16 peak of each accelerator, FLOP/s (vendor datasheets, without sparsity), for MFU.
PEAK_BF16_FLOPS = [("H200", 989e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12),
                   ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12),
                   ("A10", 125e12)]


def peak_flops(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def resolve_device(name):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name, device):
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if native_bf16() else torch.float16
    return torch.float32


def native_bf16():
    """bf16 units in this GPU. torch.cuda.is_bf16_supported() alone also says yes where bf16 is only
    emulated (e.g. a V100 or T4 on torch >= 2.4), which is slower than fp16 with a GradScaler."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4 has no such argument and counts native support only
        return torch.cuda.is_bf16_supported()


# ----------------------------------------------------------------------------------------------
# data: a pure function of (seed, step), so resuming and DDP need no sampler state

def seeded(*key):
    """A torch.Generator seeded from a tuple of non-negative ints, well mixed
    (numpy SeedSequence)."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))


class Batches:
    """Training batches of one data set, on the training device.

    Each optimizer step draws one global batch (batch_size * grad_accum * world_size sequences)
    from seeded(seed, step); micro-batch g = micro * world_size + rank takes its rows g*B:(g+1)*B.
    So the data depends only on the step: a resumed run sees what an uninterrupted one would, and
    2 processes x 1 micro-batch, 1 process x 2 micro-batches and 1 process x 1 batch twice as large
    all train on the very same sequences.
    """

    def __init__(self, data, cfg, block_size, device, world):
        self.data, self.cfg, self.block_size, self.device, self.world = \
            data, cfg, block_size, device, world
        self.global_size = cfg.batch_size * cfg.grad_accum * world
        self.step, self.batch, self.task = None, None, data.task
        if data.task != "cls":  # the whole split lives on the device: tiny next to the model
            self.train = split_on_device(data, "train", device)
        else:
            self.tokens, self.offsets, self.labels = data.examples("train")
            self.epoch, self.perm = -1, None

    def get(self, step, micro, rank):
        cfg, B = self.cfg, self.cfg.batch_size
        rows = slice((micro * self.world + rank) * B, (micro * self.world + rank + 1) * B)
        if self.data.task != "cls":
            if step != self.step:
                generator = seeded(cfg.seed, 0, step)
                self.step, self.batch = step, lm_batch(self.train, self.global_size,
                                                       self.block_size, generator)
                # the same windows, masked; the targets are the hidden tokens
                if self.data.task == "mlm":
                    self.batch = mlm_mask(self.batch[0], self.data.mask_id, self.data.vocab_size,
                                          generator)
            return self.batch[0][rows], self.batch[1][rows]
        # classification: epochs without replacement, one fixed permutation per epoch
        n = len(self.labels)
        first = step * self.global_size + rows.start  # global example counter
        idx = [self._example(first + i, n) for i in range(B)]
        return cls_batch(self.tokens, self.offsets, self.labels, idx, self.block_size,
                         self.data.pad_id, self.device)

    def _example(self, counter, n):
        epoch = counter // n
        if epoch != self.epoch:
            self.epoch, self.perm = epoch, torch.randperm(
                n, generator=seeded(self.cfg.seed, 1, epoch))
        return int(self.perm[counter % n])


def load_data(cfg, quiet=False):
    """The prepared data set, preparing it first if its files are missing."""
    try:
        return Data(cfg.dataset, cfg.data_dir)
    except DataError as e:
        if not quiet:
            print(f"data set {cfg.dataset!r} in {cfg.data_dir}/ must be prepared "
                  f"({str(e).partition(': run `')[0]}): preparing it now")
        try:
            prepare.prepare(cfg.dataset, data_dir=cfg.data_dir, quiet=quiet)
        except DataError as e:
            raise DataError(f"{e}\nprepare it by hand, e.g. with a local copy: `python prepare.py "
                            f"{cfg.dataset} --data_dir {cfg.data_dir} --source PATH`") from None
        return Data(cfg.dataset, cfg.data_dir)


# ----------------------------------------------------------------------------------------------
# one optimizer step

class Stop(Exception):
    """Training cannot go on (non-finite loss); the message says what happened and what is kept."""


class NonFinite(Exception):
    pass


def train_step(model, raw, optimizers, scaler, batches, step, cfg, rank=0, world=1,
               autocast=nullcontext(), graphed=None, stop=False):
    """One optimizer step over grad_accum micro-batches. Returns (loss, grad norm, lr, tokens,
    stop): the loss averaged over all processes, tokens the real (not padding) tokens all of them
    trained on, and stop, whether any process was asked to stop (its argument stop);
    raises NonFinite, before the update, if the loss or the gradient norm is inf or nan.
    model may be compiled and DDP-wrapped; raw is the plain module underneath (FSDP: sharded in
    place); graphed, a GraphedStep, replaces the forward and backward passes."""
    lr = lr_at(step, cfg)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # layer_lr_decay's scale, if any
    loss_sum = torch.zeros((), device=next(raw.parameters()).device)
    tokens = torch.zeros((), device=loss_sum.device)
    for micro in range(cfg.grad_accum):
        batch = batches.get(step, micro, rank)
        if graphed is not None:
            loss_sum += graphed(*batch)
            tokens += batch[0].numel() if batches.task != "cls" else batch[1].sum()
            continue
        # DDP: all-reduce on the last micro-step only. FSDP reduce-scatters at every micro-step:
        # skipping it (set_requires_gradient_sync(False)) would keep whole gradients in every
        # process, which is the very memory that sharding saves
        sync = world == 1 or micro == cfg.grad_accum - 1 or sharded(raw)
        with (nullcontext() if sync else model.no_sync()), autocast:
            if batches.task != "cls":
                _, loss = model(batch[0], batch[1], return_logits=False)
                tokens += batch[0].numel()
            else:
                _, loss = model(batch[0], batch[2], attention_mask=batch[1], return_logits=False)
                tokens += batch[1].sum()
            loss = loss / cfg.grad_accum  # the mean over the whole accumulated batch
        (scaler.scale(loss) if scaler else loss).backward()
        loss_sum += loss.detach()
    if scaler:
        for opt in optimizers:
            scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
    grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip or float("inf"))
    if sharded(raw):  # the norm over every process's shards, a replicated DTensor
        grad_norm = grad_norm.full_tensor()
    # DDP: loss, tokens and stop requests summed over the processes, so that all of them log the
    # same loss and stop at the same step (a process that went on alone would
    # hang in the next all-reduce)
    shared = torch.stack([loss_sum, tokens, torch.full((), float(stop), device=tokens.device)])
    all_reduce(shared, world)
    # the one sync
    loss_value, n_tokens, stop, grad_value = torch.cat([shared, grad_norm.float()[None]]).tolist()
    loss_value /= world
    if not math.isfinite(loss_value):
        raise NonFinite(f"non-finite loss ({loss_value})")
    # fp16: the scaler skips overflowed steps itself
    if not math.isfinite(grad_value) and not scaler:
        raise NonFinite(f"non-finite gradient norm ({grad_value})")
    for opt in optimizers:
        if scaler:
            scaler.step(opt)
        else:
            opt.step()
        # a graph's gradients stay where it recorded them
        opt.zero_grad(set_to_none=graphed is None)
    if scaler:
        scaler.update()
    return loss_value, grad_value, lr, n_tokens, stop > 0


# ----------------------------------------------------------------------------------------------
# the training run: set-up, then the loop (evaluate and checkpoint, stop, step, log)

def train(cfg, model_kw, quiet=False):
    """Run (or resume, or evaluate) according to cfg. Returns the final metrics dict."""
    with ExitStack() as stack:  # holds out_dir's lock for the run
        run = setup_run(cfg, model_kw, quiet)
        if cfg.eval_only:
            result = evaluate_only(run)
            end_processes(run)
            return result
        open_out_dir(run, stack)  # only now: a run refused during set-up leaves out_dir as it was
        with signals_set_a_flag(run) as signalled:
            step = train_loop(run, signalled)
        if not cfg.save_checkpoints:
            run.checkpoint(step)
            if run.average is not None:  # the weights evaluated, which eval_only then scores
                with run.evaluated_weights():
                    run.checkpoint(step, "ckpt_best.pt")
        result = {"step": step, "best_val": run.best, "wall_s": time.time() - run.t_start,
                  "params": run.raw.num_params(), "split": "val", **(run.last_metrics or {})}
        if run.master:
            write_json(run.out / "metrics.json", result)
        end_processes(run)
        return result


def end_processes(run):
    """Under torchrun: every process reaches the end before any leaves the group, so that none is
    cut off mid-exchange by another's exit."""
    if run.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def train_loop(run, signalled):
    """nanochat's shape: evaluate and save first, break on the last step, then one optimisation
    step. signalled: this process's signals (a list that signals_set_a_flag fills).
    Returns the last step."""
    cfg, say = run.cfg, run.say
    progress = Progress(run)
    say(f"training {cfg.max_iters} steps of {progress.tokens_per_step:,} tokens"
        f"{'' if run.start == 0 else f' from step {run.start}'}; logs in {run.out / 'log.jsonl'} | "
        f"{time.time() - run.t_start:.1f} s")
    step, stop = run.start, False  # stop: agreed by all processes (train_step)
    try:
        for step in range(run.start, cfg.max_iters + 1):
            last = step == cfg.max_iters
            if step != run.start and (step % cfg.eval_interval == 0 or last):
                if evaluate_and_checkpoint(run, step, progress):  # stop_at_loss reached
                    break
            if last:
                break
            if (stop or (run.world == 1 and signalled)
                    or (cfg.stop_after and step - run.start == cfg.stop_after)):
                run.checkpoint(step)
                say(f"stopped at step {step} ({'signal' if stop or signalled else 'stop_after'}); "
                    f"saved {run.out / 'ckpt_last.pt'}; continue with --init_from=resume")
                break

            t_step = time.time()
            try:
                loss, grad_norm, lr, n_tokens, stop = train_step(
                    run.model, run.raw, run.optimizers, run.scaler, run.batches, step, cfg,
                    run.rank, run.world, run.autocast, run.graphed, stop=bool(signalled))
            except NonFinite as e:
                raise Stop(f"{e} at step {step}: stopped before the optimizer step; "
                           f"{last_good(run.out)}. Lower learning_rate (now {cfg.learning_rate}) "
                           f"or raise warmup_iters (now {cfg.warmup_iters}).") from None
            if run.average is not None:
                run.average.update()
            progress.log_step(step, t_step, loss, grad_norm, lr, n_tokens)
    except OSError as e:
        # a full disk while logging: the checkpoints themselves raise CheckpointError
        raise Stop(f"cannot write {e.filename}: {e.strerror}; {last_good(run.out)}") from None
    return step


def evaluate_and_checkpoint(run, step, progress):
    """The exact val evaluation of step: logged, saved as ckpt_last.pt (and ckpt_best.pt when it is
    the best so far). With ema_decay the averaged weights are evaluated, and ckpt_best.pt holds
    them; ckpt_last.pt holds the trained ones and the average. Returns True when stop_at_loss is
    reached."""
    cfg, data = run.cfg, run.data
    t_eval = time.time()
    with run.evaluated_weights():
        run.last_metrics = m = evaluate(run.raw, data, "val", cfg, run.device, run.autocast,
                                        run.rank, run.world)
    elapsed = time.time() - run.t_start
    metric, higher_better = ("accuracy", True) if data.task == "cls" else ("loss", False)
    improved = run.best is None or (m[metric] > run.best if higher_better else m[metric] < run.best)
    if run.world > 1:  # every process takes part in saving ckpt_best.pt: rank 0 decides for all
        flag = torch.tensor([float(improved)], device=run.device)
        torch.distributed.broadcast(flag, 0)
        improved = bool(flag.item())
    if improved:
        run.best = m[metric]
    run.say(f"step {step}: val {headline(m)}{' (best)' if improved else ''} | {elapsed:.1f} s")
    if run.master:
        log_line(run.out, {"kind": "eval", "step": step, "split": "val", "time": elapsed,
                           "unix_time": time.time(), **m})
    if cfg.save_checkpoints:
        run.checkpoint(step)  # the trained weights (and their average, to resume)
        if improved:  # the weights evaluated
            with run.evaluated_weights():
                run.checkpoint(step, "ckpt_best.pt")
    progress.eval_s = time.time() - t_eval  # the whole pause, for the ETA: checkpoints included
    if cfg.stop_at_loss and m["loss"] <= cfg.stop_at_loss:  # (configurator: language models only)
        run.say(f"val loss {m['loss']:.4f} <= stop_at_loss={cfg.stop_at_loss} at step {step}, "
                f"{elapsed:.1f} s into the run")
        return True
    return False


def evaluate_only(run):
    """eval_only: the checkpoint's metrics on eval_split, written to metrics_SPLIT.json beside the
    training run's metrics.json, never over it."""
    cfg, split = run.cfg, run.cfg.eval_split
    if cfg.dynamic_lr and run.world > 1:
        raise ConfigError("dynamic evaluation scores the split in order in one process; run "
                          "it without torchrun")
    metrics = evaluate(run.raw, run.data, split, cfg, run.device, run.autocast, run.rank, run.world)
    if run.data.task == "lm" and cfg.eval_stride:  # the separate-window figure too, for comparison
        windows = evaluate(run.raw, run.data, split, cfg, run.device, run.autocast, run.rank,
                           run.world, stride=0)
        metrics["separate_windows"] = {k: windows[k] for k in ("loss", "perplexity")}
    if cfg.dynamic_lr:  # a figure apart: the static one above stays the result
        dynamic = dynamic_evaluate(run.raw, run.data, split, cfg, run.device, run.autocast,
                                   cfg.dynamic_lr, cfg.dynamic_decay)
        metrics["dynamic"] = {k: dynamic[k] for k in ("loss", "perplexity", "dynamic_lr",
                                                      "dynamic_decay")}
        run.say(f"{split}, dynamic evaluation (lr {cfg.dynamic_lr}, decay {cfg.dynamic_decay}): "
                f"loss {dynamic['loss']:.4f} | perplexity {dynamic['perplexity']:.4f}")
    result = {"split": split, "step": run.ckpt["step"], "checkpoint": str(run.ckpt_path), **metrics}
    if run.master:
        write_json(run.out / f"metrics_{split}.json", result)
    run.say(f"{split}: {headline(metrics)} (step {run.ckpt['step']}) "
            f"-> {run.out / f'metrics_{split}.json'}")
    return result


@contextmanager
def signals_set_a_flag(run):
    """SIGINT and SIGTERM only append to the yielded list (and say so); the loop saves at the next
    step boundary. A second signal stops at once, keeping the last checkpoint written."""
    signalled, handlers = [], {}

    def on_signal(sig, frame):
        if signalled:
            raise KeyboardInterrupt
        run.say(f"\n{signal.Signals(sig).name}: stopping after this step, then saving "
                f"{run.out / 'ckpt_last.pt'} (a second signal stops at once)", flush=True)
        signalled.append(sig)

    if run.master or run.world > 1:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread
                pass
    try:
        yield signalled
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def log_line(out_dir, record):
    with open(Path(out_dir) / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


PROGRESS_S = 60  # the longest silence between progress lines, seconds


class Progress:
    """The per-step log: a record in log.jsonl every log_interval steps, and a line on the screen at
    those steps and at least every PROGRESS_S seconds. Step time is the median over the interval
    (robust to evaluation pauses); MFU against one GPU's peak; the ETA from the measured steps."""

    def __init__(self, run):
        self.run = run
        self.tokens_per_step = (run.cfg.batch_size * run.model_cfg.block_size * run.cfg.grad_accum
                                * run.world)
        # tokens: at most, for classifiers
        self.flops_per_token = run.raw.flops_per_token(run.model_cfg.block_size)
        self.peak = peak_flops(run.device)
        self.val_tokens = run.data.meta["splits"]["val"]["tokens"]
        # before an evaluation is timed, its checkpoints are guessed: ckpt_last.pt and ckpt_best.pt,
        # each the weights, two optimizer moments and any weight average in fp32, written at
        # CHECKPOINT_BYTES_PER_S
        self.ckpt_s = (checkpoint_bytes(run.raw, run.cfg) / CHECKPOINT_BYTES_PER_S
                       if run.cfg.save_checkpoints else 0.0)
        self.t_log, self.step_ms, self.step_tokens = time.time(), [], []
        # measured: steps after this process's first
        self.t_said, self.measured, self.eval_s = time.time(), [], None

    def log_step(self, step, t_step, loss, grad_norm, lr, n_tokens):
        run, cfg = self.run, self.run.cfg
        now = time.time()
        self.step_ms.append((now - self.t_log) * 1000)
        # all processes'; classification: real tokens, padding not counted
        self.step_tokens.append(n_tokens)
        self.t_log = now
        # the first step of a process also compiles and warms up: not a measure
        if step == run.start:
            self.start_up(step, now - t_step)
        else:
            self.measured = self.measured[-99:] + [now - t_step]
            if (len(self.measured) == 3 and run.verbose and run.device.type == "cpu"
                    and cfg.cpu_config):
                run.say(cpu_notice(cfg, sorted(self.measured)[1],
                                   self.flops_per_token * self.tokens_per_step))
        due = step % cfg.log_interval == 0
        # a line at least a minute
        if not (run.master and (due or now - self.t_said >= PROGRESS_S)):
            return
        self.t_said = now
        # median over the interval: robust to eval pauses
        ms = sorted(self.step_ms)[len(self.step_ms) // 2]
        tps = sum(self.step_tokens) / len(self.step_tokens) / (ms / 1000)
        self.step_ms, self.step_tokens = [], []
        # peak: one GPU's
        mfu = self.flops_per_token * tps / run.world / self.peak if self.peak else None
        mem = (torch.cuda.max_memory_allocated(run.device) / 2**30 if run.device.type == "cuda"
               else None)
        if due:
            log_line(run.out, {"kind": "train", "step": step, "loss": loss, "lr": lr,
                               "grad_norm": grad_norm, "ms_per_step": ms, "tokens_per_s": tps,
                               "mfu": mfu, "mem_gb": mem, "time": now - run.t_start})
        eta = eta_text(self.measured, self.eval_s, step, cfg, self.val_tokens, self.tokens_per_step,
                       self.ckpt_s)
        run.say(f"step {step:>6}/{cfg.max_iters} | loss {loss:.4f} | lr {lr:.2e} | "
                f"gnorm {grad_norm:.2f} | {ms:6.1f} ms | {tps / 1e3:7.1f}k tok/s | "
                f"MFU {f'{mfu:.1%}' if mfu else 'n/a'} | "
                f"mem {f'{mem:.1f} GB' if mem else 'n/a'} | ETA {eta}")


    def start_up(self, step, first_step_s):
        """One record and line: the set-up stages, the first step (compilation happens there) and
        the time since set-up began; imports before it are the process's own
        (time_to_loss counts them)."""
        run = self.run
        stages = {**run.setup_s, "first_step": first_step_s}
        if run.master:
            log_line(run.out, {"kind": "startup", "step": step, "unix_start": run.t_start,
                               "stages_s": stages, "time": time.time() - run.t_start})
        run.say("start-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
                + f" | {time.time() - run.t_start:.1f} s")


# used only until the first evaluation is timed: about what an H200 machine's disk took for the
# two 79 MB checkpoints of config/sst2.py, serialisation included (results/speed-2026-12-01d,
# measured before checkpoints were synced to the disk)
CHECKPOINT_BYTES_PER_S = 0.5e9


def checkpoint_bytes(model, cfg):
    """About what the two checkpoints of one evaluation hold: per parameter, in fp32, the weight,
    AdamW's two moments (Muon keeps one; the guess keeps two) and, with ema_decay, the average."""
    return 2 * 4 * (3 + bool(cfg.ema_decay)) * sum(p.numel() for p in model.parameters())


def eta_text(measured, eval_s, step, cfg, val_tokens, tokens_per_step, ckpt_s=0.0):
    """Time left: the median of the measured steps times the steps left, plus the evaluations left
    at the last one's duration (its checkpoints included). Not from the run's wall time, which
    holds the first step's compilation. Before an evaluation is timed, one is guessed: a forward
    pass (a third of a step's work) over the val split, plus ckpt_s for its checkpoints."""
    if not measured:
        return "after the next step"
    step_s = sorted(measured)[len(measured) // 2]
    if eval_s is None:
        eval_s = step_s * val_tokens / tokens_per_step / 3 + ckpt_s
    evals = (cfg.max_iters // cfg.eval_interval - step // cfg.eval_interval
             + bool(cfg.max_iters % cfg.eval_interval))
    return format_seconds(step_s * (cfg.max_iters - step - 1) + eval_s * evals)


def format_seconds(s):
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cpu_notice(cfg, step_s, flops_per_step):
    """On a CPU, once a few steps are measured: how long this config takes here, and the smaller
    one. From this run's own steps: timing a matmul instead reads whatever else
    loads the machine then."""
    rate = flops_per_step / step_s  # FLOP/s this machine reaches on this model
    path = (cfg.cpu_config if Path(cfg.cpu_config).is_file()
            else Path(__file__).parent / cfg.cpu_config)
    alt, alt_kw = parse_args([str(path)])
    alt_model = Transformer(model_config(alt_kw, vocab_size=65))
    T = alt_model.config.block_size
    alt_flops = alt_model.flops_per_token(T) * alt.batch_size * T * alt.grad_accum * alt.max_iters
    return (f"note: at {step_s:.2f} s a step this config takes about "
            f"{format_seconds(step_s * cfg.max_iters)} on this CPU; {cfg.cpu_config} trains a "
            f"smaller model here in about {format_seconds(alt_flops / rate)}")


# ----------------------------------------------------------------------------------------------
# set-up: processes and device, the starting point (fresh, resumed, fine-tuned), model, optimizers

@dataclass
class Run:
    """What set-up makes for the loop. The loop changes only best and last_metrics; eval_only runs
    have no optimizers, batches or wrapped model."""
    cfg: TrainConfig
    model_cfg: TransformerConfig
    data: Data
    out: Path
    device: torch.device
    dtype: torch.dtype
    autocast: object
    rank: int
    world: int
    say: object  # print, or nothing (quiet, or not rank 0)
    t_start: float
    raw: Transformer  # saved and evaluated (eagerly): never wrapped, though FSDP shards it in place
    ckpt: dict = None  # the checkpoint resumed or evaluated
    ckpt_path: Path = None
    model: object = None  # what training calls: raw, maybe compiled, DDP-wrapped
    optimizers: list = None
    scaler: object = None
    batches: Batches = None
    graphed: GraphedStep = None
    average: WeightAverage = None  # ema_decay > 0: the averaged weights, evaluated and kept best
    start: int = 0
    best: float = None
    last_metrics: dict = None
    verbose: bool = False  # rank 0, not quiet
    setup_s: dict = None  # seconds of each set-up stage of a training run (setup_run)

    @property
    def master(self):
        return self.rank == 0

    def evaluated_weights(self):
        """A block in which the model holds the weights that evaluation scores: the average
        (ema_decay), else the trained ones as they are."""
        return self.average.swapped_in() if self.average is not None else nullcontext()

    def checkpoint(self, step, which="ckpt_last.pt"):
        # every process takes part (FSDP's gathering, each one's random generators)
        model_state, optimizer_states = gather_state(self.raw, self.optimizers)
        rng_ranks = rng_of_every_process(self.world, self.device)
        if self.master:
            save_checkpoint(self.out / which, model_state, optimizer_states, self.scaler, step,
                            self.best, self.cfg, self.model_cfg, self.data, self.last_metrics,
                            self.average and self.average.state_dict(), rng_ranks)


def setup_run(cfg, model_kw, quiet=False):
    """Everything the loop needs, every check that can refuse the run done
    before out_dir is touched."""
    t_start = time.time()
    stages = Stages(t_start)
    rank, local_rank, world = setup_distributed(cfg)
    master = rank == 0
    say = print if master and not quiet else (lambda *a, **k: None)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    dtype = resolve_dtype(cfg.dtype, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
    out = Path(cfg.out_dir)
    if master and (problem := writable_problem(out)):  # before anything slow: say it now
        raise ConfigError(f"cannot write to out_dir {str(out)!r}: {problem}; "
                          f"choose another --out_dir")

    stages.done("device")
    ckpt, ckpt_path, encoder, data, model_cfg = starting_point(cfg, model_kw, out, master, quiet)
    stages.done("data")
    check_machine(cfg, model_cfg, device, dtype)
    raw = build_model(cfg, model_cfg, ckpt, encoder, device, rank, say)
    stages.done("model")
    say(f"{raw}\ndevice {device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}), "
        f"{str(dtype).removeprefix('torch.')}, {world} process(es), data {data!r}")
    run = Run(cfg, model_cfg, data, out, device, dtype, autocast, rank, world, say, t_start, raw,
              ckpt, ckpt_path, verbose=master and not quiet)
    if cfg.eval_only:
        return run

    run.model = parallelize(raw, cfg, device, dtype, world, local_rank, say)
    # compile=True: importing torch.compile (seconds; compiling comes later)
    stages.done("parallelize")
    run.optimizers = make_optimizers(raw, cfg, device, sharded=sharded(raw))
    run.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    run.average = WeightAverage(raw.parameters(), cfg.ema_decay) if cfg.ema_decay else None
    if ckpt is not None:
        restore_training_state(run, ckpt)
    run.batches = Batches(data, cfg, model_cfg.block_size, device, world)
    stages.done("optimizers")
    if cfg.cuda_graph and device.type != "cuda":
        say(f"note: cuda_graph=True needs a CUDA device; on {device.type} the steps run without")
    elif cfg.cuda_graph:  # recording runs the first forward and backward passes (and compiles them)
        example = run.batches.get(run.start, 0, rank)
        examples = [example] if data.task != "cls" else cls_batches_of_every_length(
            example, model_cfg.block_size, data.pad_id)
        run.graphed = GraphedStep(run.model, examples, 1 / cfg.grad_accum, dtype)
        stages.done("cuda_graph")
    if ckpt is not None:
        restore_rng(run, ckpt)  # last: the graph's warm-up passes above draw dropout masks
    run.setup_s = stages.seconds  # logged, with the first step's time, when that step is done
    if cfg.init_from == "resume":  # config.json and the checkpoints keep where the run first began
        run.cfg = replace(cfg, init_from=ckpt["config"]["train"]["init_from"])
    return run


class Stages:
    """Seconds of each set-up stage, for the start-up line: where a run's first seconds go."""

    def __init__(self, t):
        self.t, self.seconds = t, {}

    def done(self, name):
        now = time.time()
        self.seconds[name] = now - self.t
        self.t = now


def software(out, resumed):
    """The torch and Python versions a run trained with; a resumed run on other versions keeps
    the first ones too ("2.11.0, then 2.13.0")."""
    now = {"torch": torch.__version__, "python": sys.version.split()[0]}
    try:
        before = (json.loads((out / "config.json").read_text()).get("software", {})
                  if resumed else {})
    except (OSError, ValueError):
        before = {}
    kept = {}
    for k, v in now.items():
        old = before.get(k)
        kept[k] = v if not old else old if old.split(", then ")[-1] == v else f"{old}, then {v}"
    return kept


def starting_point(cfg, model_kw, out, master, quiet):
    """(checkpoint, its path, pretrained encoder, data, model config): resume and eval_only read
    out_dir's checkpoint, whose model the keys given may not change; a fresh run checks that out_dir
    holds no run, and one with init_from=PATH takes its encoder's shape."""
    ckpt = ckpt_path = encoder = None
    if cfg.init_from == "resume" or cfg.eval_only:
        name = ("ckpt_best.pt" if cfg.eval_only and (out / "ckpt_best.pt").exists()
                else "ckpt_last.pt")
        ckpt_path = out / name
        if not ckpt_path.exists() and (out / "config.json").exists():
            raise CheckpointError(f"{ckpt_path} not found: the run in {out} stopped before its "
                                  f"first checkpoint; start it again with --overwrite=true "
                                  f"(without --init_from=resume)")
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["data"]["name"] != cfg.dataset:  # checked before anything is prepared or written
            raise ConfigError(f"{ckpt_path} was trained on {ckpt['data']['name']!r}, "
                              f"not {cfg.dataset!r}: keep --dataset={ckpt['data']['name']} to "
                              f"continue it, or choose another --out_dir")
    data = load_data(cfg, quiet=not master or quiet)
    if ckpt is not None:
        if ckpt["data"]["meta"]["tokenizer"] != data.meta["tokenizer"]:
            raise ConfigError(f"{data.dir} holds another tokenization of {cfg.dataset} than "
                              f"{ckpt_path} was trained on: point --data_dir at the run's data")
        model_cfg = model_config(ckpt["config"]["model"])
        changed = {k: (getattr(model_cfg, k), v) for k, v in model_kw.items()
                   if k not in SPEED_KEYS and getattr(model_cfg, k) != v}
        if changed:
            raise ConfigError(f"{ckpt_path} was trained with a different model: "
                              + ", ".join(f"{k}={a!r} there, {b!r} here"
                                          for k, (a, b) in changed.items()))
        # validated again
        model_cfg = replace(model_cfg, **{k: model_kw[k] for k in SPEED_KEYS & model_kw.keys()})
        # the evaluation window, checked at first against the command line's model, now against
        # the checkpoint's (an eval_only names no model keys)
        if errors := eval_window_errors(cfg, model_cfg.block_size, model_cfg.pos_encoding):
            raise ConfigError(f"for the model of {ckpt_path}:\n  " + "\n  ".join(errors))
        return ckpt, ckpt_path, None, data, model_cfg
    if master and not cfg.overwrite and (out / "ckpt_last.pt").exists():
        raise ConfigError(f"out_dir {str(out)!r} already holds a run: continue it with "
                          f"--init_from=resume, replace it with --overwrite=true, or choose "
                          f"another --out_dir")
    if master and not cfg.overwrite and (
            (out / "config.json").exists() or (out / "ckpt_best.pt").exists()):
        raise ConfigError(f"out_dir {str(out)!r} holds a run that stopped before its first "
                          f"checkpoint: replace it with --overwrite=true, or choose another "
                          f"--out_dir")
    if cfg.init_from != "scratch":  # a pretrained encoder: its shape, its weights, a new head
        if not Path(cfg.init_from).is_file():
            raise ConfigError(f"init_from={cfg.init_from!r} is not 'scratch', 'resume' or a "
                              f"checkpoint file; a pretrained encoder comes from e.g. "
                              f"`python train.py config/pretrain_mlm.py` "
                              f"(out-pretrain/ckpt_best.pt)")
        encoder = load_checkpoint(cfg.init_from)
        model_kw = {**model_kw, **pretrained_shape(encoder, cfg.init_from, data, model_kw)}
    model_cfg = model_config(model_kw, data)
    return None, None, encoder, data, model_cfg


# an encoder's shape: a classifier started from it (init_from=PATH) takes these from its checkpoint
PRETRAINED_KEYS = ("n_layer", "n_head", "n_embd", "mlp_ratio", "pos_encoding", "norm", "residual",
                   "activation", "bias", "norm_eps", "rope_base", "tie_weights", "causal")


def pretrained_shape(encoder, path, data, model_kw):
    """The model keys a classifier takes from a pretrained encoder's checkpoint, after checking that
    the two can be joined: a classification data set in the encoder's very
    vocabulary, no clashing shape."""
    enc, name = encoder["config"]["model"], encoder["data"]["name"]
    if data.task != "cls":
        raise ConfigError(f"init_from={path}: starting from a pretrained encoder is for "
                          f"classifiers, and {data.name!r} is a {data.task} data set "
                          f"(continue a run with --init_from=resume)")
    if encoder["data"]["meta"]["tokenizer"] != data.meta["tokenizer"]:
        raise ConfigError(f"init_from={path} was trained on {name!r}, whose vocabulary is not "
                          f"{data.name!r}'s: fine-tune on a data set in its vocabulary "
                          f"(for mlm_corpus: sst2_shared, trec_shared)")
    clash = {k: (enc[k], model_kw[k]) for k in PRETRAINED_KEYS
             if k in model_kw and model_kw[k] != enc[k]}
    if enc["pos_encoding"] == "learned" and (
            model_kw.get("block_size", DEFAULTS["block_size"]) != enc["block_size"]):
        clash["block_size"] = (enc["block_size"],
                               model_kw.get("block_size", DEFAULTS["block_size"]))
    if clash:
        raise ConfigError(f"init_from={path} is a model of another shape: " + ", ".join(
            f"{k}={a!r} there, {b!r} here" for k, (a, b) in clash.items())
            + "; drop these keys (they come from the checkpoint)")
    return {k: enc[k] for k in PRETRAINED_KEYS}


# model keys that change how it computes, not what: free on resume
SPEED_KEYS = {"attention", "fp8_head"}


def check_machine(cfg, model_cfg, device, dtype):
    """Refuse what this machine cannot run: a model too large for its memory,
    FP8 without FP8 units."""
    if device.type == "cpu" and not cfg.eval_only and (free := available_memory()):
        need, params = memory_needed(model_cfg, cfg, dtype)
        if need > free:  # else the kernel kills the process mid-step, without a word
            raise ConfigError(f"this run would need about {need / 2**30:.0f} GiB of memory for a "
                              f"training step ({params / 1e6:.0f}M parameters, {cfg.batch_size} x "
                              f"{model_cfg.block_size} tokens a micro-batch), and this machine has "
                              f"{free / 2**30:.0f} GiB free: lower batch_size, "
                              f"block_size or the model's size, or use a config sized for a CPU "
                              f"(config/shakespeare_cpu.py)")
    if model_cfg.fp8_head and device.type != "cpu" and not (
            device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)):
        raise ConfigError(
            f"fp8_head=True needs FP8 matmuls (a CUDA GPU of compute capability 8.9 or newer, or "
            f"the CPU), not "
            f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device}; "
            f"drop --fp8_head=true")


def memory_needed(model_cfg, cfg, dtype):
    """Bytes a training step needs, roughly: 16 per parameter (fp32 weights, gradients, two AdamW
    moments) plus the activations kept for the backward pass, about B*T*L*(34*C + 5*nh*T) bytes in
    16 bits (Korthikanti et al. 2022, section 4.1), twice that in fp32."""
    C, L, T = model_cfg.n_embd, model_cfg.n_layer, model_cfg.block_size
    params = L * (12 * C * C + 13 * C) + (model_cfg.vocab_size + T) * C
    act = (cfg.batch_size * T * L * (34 * C + 5 * model_cfg.n_head * T)
           * (1 if dtype.itemsize == 2 else 2))
    return 16 * params + act, params


def available_memory():
    """Bytes of memory this machine can still give (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def build_model(cfg, model_cfg, ckpt, encoder, device, rank, say):
    """The raw model on device: the checkpoint's weights, a pretrained encoder's, or fresh ones."""
    # the same initial weights in every process (FSDP shards them as they are)
    torch.manual_seed(cfg.seed)
    model = Transformer(model_cfg)
    if rank:
        torch.manual_seed(cfg.seed + rank)  # and dropout masks of its own
    if ckpt is not None:
        model.load_state_dict(ckpt["model"], strict=True)
    elif encoder is not None:
        body = {k: v for k, v in encoder["model"].items() if not k.startswith("lm_head.")}
        missing, unexpected = model.load_state_dict(body, strict=False)
        assert not unexpected and all(k.startswith("cls_head.") for k in missing), \
            (missing, unexpected)
        say(f"initialised from {cfg.init_from} (step {encoder['step']} of a "
            f"{encoder['data']['name']} run); "
            f"the classifier head ({', '.join(missing)}) starts from scratch")
    return model.to(device)


def restore_training_state(run, ckpt):
    """Optimizer and scaler state, step, best and metrics of a resumed run (the random generators:
    restore_rng)."""
    if len(ckpt["optimizers"]) != len(run.optimizers):
        raise ConfigError(f"{run.out / 'ckpt_last.pt'} was trained with another optimizer; "
                          f"keep optimizer={ckpt['config']['train']['optimizer']!r} to resume it")
    saved_decay = ckpt["config"]["train"].get("layer_lr_decay", 1.0)  # older checkpoints: 1
    if saved_decay != run.cfg.layer_lr_decay:  # another split of the parameter groups
        raise ConfigError(f"{run.out / 'ckpt_last.pt'} was trained with layer_lr_decay="
                          f"{saved_decay}: keep --layer_lr_decay={saved_decay} to resume it")
    load_optimizer_states(run.raw, run.optimizers, ckpt["optimizers"])
    if run.scaler is not None and ckpt["scaler"] is not None:
        run.scaler.load_state_dict(ckpt["scaler"])
    if run.average is not None and ckpt.get("average"):
        if ckpt["average"]["decay"] != run.cfg.ema_decay:
            raise ConfigError(f"{run.out / 'ckpt_last.pt'} averages its weights with ema_decay="
                              f"{ckpt['average']['decay']}, not {run.cfg.ema_decay}: keep "
                              f"--ema_decay={ckpt['average']['decay']} to resume it")
        run.average.load_state_dict(ckpt["average"])
    elif run.average is not None:
        run.say("note: the checkpoint holds no weight average (it was trained with ema_decay=0); "
                "the average starts from its weights")
    run.start, run.best, run.last_metrics = ckpt["step"], ckpt["best"], ckpt["metrics"]
    run.say(f"resuming from {run.out / 'ckpt_last.pt'} at step {run.start}")


def restore_rng(run, ckpt):
    """The random generators (dropout) as the checkpoint saved them: the set-up's last act, after
    anything that draws from them (recording a CUDA graph runs warm-up passes with dropout, which
    a fresh run's set-up also ran before its state was saved). Several processes each take their
    own, when the checkpoint was saved by as many; otherwise they keep their seed + rank."""
    if run.world == 1:
        torch.set_rng_state(ckpt["rng"]["torch"])
        if run.device.type == "cuda":  # the GPUs this machine has, of those saved
            for i, state in enumerate(ckpt["rng"]["cuda"][:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, i)
        return
    ranks = ckpt.get("rng_ranks")
    if not ranks or len(ranks) != run.world:
        saved = (f"was saved by {len(ranks)} processes" if ranks
                 else "holds one process's generators")
        run.say(f"note: {run.ckpt_path} {saved}, and {run.world} resume it: each process draws "
                f"its dropout masks afresh (seed + rank), so the run goes on exactly only in its "
                f"weights and data order")
        return
    state = ranks[run.rank]
    torch.set_rng_state(state["torch"])
    if run.device.type == "cuda" and state["device"] is not None:
        torch.cuda.set_rng_state(state["device"], run.device)


def open_out_dir(run, stack):
    """Lock out_dir (until stack closes) and make it this run's: leftovers of a killed write
    removed, a fresh run's old checkpoints and metrics removed, config.json written,
    log.jsonl trimmed to start."""
    if not run.master:
        return
    out, cfg = run.out, run.cfg
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock_out_dir(out, stack)
        # left by a process killed mid-write (data.write_atomic's .NAME.tmp; ckpt_*.pt.tmp too,
        # the name checkpoints were once written under)
        for tmp in {*out.glob("*.pt.tmp"), *out.glob(".*.tmp")}:
            tmp.unlink()
        # a fresh run (maybe --overwrite=true): nothing of the old run may pass for this one's
        if run.ckpt is None:
            for old in ("ckpt_last.pt", "ckpt_best.pt", "metrics.json"):
                (out / old).unlink(missing_ok=True)
        write_json(out / "config.json", {"train": asdict(cfg), "model": asdict(run.model_cfg),
                                         "software": software(out, resumed=run.ckpt is not None)})
        trim_log(out, run.start)
    except OSError as e:
        raise ConfigError(f"cannot write to out_dir {str(out)!r}: {e.strerror} ({e.filename}); "
                          f"choose another --out_dir") from None
    if run.verbose and run.device.type == "cpu" and cfg.cpu_config:
        run.say(f"note: this config is sized for a GPU; {cfg.cpu_config} trains a smaller model "
                f"on a CPU (an estimate of both follows the first steps)")


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help(__doc__, TrainConfig, TransformerConfig, exclude=DATA_KEYS)
        return 0
    cfg = None
    try:
        cfg, model_kw = parse_args(argv)
        if int(os.environ.get("RANK", 0)) == 0:
            print("config: " + " ".join(f"{k}={v}" for k, v in {**asdict(cfg), **model_kw}.items()
                                        if v != DEFAULTS.get(k)))
            if all(a.startswith("--") for a in argv):
                print("note: no config file, so the defaults: a GPT-2-small shape "
                      "(12 layers x 768) on 64 x 1024 tokens a step, sized for a large GPU; "
                      "config/ holds sized jobs, e.g. config/shakespeare.py (a GPU) or "
                      "config/shakespeare_cpu.py (a CPU)")
        train(cfg, model_kw)
    except (ConfigError, CheckpointError, DataError, Stop) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a write that failed outside the loop (metrics.json on a full disk, ...)
        print(f"error: cannot write {e.filename}: {e.strerror}; "
              f"{last_good(cfg.out_dir) if cfg else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print(f"\ninterrupted; {last_good(cfg.out_dir) if cfg else 'nothing was written'}",
              file=sys.stderr)
        return 130
    return 0


def exit_process(code):
    """Exit with code. Under torchrun, skip the interpreter's teardown: every file is written and
    closed by now, and the teardown of the communication library's threads can abort a process that
    has finished its work ('terminate called without an active exception', seen with gloo)."""
    if "RANK" not in os.environ:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_process(main())
