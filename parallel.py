"""
The model that training calls, for each way of running: torch.compile, DDP, FSDP (sharded in place),
or forward+backward replayed as one recorded CUDA graph. The raw module underneath stays the one to
save, evaluate and sample, so checkpoints never carry `_orig_mod.` or `module.` prefixes.

    rank, local_rank, world = setup_distributed(cfg)  # torchrun's environment, or one process
    model = parallelize(raw, cfg, device, dtype, world, local_rank)  # what train_step calls
    graphed = GraphedStep(model, batch, 1 / cfg.grad_accum, dtype)   # cuda_graph=True (CUDA only)
"""
import os

import torch

from configurator import ConfigError
from model import record_cuda_graph


def setup_distributed(cfg):
    """(rank, local_rank, world) from torchrun's environment; one process without it."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    rank, local_rank, world = (int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]),
                               int(os.environ["WORLD_SIZE"]))
    use_cuda = cfg.device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, local_rank, world


def all_reduce(tensor, world):
    if world > 1:
        torch.distributed.all_reduce(tensor)


def sharded(model):
    """Whether model is sharded over processes in place by FSDP (see parallelize)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False  # one process: nothing to shard, and no FSDP import (it takes about a second)
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def compile_model(raw, cfg, device, world=1, say=print):
    """The model that training calls: raw itself (CPU, MPS, compile=False, or compile_scope='block',
    which compiles each block in place: one compilation, as every block runs the same code on the
    same shapes), or raw wrapped by torch.compile. 'block' compiles the language-model loss's
    elementwise work in place too (model.LogitGrads: eagerly, several float32 passes over the
    tokens x vocabulary logits); not a masked LM's, whose number of scored tokens changes at every
    step when its head runs eagerly."""
    if not (cfg.compile and device.type == "cuda"):
        return raw
    mode = cfg.compile_mode
    if world > 1 and mode == "reduce-overhead":  # CUDA graphs and DDP's gradient hooks do not mix
        say(f"note: compile_mode='reduce-overhead' is not used with {cfg.parallel.upper()}; "
            f"compiling with mode='default'")
        mode = "default"
    if cfg.compile_scope == "block":
        for block in raw.transformer.h:
            block.compile(mode=mode)
        if hasattr(raw, "logit_grads") and not raw.config.mlm:  # a few large kernels: no graphs
            raw.logit_grads.compile(mode="default")
        return raw
    return torch.compile(raw, mode=mode)


def parallelize(raw, cfg, device, dtype, world=1, local_rank=0, say=print):
    """The model that training calls, for each way of running; raw stays the module to save
    and evaluate.

    One process: raw, maybe compiled (compile_model). DDP: every process holds the whole model, and
    DDP averages the gradients over the processes during backward.
    FSDP (PyTorch's FSDP2, fully_shard): raw's parameters become shards in place (DTensors, a
    1/world slice of dim 0 of every tensor in each process), so do their gradients and the optimizer
    state made from them. Each block is one unit: its weights are all-gathered just before it runs
    and freed after it, in forward and again in backward, and its gradients are reduce-scattered
    (averaged) once its backward is done. The root unit holds the rest: embeddings, ln_f and the
    head, whose matrix is the token embedding's when tied, so both must sit in the same unit.
    bf16: weights are gathered and computed in bf16 (half the traffic) and gradients reduced in
    fp32, while the fp32 shards stay the optimizer's master weights. Unlike autocast over fp32
    weights (one process, DDP), this also keeps the residual stream and the norms' gains in bf16."""
    if cfg.parallel == "ddp" or world == 1:
        if cfg.parallel == "fsdp":
            say("note: parallel='fsdp' with one process has nothing to shard: the model trains "
                "whole; start several with torchrun --nproc_per_node=N")
        model = compile_model(raw, cfg, device, world, say)
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[local_rank] if device.type == "cuda" else None)
        return model
    if dtype == torch.float16:
        raise ConfigError("parallel='fsdp' does not support float16: its loss scaler would check "
                          "only each process's shard of the gradients for overflow; use "
                          "--dtype=bfloat16 or --parallel=ddp")
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) \
        if dtype == torch.bfloat16 else MixedPrecisionPolicy()
    for block in raw.transformer.h:
        fully_shard(block, mp_policy=policy)
    fully_shard(raw, mp_policy=policy)
    return compile_model(raw, cfg, device, world, say)  # compiled after sharding, as FSDP2 expects


class GraphedStep:
    """Forward and backward of one micro-batch, recorded as a CUDA graph and replayed at every
    micro-step: one launch in place of a thousand small ones, the same arithmetic (dropout
    included: CUDA graphs advance the random generator at each replay).

    A graph replays fixed kernels on fixed addresses, so there is one graph per batch shape, each
    with its own input tensors that a batch is copied into: one graph for a language model, one
    per padded length for a classifier (data.cls_lengths), all recorded here, up front, so that no
    step waits for a recording. The gradients exist before recording, so that every recorded
    backward accumulates into the same tensors in place; train_step then zeroes them rather than
    freeing them. Each recording follows a few warm-up passes on a side stream (they also compile
    the model, if it is compiled). Each graph keeps its own memory pool, so a classifier's graphs
    together hold the activations of every length once: the sum of the lengths over the longest,
    3x one longest step's for SST-2 (8 to 64), 3.5x at block_size=1024 (14 lengths)."""

    def __init__(self, model, examples, scale, dtype):
        """model: what training calls (maybe compiled); examples: a batch of each shape training
        will see, (x, y) for a language model, (x, mask, y) for a classifier, on the device;
        scale: the loss factor (1 / grad_accum); dtype: the autocast dtype (fp32: none)."""
        why = None
        if examples[0][0].device.type != "cuda":
            why = f"it runs on {examples[0][0].device.type}"
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            why = "DDP's gradient hooks do not mix with it"
        elif sharded(getattr(model, "_orig_mod", model)):
            why = "FSDP's all-gathers and reduce-scatters are not recorded"
        elif dtype == torch.float16:
            why = "fp16 loss scaling is not recorded"
        if why:
            raise ConfigError(f"cuda_graph=True cannot be used here: {why}; drop --cuda_graph=true")
        self.model, self.scale = model, scale
        # cached weight casts must not outlive the recording
        self.autocast = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32,
                                       cache_enabled=False)
        self.graphs = {}  # batch shape -> (graph, input tensors, loss)
        for example in examples:
            self.graphs[tuple(example[0].shape)] = self._record(example)

    def _record(self, example):
        inputs = [t.clone() for t in example]
        model = self.model

        def forward_backward():
            with self.autocast:
                if len(inputs) == 2:  # (x, y)
                    _, loss = model(inputs[0], inputs[1], return_logits=False)
                else:  # (x, mask, y)
                    _, loss = model(inputs[0], inputs[2], attention_mask=inputs[1],
                                    return_logits=False)
            loss = loss * self.scale
            loss.backward()
            return loss.detach()

        def zero_grads():  # the warm-up's gradients; the recorded backward accumulates into these
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
        graph, loss = record_cuda_graph(forward_backward, inputs[0].device, warmup=3,
                                        before_recording=zero_grads)
        return graph, inputs, loss

    def __call__(self, *batch):
        shape = tuple(batch[0].shape)
        if shape not in self.graphs:
            raise ValueError(f"no CUDA graph was recorded for batches of shape {shape}; recorded: "
                             f"{', '.join(map(str, self.graphs))}")
        graph, inputs, loss = self.graphs[shape]
        for t, b in zip(inputs, batch):
            t.copy_(b)
        graph.replay()
        return loss
