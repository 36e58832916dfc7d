"""
The whole Transformer in one file: attention by hand and fused, five position encodings,
pre-/post-LN, a causal language-model head and a bidirectional classifier, KV-cache generation
and GPT-2 weight import.

    from model import Transformer, TransformerConfig
    cfg = TransformerConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384)
    model = Transformer(cfg)
    logits, loss = model(idx, targets)                  # (B, T, V), mean cross-entropy
    _, loss = model(idx, targets, return_logits=False)  # training: head and loss fused, no logits
    out = model.generate(idx, max_new_tokens=200, temperature=0.8, top_k=200)
    gpt2 = Transformer.from_pretrained("path/to/gpt2")      # a local Hugging Face directory

References: Vaswani et al. 2017 (the Transformer), Radford et al. 2019 (GPT-2), Su et al. 2021
(RoPE), Press et al. 2022 (ALiBi), Xiong et al. 2020 (pre-LN), Press & Wolf 2017 (weight tying).
"""
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

POS_ENCODINGS = ("none", "sinusoidal", "learned", "rope", "alibi")
RELATIVE = ("none", "rope", "alibi")  # encodings with no absolute position table: any length works
NORMS = ("pre", "post", "none")
ATTENTIONS = ("manual", "sdpa")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
POOLINGS = ("mean", "first", "last")


@dataclass
class TransformerConfig:
    # shape
    vocab_size: int = 50304     # token ids are 0..vocab_size-1 (GPT-2's 50257 padded to 64s)
    real_vocab_size: int = 0    # ids from here up are padding, given no probability (0: none)
    block_size: int = 1024      # longest trained context; see generate() for what happens beyond it
    n_layer: int = 12           # Transformer blocks
    n_head: int = 12            # attention heads per block
    n_embd: int = 768           # model width C; each head gets C / n_head dimensions
    mlp_ratio: int = 4          # MLP hidden width / n_embd (4 in the 2017 paper and GPT-2)
    # architecture choices (each one is an ablation)
    pos_encoding: str = "rope"  # 'none' | 'sinusoidal' | 'learned' | 'rope' | 'alibi'
    norm: str = "pre"           # 'pre' (GPT-2, Xiong et al. 2020) | 'post' (2017 paper) | 'none'
    residual: bool = True       # residual connections around attention and MLP
    attention: str = "sdpa"     # 'manual' (written out below) | 'sdpa' (PyTorch's fused kernels)
    causal: bool = True         # False: bidirectional encoder (classifiers only)
    activation: str = "gelu"    # 'gelu' (exact erf) | 'gelu_tanh' (GPT-2's approximation) | 'relu'
    bias: bool = True           # biases in Linear and LayerNorm
    tie_weights: bool = True    # LM head shares the token embedding matrix (Press & Wolf 2017)
    dropout: float = 0.0        # embeddings, attention weights, residual branches (defaults below)
    # finer dropout for small corpora (AWD-LSTM, Merity et al. 2017; Transformer-XL on WikiText-2),
    # -1 meaning "same as dropout"
    attn_dropout: float = -1.0  # on the attention weights (Transformer-XL's dropatt)
    resid_dropout: float = -1.0  # attention and MLP outputs, before they join the residual stream
    embd_dropout: float = -1.0  # on the input embeddings, per element (AWD-LSTM's dropouti)
    out_dropout: float = 0.0    # on the final hidden states before the head (AWD-LSTM's dropouto)
    word_dropout: float = 0.0   # whole word types of the input embedding (Gal & Ghahramani 2016),
                                # never a window's first token (see embed)
    layer_drop: float = 0.0     # stochastic depth (Huang et al. 2016): drop a sequence's residual
                                # branch with a rate rising linearly to this at the last layer
    norm_eps: float = 1e-5      # LayerNorm epsilon
    rope_base: float = 10000.0  # RoPE theta_i = base^(-2i/d) (Su et al. 2021, eq. 15)
    # head
    n_classes: int = 0          # 0: language-model head; > 0: sequence classifier
    mlm: bool = False           # LM head on a bidirectional encoder: fill in masked tokens (BERT)
    pooling: str = "mean"       # classifier: 'mean' of real tokens | 'first' ([CLS]) | 'last' token
    label_smoothing: float = 0.0  # cross-entropy label smoothing (Szegedy et al. 2016), both heads
    fp8_head: bool = False      # training: LM head matmuls in FP8 (LinearCrossEntropy; H100-class)

    def __post_init__(self):
        errors = []
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append(f"{name}={value!r} must be a positive integer")
        shape_ok = not errors  # the divisibility checks below need integers, whatever else is wrong
        for name, choices in (("pos_encoding", POS_ENCODINGS), ("norm", NORMS),
                              ("attention", ATTENTIONS), ("activation", ACTIVATIONS),
                              ("pooling", POOLINGS)):
            if getattr(self, name) not in choices:
                errors.append(f"{name}={getattr(self, name)!r} is not one of "
                              f"{', '.join(map(repr, choices))}")
        if shape_ok and self.n_embd % self.n_head:
            errors.append(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        elif shape_ok and self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            errors.append(f"pos_encoding='rope' rotates pairs of dimensions, so the head dim "
                          f"n_embd/n_head={self.n_embd // self.n_head} must be even")
        real = self.real_vocab_size
        if not isinstance(real, int) or not 0 <= real <= self.vocab_size:
            errors.append(f"real_vocab_size={real!r} must be in 0..vocab_size={self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout={self.dropout} must be in [0, 1)")
        for name in ("attn_dropout", "resid_dropout", "embd_dropout"):
            if not (getattr(self, name) == -1.0 or 0.0 <= getattr(self, name) < 1.0):
                errors.append(f"{name}={getattr(self, name)} must be in [0, 1), "
                              f"or -1 for dropout's rate")
        for name in ("out_dropout", "word_dropout", "layer_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.layer_drop and not self.residual:
            errors.append(f"layer_drop={self.layer_drop} drops residual branches: it needs "
                          f"residual=True")
        if not 0.0 <= self.label_smoothing < 1.0:
            errors.append(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        for name in ("norm_eps", "rope_base"):
            if not 0 < getattr(self, name) < math.inf:
                errors.append(f"{name}={getattr(self, name)} must be a finite number > 0")
        if not isinstance(self.n_classes, int) or self.n_classes < 0 or self.n_classes == 1:
            errors.append(f"n_classes={self.n_classes!r} must be 0 (language model) "
                          f"or >= 2 (classifier)")
        elif self.n_classes == 0 and not self.causal and not self.mlm:
            errors.append("causal=False needs n_classes >= 2 or mlm=True: a bidirectional "
                          "language model sees the very tokens it is asked to predict, unless "
                          "they are masked")
        elif self.mlm and (self.causal or self.n_classes):
            errors.append("mlm=True is a bidirectional language model: it needs causal=False "
                          "and n_classes=0")
        elif self.n_classes and self.causal and self.pooling == "first":
            errors.append("pooling='first' with causal=True: in a causal model the first token "
                          "sees only itself; use pooling='last' or 'mean', or causal=False")
        if self.fp8_head and (self.n_classes or self.n_embd % 16):
            errors.append(f"fp8_head=True needs a language model (n_classes=0) with "
                          f"n_embd={self.n_embd} a multiple of 16")
        if errors:
            raise ValueError("invalid TransformerConfig:\n  " + "\n  ".join(errors))

    def rate(self, name):
        """The dropout rate of one site: attn, resid or embd (-1 falls back to dropout)."""
        value = getattr(self, f"{name}_dropout")
        return self.dropout if value == -1.0 else value


# ----------------------------------------------------------------------------------------------
# position encodings

def sinusoidal_table(n_pos, dim):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Vaswani et al. 2017, 3.5)"""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]             # (P, 1)
    div = 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(d/2),)
    table = torch.zeros(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos / div)
    table[:, 1::2] = torch.cos(pos / div)[:, : dim // 2]
    return table.float()


def rope_cos_sin(pos, head_dim, base):
    """cos and sin (T, hs) of the rotation angles pos * theta_i, theta_i = base^(-2i/hs), for
    apply_rope: the sin of the first half is negated (see there).

    Computed for whatever positions are asked (no table), so RoPE works at any length.
    Layout is 'half split' (dimension i pairs with i + hs/2, as GPT-NeoX and LLaMA do) rather than
    the paper's interleaved pairs; the two are the same rotation up to a fixed permutation of dims.
    """
    dims = torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32)  # 2i, (hs/2,)
    inv_freq = base ** (-dims / head_dim)
    angles = pos.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    sin = angles.sin()
    return torch.cat([angles, angles], dim=-1).cos(), torch.cat([-sin, sin], dim=-1)


def apply_rope(x, cos, sin):
    """Rotate each pair (x_i, x_{i+hs/2}) of x (..., hs) by its angle, in fp32, back to x.dtype:
        out_i        = x_i cos - x_{i+hs/2} sin
        out_{i+hs/2} = x_{i+hs/2} cos + x_i sin
    Rolling x by hs/2 swaps its halves, and the negated first half of sin (rope_cos_sin) supplies
    the minus sign: five elementwise kernels in all, which matters when decoding one token."""
    xf = x.float()
    return (xf * cos + xf.roll(x.size(-1) // 2, dims=-1) * sin).to(x.dtype)


def alibi_slopes(n_head):
    """Head-specific slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... (Press et al. 2022, 3).

    For a head count that is not a power of two, the paper's code takes the slopes of the closest
    smaller power of two and fills up with every other slope of the next power of two.
    """
    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]
    if math.log2(n_head).is_integer():
        return torch.tensor(geometric(n_head))
    closest = 2 ** math.floor(math.log2(n_head))
    return torch.tensor(geometric(closest) + geometric(2 * closest)[0::2][: n_head - closest])


# ----------------------------------------------------------------------------------------------
# the language-model loss, fused with its head

def logit_grads(logits, targets, eps, vocab, grad_dtype):
    """LinearCrossEntropy's work between its matrix products, from the logits (N, V) against
    targets (N,) (-1: ignored), the first vocab ids real: (loss, grad, n), the mean loss over the n
    scored tokens, and n times d loss / d logits (N, V) in grad_dtype. In float32 (float64 for
    float64 logits). Plain PyTorch, several passes over the (N, V) logits when run eagerly;
    compiled (LogitGrads, compile_scope='block'), Inductor fuses them into a few kernels."""
    wide, padded = torch.promote_types(logits.dtype, torch.float32), vocab < logits.size(1)
    logits = logits.to(wide) if logits.dtype != wide else logits.clone() if padded else logits
    if padded:
        logits[:, vocab:] = float("-inf")  # padding ids
    # log-sum-exp
    lse = logits.logsumexp(-1)  # (N,)
    # loss
    valid = targets >= 0
    n = valid.sum().clamp(min=1)
    target = targets.clamp(min=0)[:, None]  # (N, 1)
    loss = lse - logits.gather(1, target).squeeze(1)  # -log p(target)
    if eps:  # eps * mean over the real ids of -log p
        loss = (1 - eps) * loss + eps * (lse - logits[:, :vocab].mean(-1))
    loss = torch.where(valid, loss, 0.0).sum() / n
    # gradient, n times d loss / d logits: softmax - (1 - eps) onehot - eps / vocab, in place in
    # one (N, V) tensor (run eagerly, each operation would otherwise allocate another)
    grad = (logits - lse[:, None]).exp_()
    grad.scatter_add_(1, target, torch.full_like(target, eps - 1, dtype=grad.dtype))
    if eps:
        grad.sub_(eps / vocab * (torch.arange(grad.size(1), device=grad.device) < vocab))
    return loss, grad.mul_(valid[:, None]).to(grad_dtype), n


class LogitGrads(nn.Module):
    """logit_grads as a module, so that torch.compile can take it in place, as it takes each
    block (parallel.compile_model, compile_scope='block'); it has no parameters or state."""

    def forward(self, logits, targets, eps, vocab, grad_dtype):
        return logit_grads(logits, targets, eps, vocab, grad_dtype)


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the logits h @ weight^T against targets (-1: ignored), with label
    smoothing eps, for training. h (N, C), weight (V, C), targets (N,). vocab: the first vocab of
    the V ids are real, the rest padding, which gets no probability and no smoothing mass.

    The forward pass works out the gradients too, so the (N, V) logits live only inside it: with
    GPT-2's vocabulary they are the largest tensor of a step (32 x 1024 tokens: 3.3 GB in bf16),
    which the plain path stores for the backward pass and reads twice more there. Here they are
    read once for the log-sum-exp and once to become their own gradient,
        d loss / d logits = (softmax(logits) - (1 - eps) onehot(target) - eps / vocab)
                            * [target >= 0] / n,
    which the two backward matrix products then consume. The backward pass only scales the two
    saved gradients by the incoming one. Matrix products follow autocast, like nn.Linear's. The
    work between the products is grads_fn (default logit_grads; the model passes its LogitGrads,
    compiled where the blocks are).

    fp8=True runs the three matrix products in FP8 instead (fp8_logits, fp8_grads); the rest is
    the same."""

    @staticmethod
    def forward(ctx, h, weight, targets, eps, fp8=False, vocab=None, grads_fn=None):
        # logits, in the compute dtype (autocast's, else h's)
        if fp8:
            logits, operands = fp8_logits(h, weight)  # (N, V) in bf16
        else:
            logits = h @ weight.t()  # (N, V)
        dtype = logits.dtype
        loss, grad, n = (grads_fn or logit_grads)(logits, targets, eps, vocab or logits.size(1),
                                                  torch.float32 if fp8 else dtype)
        if fp8:
            grad_h, grad_w = fp8_grads(grad, n, operands, h.dtype, weight.dtype)
        else:
            # 1/n comes after the products, in fp32: in fp16, grad / n (~1e-8 for 16k tokens)
            # would flush to zero before a GradScaler's scale reached it in backward. Unnormalised,
            # a row of grad sums to at most 2 in absolute value, so grad @ weight stays in range;
            # grad^T @ h sums over n tokens, so h is scaled by a power of two s with
            # n * max|h| * s <= 2^15.
            h_max = h.abs().amax().float().clamp(min=1e-12)
            s = (2.0 ** 15 / (n * h_max)).log2().floor().exp2().clamp(max=1)
            acc = torch.promote_types(dtype, torch.float32)  # fp32 (fp64 for fp64 inputs)
            grad_h = (grad @ weight).to(acc) / n  # (N, C)
            grad_w = (grad.t() @ (h * s.to(h.dtype))).to(acc) / (n * s)  # (V, C)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = h.dtype, weight.dtype
        return loss

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_weight = ctx.saved_tensors  # fp32 unless fp8: scaled by g before any cast
        grad_h = (g * grad_h).to(ctx.dtypes[0])
        grad_weight = (g * grad_weight).to(ctx.dtypes[1])
        return grad_h, grad_weight, None, None, None, None, None


# the FP8 head, an opt-in (fp8_head=True)

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
# |d loss / d logit| * n <= 1, so the scaled gradient fits E5M2 (max 57344) with no amax pass
GRAD_SCALE = 2.0 ** 15


def to_fp8(x, dtype):
    """Tensorwise FP8: (x8, inv) with x ~ x8 * inv, the largest |x| mapped to dtype's largest."""
    scale = torch.finfo(dtype).max / x.abs().amax().float().clamp(min=1e-12)
    return (x.float() * scale).to(dtype), scale.reciprocal()


def fp8_logits(h, weight):
    """LinearCrossEntropy's logits h @ weight^T (N, V) in FP8 (fp8_head=True; an H100-class GPU):
    torch._scaled_mm with fp32 accumulation and a bf16 result, h and weight in E4M3 with tensorwise
    scales. Returns the logits and the FP8 operands (h8, h_inv, w8, w_inv) for fp8_grads."""
    if h.size(0) % 16 or weight.size(0) % 16:
        raise ValueError(f"fp8_head needs the tokens in a batch ({h.size(0)}) and the vocabulary "
                         f"({weight.size(0)}) to be multiples of 16; change batch_size or "
                         f"block_size, or drop fp8_head")
    h8, h_inv = to_fp8(h, E4M3)
    w8, w_inv = to_fp8(weight, E4M3)
    logits = torch._scaled_mm(h8, w8.t(), h_inv, w_inv, out_dtype=torch.bfloat16)  # (N, V)
    return logits, (h8, h_inv, w8, w_inv)


def fp8_grads(grad, n, operands, h_dtype, w_dtype):
    """The two backward products (grad @ weight / n, grad^T @ h / n) in FP8, from n times the logit
    gradient (N, V) in E5M2 with the fixed GRAD_SCALE (every element of softmax - onehot lies in
    [-1, 1]) and fp8_logits' operands."""
    h8, h_inv, w8, w_inv = operands
    g8 = (grad * GRAD_SCALE).to(E5M2)
    g_inv = (n * GRAD_SCALE).float().reciprocal()
    # the column-major operands _scaled_mm wants are transposed copies
    grad_h = torch._scaled_mm(g8, w8.t().contiguous().t(), g_inv, w_inv,
                              out_dtype=torch.bfloat16)  # (N, C)
    grad_w = torch._scaled_mm(g8.t().contiguous(), h8.t().contiguous().t(), g_inv, h_inv,
                              out_dtype=torch.bfloat16)  # (V, C)
    return grad_h.to(h_dtype), grad_w.to(w_dtype)


# ----------------------------------------------------------------------------------------------
# attention

def manual_attention(q, k, v, bias=None, causal=False, dropout_p=0.0):
    """softmax(Q K^T / sqrt(d_k) + bias) V, written out. q (B, nh, Tq, hs), k and v (B, nh, Tk, hs).

    bias is additive, (B|1, nh|1, Tq, Tk): 0 where a query may look, -inf where it may not, plus the
    ALiBi term. causal=True (only used with bias=None) masks keys after the query.
    Returns the output (B, nh, Tq, hs) and the attention weights (B, nh, Tq, Tk).
    """
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, Tq, Tk)
    if causal:
        future = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if bias is not None:
        scores = scores + bias
    weights = F.softmax(scores.float(), dim=-1).to(q.dtype)
    return F.dropout(weights, dropout_p) @ v, weights


class Linear(nn.Linear):
    """nn.Linear, except for one row (batch 1, one token) without gradients under torch.compile,
    that is in a compiled decode step at batch 1: there y = sum(x * W) + b is written as products
    and a float32 sum, which Inductor turns into one reduction kernel of its own with the bias, the
    cast and their neighbours fused in, instead of a cuBLAS matrix-vector product and separate
    elementwise kernels. At batch 1 a product of a few MB is bound by its kernel's latency, not by
    reading W: on one H100 the GPT-2 small step replays in 432 us instead of 490, 2,111 tokens/s
    instead of 1,882 (docs/PERFORMANCE.md, 4). The output has nn.Linear's dtype (autocast's, if on)."""

    def forward(self, x):
        if torch.compiler.is_compiling() and not torch.is_grad_enabled() \
                and x.numel() == x.shape[-1]:  # one row
            y = (x.float().unsqueeze(-2) * self.weight.float()).sum(-1)  # (..., out)
            if self.bias is not None:
                y = y + self.bias.float()
            device = x.device.type
            autocast = torch.is_autocast_enabled(device)
            return y.to(torch.get_autocast_dtype(device) if autocast else x.dtype)
        return super().forward(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.n_head = cfg.n_head
        self.layer_idx = layer_idx
        self.c_attn = Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.rate("resid"))
        self.dropout = cfg.rate("attn")
        self.kind = cfg.attention
        self.causal = cfg.causal

    def forward(self, x, inputs):
        B, T, C = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head)  # (B, T, 3, nh, hs)
        if inputs.rope is not None:  # rotate queries and keys together: (B, T, 2, nh, hs)
            cos, sin = inputs.rope  # (T, hs)
            q, k = apply_rope(qkv[:, :, :2], cos[:, None, None], sin[:, None, None]).unbind(2)
            v = qkv[:, :, 2]
        else:
            q, k, v = qkv.unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if inputs.cache is not None:  # generation: store this step's keys/values, attend over all
            k, v = inputs.cache.update(self.layer_idx, k, v)  # (B, nh, cache size, hs)
        bias = None if inputs.bias is None else inputs.bias.to(q.dtype)
        causal = self.causal and bias is None
        dropout_p = self.dropout if self.training else 0.0
        if self.kind == "manual" or inputs.record is not None:
            y, weights = manual_attention(q, k, v, bias, causal, dropout_p)
            if inputs.record is not None:
                inputs.record.append(weights.detach())
        else:  # FlashAttention / memory-efficient kernels on GPU when bias is None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                               is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"),
                    "relu": nn.ReLU()}[cfg.activation]
        self.c_proj = Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.rate("resid"))

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


def layer_norm(cfg):
    if cfg.norm == "none":
        return nn.Identity()
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    """pre-LN:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))      (GPT-2; trains without warmup)
    post-LN: x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))      (the 2017 paper; needs warmup)
    residual=False drops the 'x +'; norm='none' makes every ln an identity.
    layer_drop: while training, each sequence skips each branch with probability
    layer_drop * (layer_idx + 1) / n_layer, and a kept branch is scaled by 1 / (1 - that), so the
    expected output is the full block's (stochastic depth, Huang et al. 2016, linear decay rule)."""

    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.ln_1 = layer_norm(cfg)
        self.attn = SelfAttention(cfg, layer_idx)
        self.ln_2 = layer_norm(cfg)
        self.mlp = MLP(cfg)
        self.post_ln = cfg.norm == "post"
        self.residual = cfg.residual
        # a float per layer: with compile_scope="block", torch.compile specialises the block on the
        # first layer's rate, then compiles once more with the rate as a symbol (two compilations)
        self.drop_rate = cfg.layer_drop * (layer_idx + 1) / cfg.n_layer

    def add(self, x, y):
        if not self.residual:
            return y
        if self.training and self.drop_rate:  # one draw per sequence: (B, 1, 1)
            keep = torch.rand(y.shape[0], 1, 1, device=y.device) >= self.drop_rate
            y = y * keep.to(y.dtype) / (1 - self.drop_rate)  # one rounding, in y's dtype
        return x + y

    def forward(self, x, inputs):
        if self.post_ln:
            x = self.ln_1(self.add(x, self.attn(x, inputs)))
            return self.ln_2(self.add(x, self.mlp(x)))
        x = self.add(x, self.attn(self.ln_1(x), inputs))
        return self.add(x, self.mlp(self.ln_2(x)))


class AttentionInputs:
    """What every layer's attention reads in one forward pass, made once by Transformer.encode:
    the additive bias (attention_bias, or None), RoPE's (cos, sin), the KV cache, and a list that
    collects attention weights (attention_maps). A plain class, not a pytree such as a NamedTuple,
    so that FSDP's input casting leaves the fp32 bias and angles alone."""

    def __init__(self, bias=None, rope=None, cache=None, record=None):
        self.bias = bias
        self.rope = rope
        self.cache = cache
        self.record = record


def attention_bias(qpos, kpos, key_mask, causal, window, slopes=None):
    """Additive attention bias (B|1, nh|1, Tq, Tk), shared by every layer and by manual and fused
    attention: 0 where a query may look, -inf where it may not, minus ALiBi's m_h * distance.

    qpos (Tq,) and kpos (Tk,) are absolute positions, kpos -1 an empty cache slot; key_mask (B, Tk)
    is 1 for real tokens, 0 for padding. A query sees the keys less than window positions away:
    behind it (causal), or on both sides. slopes (nh,): ALiBi (Press et al. 2022, 3).
    """
    dist = qpos[:, None] - kpos[None, :]  # (Tq, Tk): how far back each key is
    # a sliding window past block_size
    allowed = (dist >= 0) & (dist < window) if causal else dist.abs() < window
    allowed = allowed & (kpos >= 0)[None, :]  # empty cache slots
    allowed = allowed[None, None]  # (1, 1, Tq, Tk)
    if key_mask is not None:  # key padding
        allowed = allowed & key_mask.bool()[:, None, None, :]  # (B, 1, Tq, Tk)
    # a query may always see itself, so no softmax row is empty (a padding query's output is unused)
    allowed = allowed | (dist == 0)
    bias = torch.zeros(allowed.shape, device=qpos.device).masked_fill(~allowed, float("-inf"))
    if slopes is not None:  # -m_h * distance; symmetric if bidirectional
        bias = bias - slopes[None, :, None, None] * dist.abs()[None, None].float()
    return bias


class KVCache:
    """Keys and values of past tokens, per layer, in a ring buffer of `size` slots (block_size),
    and the positions they hold: the cache alone writes its state.

    Per forward pass, advance(T) counts the T new tokens and places them (position p goes to slot
    p % size); then each layer's update() writes their keys and values and returns all the cached
    ones. Slot s holds absolute position pos[s] (-1: empty). Because keys are stored already rotated
    (RoPE) and ALiBi/masks are computed from positions, the order of slots does not matter, so a
    full buffer simply overwrites its oldest slot: sliding-window attention over the last `size`
    tokens.

    A recorded decode step (CUDA graph) cannot count on the host: it calls place(pos) with a
    position tensor it fills itself, and the host count moves by count(1) after each replay.
    """

    def __init__(self, n_layer, size):
        self.n_layer = n_layer
        self.size = size
        # per layer (B, nh, size, hs), allocated by the first update; one tensor per layer, not
        # views of one (n_layer, ...) tensor: torch.compile turns a write into a view of a graph
        # input into a copy of the whole base tensor, every layer, every step
        self.k = self.v = None
        self.pos = None  # (size,) absolute position in each slot, -1: empty
        self.slots = None  # (T,) the slots of the tokens of the current forward pass
        self.length = 0  # tokens counted so far = absolute position of the next token

    def advance(self, T, device):
        """Count T new tokens, place them (see place) and return their positions (T,)."""
        pos = torch.arange(self.length, self.length + T, device=device)  # (T,)
        self.count(T)
        return self.place(pos)

    def count(self, T):
        self.length += T

    def place(self, pos):
        """Give the tokens at positions pos (T,) their slots, without counting them."""
        if self.pos is None:
            self.pos = torch.full((self.size,), -1, dtype=torch.long, device=pos.device)
        self.slots = pos % self.size
        self.pos[self.slots] = pos
        return pos

    def update(self, layer, k, v):
        """Write one layer's keys and values (B, nh, T, hs) of the tokens placed last (advance or
        place), and return the layer's whole cache (B, nh, size, hs) for attention."""
        if self.k is None:  # allocated lazily, in the layers' compute dtype (bf16 under autocast)
            B, nh, _, hs = k.shape
            self.k = [k.new_zeros(B, nh, self.size, hs) for _ in range(self.n_layer)]
            self.v = [torch.zeros_like(t) for t in self.k]
        self.k[layer].index_copy_(2, self.slots, k)  # (B, nh, size, hs)
        self.v[layer].index_copy_(2, self.slots, v)
        return self.k[layer], self.v[layer]


def record_cuda_graph(fn, device, warmup=2, before_recording=None):
    """Run fn() warmup times on a side stream (the first calls of a compiled fn compile it there),
    call before_recording(), then record one more call as a CUDA graph, all on device (which
    need not be the current one: a graph records only its own device's stream).
    Returns (graph, out): graph.replay() re-runs the recorded kernels on the same memory, so out
    (fn's result, in memory the graph owns) then holds the new result. Shared by graphed decoding
    and graphed training steps (parallel.GraphedStep)."""
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        if before_recording is not None:
            before_recording()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
    return graph, out


# ----------------------------------------------------------------------------------------------
# the model

class Transformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = cfg = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=(nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos_encoding == "learned"
                 else nn.Identity()),
            drop=nn.Dropout(cfg.rate("embd")),
            h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)]),
            # pre-LN needs a final norm (the residual stream is never normalised otherwise);
            # post-LN already ends in one.
            ln_f=layer_norm(cfg) if cfg.norm == "pre" else nn.Identity(),
        ))
        self.out_drop = nn.Dropout(cfg.out_dropout)
        if cfg.n_classes:
            self.cls_head = nn.Linear(cfg.n_embd, cfg.n_classes)
        else:
            self.lm_head = Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            self.logit_grads = LogitGrads()  # the training loss's elementwise work (no state)
            if cfg.tie_weights:
                self.lm_head.weight = self.transformer.wte.weight
        # fixed tables are buffers, not parameters, and are not saved (they are recomputed)
        if cfg.pos_encoding == "sinusoidal":
            table = sinusoidal_table(cfg.block_size, cfg.n_embd)
            self.register_buffer("sin_table", table, persistent=False)
        if cfg.pos_encoding == "alibi":
            self.register_buffer("slopes", alibi_slopes(cfg.n_head), persistent=False)
        if cfg.pos_encoding == "rope":
            # a table for positions 0..block_size-1, the training case: under torch.compile, angles
            # computed inline get recomputed inside every layer's kernels
            pos = torch.arange(cfg.block_size)
            cos, sin = rope_cos_sin(pos, cfg.n_embd // cfg.n_head, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the init of the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer), so the stream's variance does not grow with depth (Radford et al.
        # 2019, 2.3)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, exclude_embeddings=False):
        """Parameters, shared ones counted once. exclude_embeddings drops the position table and,
        for an untied model, the token table (with tying that matrix is also the output layer)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            if self.config.pos_encoding == "learned":
                n -= self.transformer.wpe.weight.numel()
            if not (self.config.tie_weights and not self.config.n_classes):
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len):
        """Training FLOPs per token (forward + backward): 6N + 12 L T C (Kaplan et al. 2020;
        PaLM appendix B), N without embeddings."""
        cfg = self.config
        n = self.num_params(exclude_embeddings=True)
        return 6 * n + 12 * cfg.n_layer * seq_len * cfg.n_embd

    def __repr__(self):
        cfg = self.config
        head = "language model"
        if cfg.n_classes:
            head = f"classifier over {cfg.n_classes} classes ({cfg.pooling} pooling)"
        return (f"Transformer({head}: {cfg.n_layer} layers x {cfg.n_head} heads x {cfg.n_embd} "
                f"wide, context {cfg.block_size}, vocab {cfg.vocab_size}, pos={cfg.pos_encoding}, "
                f"norm={cfg.norm}, residual={cfg.residual}, attention={cfg.attention}, "
                f"causal={cfg.causal}, {self.num_params() / 1e6:.2f}M parameters)\n"
                f"  each block: {self.transformer.h[0]!r}")

    # -- forward -----------------------------------------------------------------------------

    def _check_input(self, idx, end):
        cfg = self.config
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        if end > cfg.block_size and cfg.pos_encoding not in RELATIVE:
            raise ValueError(
                f"sequence length {end} exceeds block_size={cfg.block_size}, and pos_encoding="
                f"'{cfg.pos_encoding}' has no positions past it: crop the input to the last "
                f"{cfg.block_size} tokens, or use pos_encoding 'rope', 'alibi' or 'none', which "
                f"attend over a sliding window of block_size tokens")
        # a value check needs a device sync: skipped inside torch.compile (training on GPU) and
        # while a CUDA graph is being recorded (generation on GPU)
        if torch.compiler.is_compiling() or not idx.numel():
            return
        if not (idx.is_cuda and torch.cuda.is_current_stream_capturing()):
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= cfg.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token id {bad} is out of range: vocab_size={cfg.vocab_size} "
                                 f"allows 0..{cfg.vocab_size - 1}")

    def embed(self, idx, pos):
        """Token ids (B, T) at absolute positions pos (T,) -> input embeddings (B, T, C)."""
        cfg = self.config
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.training and cfg.word_dropout:
            # a dropped word type is zero at every position of the batch
            keep = torch.rand(cfg.vocab_size, device=idx.device) >= cfg.word_dropout  # (V,)
            scale = keep[idx] / (1 - cfg.word_dropout)  # (B, T)
            # except as a window's first token, which is always kept, as it is. A zero row there is
            # a fixed point at initialisation: with zero biases every layer maps it to zero again
            # (it attends only to itself, causally; bidirectionally, only when all tokens are
            # dropped), and each LayerNorm multiplies the gradient of a zero row by 1/sqrt(eps)
            # (316): a gradient norm of 4e13 at step 0 for 6 x 512 on WikiText-2; 12 x 384 stopped at
            # step 0 on an infinite one (results/recipes/wt2-gnorm/).
            # A zero at a later position sees the first token and stops being zero in layer 0. (With
            # learned or sinusoidal positions the row is not zero; with RoPE, ALiBi or none it is.)
            scale[:, 0] = 1.0
            x = x * scale.to(x.dtype)[..., None]
        if cfg.pos_encoding == "learned":
            x = x + self.transformer.wpe(pos)
        elif cfg.pos_encoding == "sinusoidal":
            # the paper scales embeddings by sqrt(d_model) before adding the table (Vaswani et al.
            # 3.4); without it the fixed table (rms 0.7) would drown the 0.02-scale token embeddings
            x = x * math.sqrt(cfg.n_embd) + self.sin_table[pos].to(x.dtype)
        return self.transformer.drop(x)

    def attention_inputs(self, pos, attention_mask=None, cache=None, record=None, from_zero=False,
                         window=None):
        """What every layer's attention needs for queries at positions pos (T,): the mask (keys at
        the cache's positions, if any, else at pos) and RoPE's angles (RoPE's table when from_zero,
        i.e. pos is 0..T-1). window: how far back a query sees (default block_size)."""
        cfg = self.config
        T = len(pos)
        window = window or cfg.block_size
        slopes = self.slopes if cfg.pos_encoding == "alibi" else None
        # the kernels' own causal (or no) masking is exactly right unless there is padding, ALiBi,
        # a cache, or a sliding window (an input longer than the window)
        plain = attention_mask is None and slopes is None and cache is None and T <= window
        bias = None
        if not plain:
            kpos = pos if cache is None else cache.pos
            bias = attention_bias(pos, kpos, attention_mask, cfg.causal, window, slopes)
        rope = None
        if cfg.pos_encoding == "rope" and from_zero:
            rope = self.rope_cos[:T], self.rope_sin[:T]
        elif cfg.pos_encoding == "rope":
            rope = rope_cos_sin(pos, cfg.n_embd // cfg.n_head, cfg.rope_base)
        return AttentionInputs(bias, rope, cache, record)

    def encode(self, idx, attention_mask=None, cache=None, record=None, pos=None, window=None):
        """Token ids (B, T) -> final hidden states (B, T, C) after the last norm.
        pos: absolute positions (T,) as a tensor (default: 0.., or after the cached tokens; given
        with a cache, the cache places them but does not count them: see KVCache).
        window: a query attends to at most this many positions, itself included (default
        block_size, the trained context). A larger one lets relative positions ('alibi', 'rope',
        'none') read an input longer than block_size whole, as ALiBi's evaluation at lengths
        beyond training does (Press et al. 2022); RoPE is not known to extrapolate."""
        T = idx.size(1)
        # the length check needs the host count, which a recorded step (pos given) does not keep
        self._check_input(idx, T if cache is None or pos is not None else cache.length + T)
        from_zero = pos is None and cache is None and T <= self.config.block_size
        if cache is not None and pos is not None:  # a recorded decode step: the caller counts
            pos = cache.place(pos)
        elif cache is not None:
            pos = cache.advance(T, idx.device)
        elif pos is None:
            pos = torch.arange(T, device=idx.device)  # absolute positions (T,)
        x = self.embed(idx, pos)
        inputs = self.attention_inputs(pos, attention_mask, cache, record, from_zero, window)
        for block in self.transformer.h:
            x = block(x, inputs)
        return self.transformer.ln_f(x)

    def pool(self, h, attention_mask=None):
        """Sequence representation (B, C) from hidden states (B, T, C), ignoring padding."""
        pooling = self.config.pooling
        if pooling == "first":
            return h[:, 0]
        if attention_mask is None:
            return h.mean(dim=1) if pooling == "mean" else h[:, -1]
        mask = attention_mask.to(h.dtype)  # (B, T), 1 for real tokens
        if pooling == "mean":
            return (h * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        last = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # right padding: last real token
        return h[torch.arange(h.size(0), device=h.device), last]

    def forward(self, idx, targets=None, attention_mask=None, return_logits=True, window=None):
        """idx (B, T) token ids; attention_mask (B, T), 1 for real tokens, 0 for padding.

        Language model: logits (B, T, vocab) at every position; loss = mean cross-entropy over
        targets (B, T), positions with target -1 ignored.
        Classifier: logits (B, n_classes); loss = cross-entropy against class ids targets (B,).
        window: how far back a query sees (see encode).
        return_logits=False (training) returns (None, loss); for a language model with gradients on,
        the head and the loss then run as one LinearCrossEntropy, which never stores the logits.
        """
        cfg = self.config
        h = self.out_drop(self.encode(idx, attention_mask, window=window))
        if cfg.n_classes:
            logits = self.cls_head(self.pool(h, attention_mask))
            loss = None if targets is None else F.cross_entropy(
                logits.float(), targets, label_smoothing=cfg.label_smoothing)
        elif not return_logits and targets is not None and torch.is_grad_enabled():
            h, targets = h.flatten(0, 1), targets.reshape(-1)
            if cfg.mlm and not (cfg.fp8_head or torch.compiler.is_compiling()
                                or h.is_cuda and torch.cuda.is_current_stream_capturing()):
                # only the masked tokens (15%) are scored: the head's products shrink ~7x. The
                # selection's size depends on the data, so a compiled or recorded step keeps all,
                # and so does the FP8 head, whose products need rows in multiples of 16
                keep = targets >= 0
                keep[0] = True  # never an empty selection (an unscored target adds nothing)
                h, targets = h[keep], targets[keep]
            loss = LinearCrossEntropy.apply(h, self.lm_head.weight, targets, cfg.label_smoothing,
                                            cfg.fp8_head, cfg.real_vocab_size, self.logit_grads)
            return None, loss
        else:
            logits = self.lm_head(h)
            n = cfg.real_vocab_size or cfg.vocab_size
            if n < cfg.vocab_size:  # padding ids get no probability
                padding = torch.arange(cfg.vocab_size, device=logits.device) >= n  # (V,)
                logits = logits.masked_fill(padding, float("-inf"))
            loss = None if targets is None else F.cross_entropy(  # smoothing over the real ids only
                logits.float()[..., :n].reshape(-1, n), targets.reshape(-1), ignore_index=-1,
                label_smoothing=cfg.label_smoothing)
        return (logits if return_logits else None), loss

    @torch.no_grad()
    def attention_maps(self, idx, attention_mask=None):
        """Attention weights of every layer, a list of (B, nh, T, T), from the manual path."""
        record = []
        self.encode(idx, attention_mask, record=record)
        return record

    # -- generation ---------------------------------------------------------------------------

    @torch.no_grad()
    def generate_stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        generator=None, vocab_limit=None, compile=False):
        """Yield the new tokens (B, 1) one step at a time; see generate()."""
        if self.config.n_classes:
            raise ValueError("generate() needs a language model (n_classes=0), "
                             "this is a classifier")
        bad_k = top_k is not None and top_k < 1
        bad_p = top_p is not None and not 0 < top_p <= 1
        if temperature < 0 or bad_k or bad_p:
            raise ValueError(f"need temperature >= 0, top_k >= 1, 0 < top_p <= 1; got temperature="
                             f"{temperature}, top_k={top_k}, top_p={top_p}")

        # ids at and above real_vocab_size pad the vocabulary for speed: never sampled
        vocab_limit = vocab_limit or self.config.real_vocab_size or None

        def pick(logits):  # (B, V) -> (B, 1)
            return sample_next(logits[:, :vocab_limit], temperature, top_k, top_p, generator)

        if max_new_tokens < 1:
            return
        relative = self.config.pos_encoding in RELATIVE
        generate = self._generate_cached if relative else self._generate_cropped
        was_training = self.training
        self.eval()
        try:
            yield from generate(idx[:, -self.config.block_size:], max_new_tokens, pick, compile)
        finally:
            self.train(was_training)

    def _generate_cached(self, seq, n, pick, compile):
        """Relative positions (rope, alibi, none): the prompt once into the cache, then one token
        per step; past block_size the ring buffer slides the attention window."""
        cache = KVCache(self.config.n_layer, self.config.block_size)
        logits = self.lm_head(self.encode(seq, cache=cache)[:, -1])  # prefill: the whole prompt
        nxt = pick(logits)
        yield nxt  # before the decode step is built (recorded, maybe compiled): seconds, at first
        step = self._decoder(cache, seq, compile) if n > 1 else None
        for _ in range(n - 1):
            nxt = pick(step(nxt))
            yield nxt

    def _generate_cropped(self, seq, n, pick, compile):
        """Absolute positions (learned, sinusoidal) end at block_size: decode through the cache
        while the text fits, then re-encode the last block_size tokens from position 0 at every
        step, exactly what a forward over the cropped text computes."""
        block_size = self.config.block_size
        cache = KVCache(self.config.n_layer, block_size)
        logits = self.lm_head(self.encode(seq, cache=cache)[:, -1])  # prefill: the whole prompt
        nxt = pick(logits)
        yield nxt  # before the decode step is built (recorded, maybe compiled): seconds, at first
        fits = n > 1 and cache.length < block_size
        step = self._decoder(cache, seq, compile) if fits else None
        for _ in range(n - 1):
            seq = torch.cat([seq, nxt], dim=1)[:, -block_size:]
            if cache.length < block_size:
                logits = step(nxt)
            else:  # the window is full: no cache from here on
                logits = self.lm_head(self.encode(seq)[:, -1])
            nxt = pick(logits)
            yield nxt

    def _decoder(self, cache, prompt, compile=False):
        """The decode step: token ids (B, 1) at the next position -> logits (B, V), through cache.

        On CUDA it is recorded once as a CUDA graph and replayed: a step of a small model is ~20
        kernels per layer, each far shorter than its launch, and one graph launch replaces them.
        compile=True compiles the step before recording (torch.compile fuses the elementwise
        kernels; it costs a compilation the first time a model decodes at a batch size)."""
        device = prompt.device
        pos = torch.full((1,), cache.length, dtype=torch.long, device=device)  # (1,)
        if not prompt.is_cuda:  # the same step, run as it is (compile: CUDA only)
            def run_eagerly(nxt):
                pos.fill_(cache.length)
                logits = decode_step(self, nxt, pos, cache)
                cache.count(1)
                return logits
            return run_eagerly
        tok = torch.zeros_like(prompt[:, :1])  # (B, 1): with pos, the graph's static inputs
        # cache_enabled=False: cached weight casts must not outlive the recording
        autocast = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                                  enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        step = compiled_decode_step() if compile else decode_step

        def run():
            with autocast:
                return step(self, tok, pos, cache)
        # warm-up and recording place the next position, uncounted: the first replay overwrites it
        graph, logits = record_cuda_graph(run, device)

        def replay(nxt):
            tok.copy_(nxt)
            pos.fill_(cache.length)
            graph.replay()  # the recorded step: the cache's slot and key/value writes included
            cache.count(1)  # the host's count, which the graph cannot do
            return logits
        return replay

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 generator=None, vocab_limit=None, compile=False):
        """Continue idx (B, T) by max_new_tokens tokens; returns (B, T + max_new_tokens).

        The prompt is encoded once into a KV cache, then each step feeds one token (on CUDA, a step
        is replayed as a recorded CUDA graph).
        temperature=0 is greedy decoding; top_k keeps the k most likely tokens; top_p keeps the
        smallest set whose probability reaches p (nucleus sampling, Holtzman et al. 2020).
        Past block_size tokens:
          - 'rope', 'alibi', 'none': sliding-window attention; each token attends to the last
            block_size tokens (the cache is a ring buffer). This equals a full forward over the
            whole text with a sliding-window mask, which is what forward() does past block_size.
          - 'learned', 'sinusoidal': the text is cropped to its last block_size tokens and
            re-encoded from position 0 at every step, the same as calling forward() on the crop.
        A prompt longer than block_size is cropped to its last block_size tokens.
        vocab_limit: sample only ids below it (a vocabulary padded for speed has rows no text uses;
        default: the config's real_vocab_size, if set).
        compile: on CUDA, compile the decode step before recording it (see _decoder).
        """
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, generator,
                                        vocab_limit, compile))
        return torch.cat([idx] + new, dim=1)

    # -- GPT-2 weights ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path, **overrides):
        """A GPT-2 from a local Hugging Face-format directory (config.json and model.safetensors or
        pytorch_model.bin): learned positions, pre-LN, tanh GELU, biases, tied head.
        overrides change config fields that do not touch the weights (e.g. dropout, attention)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path / 'config.json'} not found: expected a Hugging Face "
                                    f"GPT-2 directory with config.json and model.safetensors or "
                                    f"pytorch_model.bin")
        hf = json.loads((path / "config.json").read_text())
        plain = (hf.get("model_type", "gpt2") == "gpt2" and hf.get("scale_attn_weights", True)
                 and not hf.get("scale_attn_by_inverse_layer_idx")
                 and not hf.get("reorder_and_upcast_attn"))
        if not plain:
            raise ValueError(f"{path}: only plain GPT-2 checkpoints are supported (model_type "
                             f"'gpt2' with default attention scaling)")
        act = hf.get("activation_function", "gelu_new")
        args = dict(vocab_size=hf["vocab_size"], block_size=hf["n_positions"],
                    n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                    pos_encoding="learned", norm="pre",
                    activation="gelu_tanh" if act in ("gelu_new", "gelu_pytorch_tanh") else "gelu",
                    bias=True, tie_weights=True, norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                    mlp_ratio=(hf.get("n_inner") or 4 * hf["n_embd"]) // hf["n_embd"], dropout=0.0)
        model = cls(TransformerConfig(**{**args, **overrides}))
        state = {}
        for name, tensor in read_weights(path).items():
            name = name.removeprefix("transformer.")
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # GPT-2's stored causal-mask buffers, not weights
            if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                tensor = tensor.t()  # GPT-2's Conv1D stores (in, out); nn.Linear wants (out, in)
            state[name if name == "lm_head.weight" else "transformer." + name] = tensor.float()
        state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))
        model.load_state_dict(state, strict=True)
        return model


def decode_step(model, tok, pos, cache):
    """Logits (B, V) of tokens tok (B, 1) at position pos (1,) through cache: what generation
    records as a CUDA graph (Transformer._decoder)."""
    return model.lm_head(model.encode(tok, cache=cache, pos=pos)[:, -1])


@functools.cache
def compiled_decode_step():
    """decode_step under torch.compile: compiled once per model and batch size (pos arrives as a
    tensor, so the position is no guard). torch.compile keeps at most
    torch._dynamo.config.recompile_limit (8) compilations of a function per process: past that
    many models or batch sizes, the step runs uncompiled (still recorded as a graph). Built on
    first use: torch.compile's import takes seconds, which a process that never decodes compiled
    should not pay."""
    return torch.compile(decode_step, dynamic=False)


def sample_next(logits, temperature, top_k, top_p, generator):
    """One token per row from logits (B, V): greedy, or temperature / top-k / top-p sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64}


def read_weights(path):
    """State dict from model.safetensors (parsed here: an 8-byte header length, a JSON header of
    name -> dtype, shape, byte offsets, then raw little-endian data) or pytorch_model.bin."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        raw = (path / "model.safetensors").read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        state = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise ValueError(f"{path / 'model.safetensors'}: tensor {name} has unsupported "
                                 f"dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            buf = bytearray(raw[8 + n + begin: 8 + n + end])
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
            state[name] = t.reshape(info["shape"])
        return state
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")
