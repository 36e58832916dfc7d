# Muon of commit 584bd0d (one Newton-Schulz per matrix), for the A/B timing only
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
