"""
The schedule and the optimizers: linear warmup then cosine decay; AdamW (decay on matrices and
embeddings only), or Muon for the blocks' weight matrices beside AdamW for the rest; and a moving
average of the weights. None is a torch.optim class (see Optimizer).

    optimizers = make_optimizers(model, cfg, device)   # [AdamW] or [AdamW, Muon]
    lr = lr_at(step, cfg)
    average = WeightAverage(model.parameters(), 0.999)  # ema_decay: update() after each step
"""
import math
from contextlib import contextmanager

import torch


def lr_at(step, cfg):
    """Linear warmup from lr/(warmup+1) (never 0), then cosine decay to min_lr at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    progress = (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (
        cfg.learning_rate - cfg.min_lr)


def make_optimizers(model, cfg, device, sharded=False):
    """AdamW with weight decay on 2-D tensors (matrices, embeddings) only, not on biases or
    LayerNorm gains, which decay would only pull towards zero.
    optimizer='muon': the weight matrices inside the blocks go to Muon instead (momentum, then
    orthogonalised by Newton-Schulz iterations; Jordan et al. 2024), with its learning rate scaled
    to match AdamW's update size (Liu et al. 2025), so learning_rate means the same for both.
    Embeddings and the output layer stay with AdamW, as Muon's authors advise. The fused QKV matrix
    is orthogonalised as its three maps Q, K, V, as the Muon reference code does (see Muon).
    sharded: FSDP's parameters (DTensors) get torch.optim.AdamW, which the sharded state-dict
    functions of torch.distributed.checkpoint expect."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [(n, p) for n, p in named
            if cfg.optimizer == "muon" and n.startswith("transformer.h.") and p.dim() == 2]
    rest = [(n, p) for n, p in named if not any(p is q for _, q in muon)]
    n_layer = len(model.transformer.h) if hasattr(model, "transformer") else 0
    groups = by_depth([{"params": [(n, p) for n, p in rest if p.dim() >= 2],
                        "weight_decay": cfg.weight_decay},
                       {"params": [(n, p) for n, p in rest if p.dim() < 2], "weight_decay": 0.0}],
                      cfg.layer_lr_decay, n_layer)
    betas = (cfg.beta1, cfg.beta2)
    if sharded:
        adamw = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas,
                                  fused=device.type == "cuda")
    else:
        adamw = AdamW(groups, lr=cfg.learning_rate, betas=betas)
    optimizers = [adamw]
    if muon:
        blocks = {p: 3 for n, p in named
                  if n.endswith(".attn.c_attn.weight")}  # (3C, C): Q, K, V stacked
        optimizers.append(Muon(by_depth([{"params": muon}], cfg.layer_lr_decay, n_layer),
                               cfg.learning_rate, cfg.weight_decay, cfg.muon_momentum, blocks))
    return optimizers


def depth(name, n_layer):
    """A parameter's layer counted from the input: 0 the embeddings, i + 1 block i, n_layer + 1
    the final norm and the head."""
    if name.startswith("transformer.h."):
        return int(name.split(".")[2]) + 1
    return 0 if name.startswith(("transformer.wte", "transformer.wpe")) else n_layer + 1


def by_depth(groups, decay, n_layer):
    """groups of (name, parameter) pairs -> optimizer groups of parameters. decay < 1 (layer-wise
    learning rates; Howard & Ruder 2018, ULMFiT's discriminative fine-tuning; Clark et al. 2020):
    each group split by depth, with lr_scale = decay ** (layers above it), so the head trains at
    the learning rate and each layer below at decay times the one above; train_step applies it.
    decay = 1: the groups as they are (no lr_scale), the layout older checkpoints have."""
    out = []
    for g in groups:
        if decay == 1:
            out.append({**g, "params": [p for _, p in g["params"]]})
            continue
        for d in range(n_layer + 2):
            params = [p for n, p in g["params"] if depth(n, n_layer) == d]
            if params:
                out.append({**g, "params": params, "lr_scale": decay ** (n_layer + 1 - d)})
    return out


class Optimizer:
    """What the training loop asks of an optimizer: param_groups (dicts of a "params" list and
    hyperparameters; the loop sets "lr" before each step), step(), zero_grad(), state_dict() and
    load_state_dict(). Not torch.optim.Optimizer: constructing one, and its step and zero_grad,
    import the compiler (torch._dynamo, about 6 s of a cold start on the GPU machine, 1 s on a
    laptop), which an eager run never needs. state_dict() has torch.optim's layout (the state keyed
    by each parameter's position over the groups, in order), so the checkpoints of this class and
    of the torch.optim optimizer it matches load into each other."""

    def __init__(self, params, defaults):
        groups = list(params)
        if not groups or not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state = {}  # {parameter: {name: tensor}}

    def parameters(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_dict(self):
        index = {p: i for i, p in enumerate(self.parameters())}
        return {"state": {index[p]: dict(s) for p, s in self.state.items()},
                "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                  "params": [index[p] for p in g["params"]]}
                                 for g in self.param_groups]}

    def load_state_dict(self, state_dict):
        """The saved hyperparameters and state replace this optimizer's, as in torch.optim; every
        state tensor goes to its parameter's device, every one but the step count to its dtype."""
        saved = state_dict["param_groups"]
        mine = [len(g["params"]) for g in self.param_groups]
        theirs = [len(g["params"]) for g in saved]
        if mine != theirs:
            raise ValueError(f"the saved optimizer state has parameter groups of sizes {theirs}, "
                             f"this optimizer {mine}: it belongs to another model or optimizer")
        for group, g in zip(self.param_groups, saved):
            group.update({k: v for k, v in g.items() if k != "params"})
        ids = [i for g in saved for i in g["params"]]  # positions, in the saved groups' order
        params = dict(zip(ids, self.parameters()))
        self.state = {params[i]: {k: cast(v, params[i], k) for k, v in s.items()}
                      for i, s in state_dict["state"].items()}


class WeightAverage:
    """An exponential moving average of the weights, kept beside them, with Adam's bias correction:
    after update t it is sum_s decay^(t-s) w_s / sum_s decay^(t-s) over the weights w_1..w_t seen
    at updates 1..t, so the weights at the start (random) never count, and decay alone sets the
    window (about 1 / (1 - decay) steps) from the first step on. Recursively:
    avg += (1 - decay) / (1 - decay^t) * (w - avg).
    Averaging the iterates is Polyak & Juditsky's (1992); AWD-LSTM's
    NT-ASGD (Merity et al. 2017), a mainstay of the small-corpus language-model recipes, averages
    them uniformly once validation stalls; the exponential form needs no trigger. The training loop
    evaluates, and saves as ckpt_best.pt, the averaged weights, swapped into the model in place
    (the same tensors, so compiled code and recorded CUDA graphs keep working)."""

    def __init__(self, params, decay):
        self.params, self.decay, self.updates = list(params), decay, 0
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        self.updates += 1
        weight = (1 - self.decay) / (1 - self.decay ** self.updates)  # 1 at the first update
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], weight)

    @contextmanager
    def swapped_in(self):
        """The averaged weights in the model's parameters inside the block, the trained ones after
        (bit for bit, also if the block raises)."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], trained)

    def state_dict(self):
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state):
        if len(state["average"]) != len(self.params):
            raise ValueError(f"the saved weight average holds {len(state['average'])} tensors, "
                             f"this model {len(self.params)}")
        with torch.no_grad():
            for a, saved in zip(self.average, state["average"]):
                a.copy_(saved)
        self.updates = state["updates"]


def cast(value, param, name):
    """A loaded state value on its parameter's device, and in its dtype unless it is the step
    count (float32, as torch.optim keeps it)."""
    if not torch.is_tensor(value):
        return value
    return value.to(param.device, dtype=None if name == "step" else param.dtype)


class AdamW(Optimizer):
    """torch.optim.AdamW(fused=True) (Loshchilov & Hutter 2019: Adam with decoupled weight decay):
    the same kernel, torch._fused_adamw_, with the same arguments and the same state ("step",
    "exp_avg", "exp_avg_sq"), so the updates are bit for bit torch's, on the GPU and the CPU."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            batches = {}  # one kernel per (device, dtype), as torch groups them
            for p in group["params"]:
                if p.grad is not None:
                    batches.setdefault((p.device, p.dtype), []).append(p)
            for params in batches.values():
                for p in params:
                    if p not in self.state:  # the first step: zero moments
                        self.state[p] = {
                            "step": torch.zeros((), dtype=torch.float32, device=p.device),
                            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                states = [self.state[p] for p in params]
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adamw_(params, [p.grad for p in params],
                                    [s["exp_avg"] for s in states],
                                    [s["exp_avg_sq"] for s in states], [], steps,
                                    lr=group["lr"], beta1=beta1, beta2=beta2,
                                    weight_decay=group["weight_decay"], eps=group["eps"],
                                    amsgrad=False, maximize=False)


def newton_schulz(g, steps=5, eps=1e-7):
    """Orthogonalise g (about U V^T of its SVD), or each matrix of a stack g (n, rows, cols), by
    Keller Jordan's quintic Newton-Schulz iteration in bf16, computed as torch.optim.Muon does."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.dim() == 3 else g.bfloat16()[None]
    tall = g.size(-2) > g.size(-1)
    x = x.mT if tall else x  # (short, long): the Gram matrices are the small ones
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # singular values <= 1
    for _ in range(steps):
        gram = x @ x.mT
        # a x + (b G + c G^2) x
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    x = x.mT if tall else x
    return x if g.dim() == 3 else x[0]


class Muon(Optimizer):
    """torch.optim.Muon with adjust_lr_fn='match_rms_adamw' (Nesterov momentum, the update
    orthogonalised, decoupled weight decay, learning rate x 0.2 sqrt(max(rows, cols))), except that
    a parameter in `blocks` is orthogonalised as that many row blocks. c_attn's (3C, C) weight holds
    three maps, and orthogonalising their stack as one matrix would couple them: Keller Jordan's
    modded-nanogpt splits it ("split grouped QKV parameters", its Muon of Oct 2024), later keeps
    Q, K, V as separate matrices. State and hyperparameters are named as torch.optim.Muon's, so its
    checkpoints resume here."""

    def __init__(self, params, lr, weight_decay, momentum, blocks):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum))
        self.blocks = blocks  # {parameter: number of row blocks}

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if p not in self.state:  # the first step: a zero momentum buffer
                    self.state[p] = {"momentum_buffer": torch.zeros_like(p)}
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_lerp_(bufs, grads, 1 - momentum)
            updates = torch._foreach_lerp(grads, bufs, momentum)  # Nesterov
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            # every (row block of a) matrix, stacked by shape: one batched Newton-Schulz per shape
            # (3 for a GPT block) in place of one per matrix, which launches 15 kernels each
            stacks = {}
            for p, update in zip(params, updates):
                k = self.blocks.get(p, 1)
                for rows, u in zip(p.chunk(k), update.chunk(k)):  # views: the updates land in p
                    views, blocks = stacks.setdefault(tuple(u.shape), ([], []))
                    views.append(rows)
                    blocks.append(u)
            for shape, (views, blocks) in stacks.items():
                ortho = newton_schulz(torch.stack(blocks)).unbind(0)
                torch._foreach_add_(views, ortho, alpha=-lr * 0.2 * math.sqrt(max(shape)))
