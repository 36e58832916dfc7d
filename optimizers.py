"""
The schedule and the optimizers: linear warmup then cosine decay; AdamW (decay on matrices and
embeddings only), or Muon for the blocks' weight matrices beside AdamW for the rest.

    optimizers = make_optimizers(model, cfg, device)   # [AdamW] or [AdamW, Muon]
    lr = lr_at(step, cfg)
"""
import math

import torch


def lr_at(step, cfg):
    """Linear warmup from lr/(warmup+1) (never 0), then cosine decay to min_lr at max_iters."""
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    progress = (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * (
        cfg.learning_rate - cfg.min_lr)


def make_optimizers(model, cfg, device):
    """AdamW with weight decay on 2-D tensors (matrices, embeddings) only, not on biases or
    LayerNorm gains, which decay would only pull towards zero; fused kernel on CUDA.
    optimizer='muon': the weight matrices inside the blocks go to Muon instead (momentum, then
    orthogonalised by Newton-Schulz iterations; Jordan et al. 2024), with its learning rate scaled
    to match AdamW's update size (Liu et al. 2025), so learning_rate means the same for both.
    Embeddings and the output layer stay with AdamW, as Muon's authors advise. The fused QKV matrix
    is orthogonalised as its three maps Q, K, V, as the Muon reference code does (see Muon)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [p for n, p in named
            if cfg.optimizer == "muon" and n.startswith("transformer.h.") and p.dim() == 2]
    rest = [(n, p) for n, p in named if not any(p is q for q in muon)]
    groups = [{"params": [p for _, p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in rest if p.dim() < 2], "weight_decay": 0.0}]
    optimizers = [torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2),
                                    fused=device.type == "cuda")]
    if muon:
        blocks = {p: 3 for n, p in named
                  if n.endswith(".attn.c_attn.weight")}  # (3C, C): Q, K, V stacked
        optimizers.append(
            Muon(muon, cfg.learning_rate, cfg.weight_decay, cfg.muon_momentum, blocks))
    return optimizers


def newton_schulz(g, steps=5, eps=1e-7):
    """Orthogonalise g (about U V^T of its SVD) by Keller Jordan's quintic Newton-Schulz iteration
    in bf16, computed as torch.optim.Muon does."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    x = x.T if g.size(0) > g.size(1) else x  # (short, long): the Gram matrix is the small one
    x = x / x.norm().clamp(min=eps)  # singular values <= 1
    for _ in range(steps):
        gram = x @ x.T
        # a x + (b G + c G^2) x
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if g.size(0) > g.size(1) else x


class Muon(torch.optim.Optimizer):
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
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum)  # Nesterov
                p.mul_(1 - lr * group["weight_decay"])
                k = self.blocks.get(p, 1)
                for rows, u in zip(p.chunk(k), update.chunk(k)):  # views: the updates land in p
                    rows.add_(newton_schulz(u), alpha=-lr * 0.2 * math.sqrt(max(u.shape)))
