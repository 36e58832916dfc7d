"""model.py against references: formulas, invariances, fused vs manual attention, KV cache, GPT-2."""
import itertools
import json
import math

import pytest
import torch

import model as model_module
from model import (ATTENTIONS, NORMS, POS_ENCODINGS, LinearCrossEntropy, Transformer, TransformerConfig,
                   alibi_slopes, apply_rope, attention_bias, rope_cos_sin, sample_next, sinusoidal_table)

V, T = 37, 16


def tiny(**kw):
    args = dict(vocab_size=V, block_size=T, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    args.update(kw)
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**args))


def ids(B=3, L=T, seed=1):
    return torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(seed))


def right_padding_mask(lengths, L=T):
    return (torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]).long()


# ---- shapes, every combination ----------------------------------------------------------------

@pytest.mark.parametrize("pe,norm,attn,causal,n_classes",
                         list(itertools.product(POS_ENCODINGS, NORMS, ATTENTIONS, (True, False), (0, 3))))
def test_shapes_every_combination(pe, norm, attn, causal, n_classes):
    kw = dict(pos_encoding=pe, norm=norm, attention=attn, causal=causal, n_classes=n_classes,
              pooling="last" if causal else "first")
    if n_classes == 0 and not causal:
        with pytest.raises(ValueError, match="bidirectional language model"):
            tiny(**kw)
        return
    model = tiny(**kw)
    x = ids(B=2)
    mask = right_padding_mask([T, 9])
    if n_classes:
        logits, loss = model(x, torch.tensor([0, 2]), attention_mask=mask)
        assert logits.shape == (2, n_classes)
    else:
        logits, loss = model(x, x, attention_mask=mask)
        assert logits.shape == (2, T, V)
    assert loss.shape == () and torch.isfinite(loss)
    assert torch.isfinite(logits).all()


# ---- causality ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pe", POS_ENCODINGS)
@pytest.mark.parametrize("attn", ATTENTIONS)
def test_causal_invariance(pe, attn):
    model = tiny(pos_encoding=pe, attention=attn).eval()
    x = ids(B=2)
    t = 7
    y = x.clone()
    y[:, t + 1:] = (y[:, t + 1:] + 1) % V  # change every token after t
    a, _ = model(x)
    b, _ = model(y)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1]), "logits up to t must be bit-identical"
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:]), "logits after t must change"


def test_bidirectional_sees_the_future():
    model = tiny(causal=False, n_classes=2, pooling="first").eval()
    x = ids(B=1)
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % V
    h1, h2 = model.encode(x), model.encode(y)
    assert not torch.allclose(h1[:, 0], h2[:, 0])


# ---- manual attention == fused attention --------------------------------------------------------

@pytest.mark.parametrize("pe", POS_ENCODINGS)
@pytest.mark.parametrize("causal,padded", [(True, False), (True, True), (False, False), (False, True)])
def test_manual_equals_sdpa_outputs_and_gradients(pe, causal, padded):
    kw = dict(pos_encoding=pe, causal=causal, n_classes=0 if causal else 3)
    x = ids(B=3)
    mask = right_padding_mask([T, 11, 5]) if padded else None
    targets = x if causal else torch.tensor([0, 1, 2])
    results = []
    for attn in ATTENTIONS:
        model = tiny(attention=attn, **kw)
        logits, loss = model(x, targets, attention_mask=mask)
        loss.backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = results
    if padded and causal:  # logits at padding positions are unused; compare real positions
        keep = mask.bool()
        l1, l2 = l1[keep], l2[keep]
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=0)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-5, rtol=0, msg=name)


# ---- position encodings against their papers ------------------------------------------------------

def test_sinusoidal_table_is_the_papers_formula():
    d = 10
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_input_is_scaled_embedding_plus_table():
    """x = wte(idx) * sqrt(d_model) + PE (Vaswani et al. 2017, 3.4). Bug caught: the sqrt(d_model) scale
    dropped, or the table indexed by the wrong positions."""
    model = tiny(pos_encoding="sinusoidal").eval()
    seen = []
    model.transformer.drop.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = ids(B=2)
    model(x)
    expected = model.transformer.wte.weight[x] * math.sqrt(32) + sinusoidal_table(T, 32)[None]
    torch.testing.assert_close(seen[0], expected)


def test_rope_preserves_norm_and_depends_only_on_offset():
    g = torch.Generator().manual_seed(0)
    hs = 16
    q = torch.randn(1, 1, 1, hs, generator=g)
    k = torch.randn(1, 1, 1, hs, generator=g)

    def rot(x, p):
        cos, sin = rope_cos_sin(torch.tensor([p]), hs, 10000.0)
        return apply_rope(x, cos, sin)

    for p in (0, 3, 100, 5000):
        torch.testing.assert_close(rot(q, p).norm(), q.norm())
    dots = [(rot(q, m + s) * rot(k, n + s)).sum().item() for m, n in [(5, 2)] for s in (0, 1, 17, 400)]
    assert max(dots) - min(dots) < 1e-4
    other = (rot(q, 9) * rot(k, 2)).sum().item()  # a different offset gives a different score
    assert abs(other - dots[0]) > 1e-3


def test_rope_rotates_each_half_split_pair_by_its_angle():
    g = torch.Generator().manual_seed(0)
    hs, base = 8, 10000.0
    x = torch.randn(2, 3, 5, hs, generator=g)  # (B, nh, T, hs)
    cos, sin = rope_cos_sin(torch.arange(5), hs, base)
    out = apply_rope(x, cos, sin)
    for t in range(5):
        for i in range(hs // 2):
            a = t * base ** (-2 * i / hs)
            x1, x2 = x[..., t, i], x[..., t, i + hs // 2]
            torch.testing.assert_close(out[..., t, i], x1 * math.cos(a) - x2 * math.sin(a))
            torch.testing.assert_close(out[..., t, i + hs // 2], x2 * math.cos(a) + x1 * math.sin(a))
    assert apply_rope(x.bfloat16(), cos, sin).dtype == torch.bfloat16


def test_rope_angles_follow_rope_base_in_the_table_and_past_it():
    """rope_base=100: the angles are pos * 100^(-2i/hs) (Su et al. 2021, eq. 15), both from the
    table for positions 0..block_size-1 (a plain forward) and computed for later positions
    (decoding past block_size), against the formula in float64. Catches: the table or the
    on-the-fly angles built with the default base 10000 instead of cfg.rope_base."""
    base, hs = 100.0, 8
    model = tiny(rope_base=base)
    i = torch.arange(hs // 2, dtype=torch.float64)
    for pos, from_zero in ((torch.arange(T), True), (torch.arange(T, 3 * T), False)):
        cos, sin = model.attention_inputs(pos, from_zero=from_zero).rope
        angles = pos.double()[:, None] * base ** (-2 * i / hs)  # (T, hs/2)
        torch.testing.assert_close(cos.double(), torch.cat([angles, angles], -1).cos(),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(sin.double(), torch.cat([-angles.sin(), angles.sin()], -1),
                                   atol=1e-5, rtol=0)


def test_alibi_slopes_are_the_papers_geometric_sequence():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)]))
    # 12 heads: the 8 slopes of 8 heads, then every other slope of 16 heads (2^-0.5, 2^-1.5, ...)
    expected = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -(0.5 + i) for i in range(4)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


def test_alibi_bias_penalises_distance():
    model = tiny(pos_encoding="alibi", attention="manual").eval()
    pos = torch.arange(4)
    bias = model.attention_inputs(pos).bias  # (1, nh, 4, 4)
    slope0 = alibi_slopes(4)[0].item()
    assert bias[0, 0, 3, 0].item() == pytest.approx(-3 * slope0)
    assert bias[0, 0, 0, 3].item() == float("-inf")


def bias_by_loops(qpos, kpos, mask, causal, window, slopes):
    """The additive attention bias (B, nh, Tq, Tk) written out element by element from its definition."""
    B, nh = (1 if mask is None else len(mask)), len(slopes)
    out = torch.zeros(B, nh, len(qpos), len(kpos))
    for b, h, i, j in itertools.product(range(B), range(nh), range(len(qpos)), range(len(kpos))):
        d = int(qpos[i]) - int(kpos[j])
        ok = int(kpos[j]) >= 0 and (0 <= d < window if causal else abs(d) < window)
        ok = ok and (mask is None or bool(mask[b][j]))
        if ok or d == 0:  # a query always sees itself
            out[b, h, i, j] = -float(slopes[h]) * abs(d)
        else:
            out[b, h, i, j] = float("-inf")
    return out


@pytest.mark.parametrize("pe", ["alibi", "rope"])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_bias_equals_its_definition(pe, causal):
    """attention_bias, which manual and fused attention share, against loops: padding, the sliding
    window past block_size, empty cache slots, ALiBi on both sides, with the model's own slopes.
    Bugs caught: a mask off by one (< window vs <= window, dist > 0 vs >= 0), padding applied to
    queries instead of keys, ALiBi's sign or slope order."""
    model = tiny(pos_encoding=pe, causal=causal, n_classes=0 if causal else 3)
    slopes = alibi_slopes(4) if pe == "alibi" else torch.zeros(4)
    model_slopes = model.slopes if pe == "alibi" else None
    cases = [(torch.arange(6), torch.arange(6), right_padding_mask([6, 4], L=6)),      # padding
             (torch.arange(2 * T + 3), torch.arange(2 * T + 3), None),                   # past block_size
             (torch.tensor([20]), torch.tensor([17, 18, 19, 20, 5, -1, 4, 16]), None)]  # a ring buffer
    for qpos, kpos, mask in cases:
        got = attention_bias(qpos, kpos, mask, causal, T, model_slopes)
        want = bias_by_loops(qpos, kpos, mask, causal, T, slopes)
        assert torch.equal(got.expand(-1, 4, -1, -1), want.expand(got.size(0), -1, -1, -1)), (qpos, kpos)


def test_alibi_is_symmetric_in_the_bidirectional_encoder():
    """Bidirectional ALiBi penalises distance both ways, -m |i - j| (Press et al. 2022). Bug caught:
    the causal -m (i - j), which rewards keys after the query."""
    model = tiny(pos_encoding="alibi", causal=False, n_classes=3, attention="manual").eval()
    pos = torch.arange(T)
    bias = model.attention_inputs(pos).bias[0]  # (nh, T, T)
    assert torch.equal(bias, bias.transpose(-1, -2))
    assert bias[1, 2, 9].item() == pytest.approx(-7 * alibi_slopes(4)[1].item())
    # a token's effect on the pooled output does not depend on whether it sits left or right: reverse the text
    x = ids(B=1)
    mean_pool = tiny(pos_encoding="alibi", causal=False, n_classes=3, pooling="mean").eval()
    torch.testing.assert_close(mean_pool(x)[0], mean_pool(x.flip(1))[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("pe", ["rope", "alibi"])
def test_attention_depends_only_on_the_offset_between_query_and_key(pe):
    """Model level: shifting every position by a constant leaves every attention weight of every layer
    unchanged, while other offsets change them. Bugs caught: RoPE on the queries only (or the keys
    only), rotation by the wrong positions, no position signal at all."""
    model = tiny(pos_encoding=pe).eval()
    x = ids(B=2)

    def maps(pos):  # attention weights of every layer, (B, nh, T, T) each
        record = []
        model.encode(x, record=record, pos=pos)
        return record

    base = maps(torch.arange(T))
    for shift in (3, 1000):
        for a, b in zip(base, maps(torch.arange(T) + shift)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    stretched = maps(2 * torch.arange(T))  # every offset doubled
    assert not torch.allclose(base[0], stretched[0], atol=1e-3)


# ---- blocks: activations, norms, residuals ------------------------------------------------------

@pytest.mark.parametrize("activation", model_module.ACTIVATIONS)
def test_mlp_activation_is_its_formula(activation):
    """The MLP's activation against its formula in float64 on [-5, 5]: 'gelu' is the exact
    x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, 'gelu_tanh' GPT-2's tanh approximation, 'relu'
    max(x, 0). Catches: 'gelu' built as the tanh approximation (they differ by up to 5e-4)."""
    act = tiny(activation=activation).transformer.h[0].mlp.act
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    expected = {"gelu": 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
                "gelu_tanh": 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi)
                                                       * (x + 0.044715 * x ** 3))),
                "relu": x.clamp(min=0)}[activation]
    torch.testing.assert_close(act(x.float()).double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm,n_norms", [("pre", 2 * 2 + 1), ("post", 2 * 2), ("none", 0)])
def test_layer_norms_sit_where_the_norm_choice_puts_them(norm, n_norms):
    """pre-LN: two LayerNorms per block and a final one; post-LN: two per block and no final one
    (the last block already ends in a norm); 'none': no norm at all. Each has eps=norm_eps and,
    with bias=False, no bias (nor has any Linear). For pre-LN the final hidden states are
    (x - mean) / sqrt(var + eps) * gain of the last residual stream, written out in float64.
    Catches: norm_eps or bias not passed to nn.LayerNorm, norm='none' still building norms, a
    final norm added after a post-LN stack."""
    model = tiny(norm=norm, norm_eps=0.5, bias=False).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == n_norms
    assert all(m.eps == 0.5 and m.bias is None for m in norms)
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    if norm == "pre":
        seen = []
        model.transformer.ln_f.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        with torch.no_grad():
            model.transformer.ln_f.weight.uniform_(0.5, 1.5)
            h = model.encode(ids(B=2)).double()
        x = seen[0].double()
        var = x.var(-1, unbiased=False, keepdim=True)
        expected = (x - x.mean(-1, keepdim=True)) / (var + 0.5).sqrt()
        expected = expected * model.transformer.ln_f.weight.double()
        torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("residual", [True, False])
def test_a_block_is_its_formula(norm, residual):
    """One block against the formulas of its docstring, from its own sublayers, with every weight
    (norm gains and biases included) perturbed: pre-LN y = x + attn(ln_1(x)), out = y +
    mlp(ln_2(y)); post-LN y = ln_1(x + attn(x)), out = ln_2(y + mlp(y)); residual=False drops
    the 'x +' and 'y +'. Catches: residual=False still adding the input, and post-LN feeding the
    attention ln_1(x) instead of x."""
    model = tiny(norm=norm, residual=residual).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    block, inputs = model.transformer.h[0], model.attention_inputs(torch.arange(T))
    x = torch.randn(2, T, 32, generator=g)
    plus = (lambda a, b: a + b) if residual else (lambda a, b: b)
    with torch.no_grad():
        if norm == "pre":
            y = plus(x, block.attn(block.ln_1(x), inputs))
            expected = plus(y, block.mlp(block.ln_2(y)))
        else:
            y = block.ln_1(plus(x, block.attn(x, inputs)))
            expected = block.ln_2(plus(y, block.mlp(y)))
        torch.testing.assert_close(block(x, inputs), expected, atol=1e-6, rtol=1e-6)


# ---- classifier --------------------------------------------------------------------------------

@pytest.mark.parametrize("pe", POS_ENCODINGS)
@pytest.mark.parametrize("causal,pooling", [(False, "mean"), (False, "first"), (True, "last"), (True, "mean")])
def test_padding_does_not_change_classifier_output(pe, causal, pooling):
    model = tiny(pos_encoding=pe, causal=causal, n_classes=3, pooling=pooling).eval()
    x = ids(B=1, L=9)
    alone, _ = model(x)
    padded = torch.cat([x, torch.zeros(1, T - 9, dtype=torch.long)], dim=1)
    out, _ = model(padded, attention_mask=right_padding_mask([9]))
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=0)
    garbage = torch.cat([x, torch.randint(0, V, (1, T - 9))], dim=1)  # what the padding holds is irrelevant
    out2, _ = model(garbage, attention_mask=right_padding_mask([9]))
    torch.testing.assert_close(out2, alone, atol=1e-5, rtol=0)


def test_an_all_padding_row_mean_pools_to_zero():
    """Mean pooling of a row with no real token (attention_mask all 0) is the zero vector, so the
    classifier's logits there are its bias, finite; the other row is what it is alone. Catches:
    the count of real tokens not clamped to 1 (0 / 0: NaN logits), and a classifier head built
    without a bias."""
    model = tiny(causal=False, n_classes=3, pooling="mean").eval()
    with torch.no_grad():
        model.cls_head.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        x = ids(B=2)
        logits, _ = model(x, attention_mask=right_padding_mask([T, 0]))
        torch.testing.assert_close(logits[1], model.cls_head.bias)
        torch.testing.assert_close(logits[0], model(x[:1])[0][0], atol=1e-5, rtol=0)
    # and one real token pools to its own hidden state, not a fraction of it
    h = torch.randn(2, T, 32)
    torch.testing.assert_close(model.pool(h, right_padding_mask([1, T])), torch.stack([h[0, 0], h[1].mean(0)]))


def test_classifier_label_smoothing_is_the_formula():
    """Classifier loss with label smoothing eps: (1 - eps) (-log p_y) + eps mean_c (-log p_c) over the
    classes. Bug caught: smoothing dropped from (or mis-weighted in) the classifier head."""
    eps = 0.2
    model = tiny(causal=False, n_classes=3, pooling="mean", label_smoothing=eps)
    x, y = ids(B=4), torch.tensor([0, 2, 1, 2])
    logits, loss = model(x, y)
    logp = torch.log_softmax(logits.double(), dim=-1)
    expected = ((1 - eps) * -logp[torch.arange(4), y] - eps * logp.mean(-1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert tiny(causal=False, n_classes=3, pooling="mean")(x, y)[1].item() == pytest.approx(
        -logp[torch.arange(4), y].mean().item(), rel=1e-6)


def test_classifier_loss_of_a_bf16_model_is_worked_out_in_fp32():
    """A classifier with bf16 weights (as sample.py loads one): its loss is the cross-entropy of
    its bf16 logits computed in fp32, within 1e-6 of float64, not in bf16 (8 significant bits).
    Catches: `logits.float()` dropped from the classifier's cross-entropy."""
    model = tiny(causal=False, n_classes=3, pooling="mean").to(torch.bfloat16)
    x, y = ids(B=4), torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        logits, loss = model(x, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    expected = torch.nn.functional.cross_entropy(logits.double(), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_position_encoding_bidirectional_encoder_is_permutation_invariant():
    model = tiny(pos_encoding="none", causal=False, n_classes=4, pooling="mean").eval()
    x = ids(B=2)
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(3))
    a, _ = model(x)
    b, _ = model(x[:, perm])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # ...while any position encoding breaks the symmetry: word order becomes visible
    learned = tiny(pos_encoding="learned", causal=False, n_classes=4, pooling="mean").eval()
    with torch.no_grad():
        learned.transformer.wpe.weight.normal_(0, 1.0)
    assert not torch.allclose(learned(x)[0], learned(x[:, perm])[0], atol=1e-4)


# ---- learning --------------------------------------------------------------------------------

@pytest.mark.parametrize("attn", ATTENTIONS)
def test_dropout_acts_in_training_only(attn):
    """dropout=0.5 (embeddings, attention weights, residual branches): in eval mode the model equals its
    dropout-free twin; in training mode it does not, and generate() hands the model back in training
    mode. Bugs caught: attention dropout left on at eval, dropout never applied, eval() not undone."""
    x = ids(B=2)
    model, twin = tiny(attention=attn, dropout=0.5), tiny(attention=attn)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], twin.eval()(x)[0], atol=0, rtol=0)
        model.train()
        assert not torch.allclose(model(x)[0], twin(x)[0], atol=1e-3)
        for part in ("embeddings", "attention"):  # each kind of dropout on its own
            model.eval()
            if part == "embeddings":
                model.transformer.drop.train()
            else:
                for block in model.transformer.h:
                    block.attn.train()
                    block.attn.resid_dropout.eval()
            assert not torch.allclose(model(x)[0], twin(x)[0], atol=1e-4), part
        model.train()
        model.generate(x[:, :3], 2)
        assert model.training


@pytest.mark.parametrize("pe", ["rope", "learned"])
def test_generate_from_a_model_in_training_mode_decodes_without_dropout(pe):
    """A sample taken mid-training (the model in train mode) decodes as the model in eval mode
    does: greedy tokens equal the eval-mode model's, with every dropout site and stochastic depth
    set high, and the model is handed back in train mode. Bug caught: generate() not switching to
    eval mode, so a greedy sample is random and differs from the same weights' eval-mode sample."""
    model = tiny(pos_encoding=pe, dropout=0.5, word_dropout=0.5, out_dropout=0.5, layer_drop=0.5)
    prompt = ids(B=2, L=5)
    want = model.eval().generate(prompt, 12, temperature=0)
    model.train()
    for _ in range(2):
        assert torch.equal(model.generate(prompt, 12, temperature=0), want)
        assert model.training


def test_tiny_model_overfits_one_batch():
    model = tiny()
    x = ids(B=4)
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1


@pytest.mark.parametrize("kw", [dict(), dict(pos_encoding="learned", tie_weights=False),
                                dict(n_classes=3, causal=False, pooling="first"), dict(norm="post")])
def test_every_parameter_receives_a_gradient(kw):
    model = tiny(**kw)
    x = ids(B=2)
    targets = torch.tensor([0, 2]) if kw.get("n_classes") else x
    _, loss = model(x, targets)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_ignores_targets_of_minus_one():
    model = tiny().eval()
    x = ids(B=2)
    y = x.clone()
    y[:, 5:] = -1
    logits, loss = model(x, y)
    expected = torch.nn.functional.cross_entropy(logits[:, :5].reshape(-1, V), x[:, :5].reshape(-1))
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_linear_cross_entropy_matches_f_cross_entropy(eps):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(40, 24, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, 24, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, V, (40,), generator=g)
    targets[::7] = -1  # ignored positions count neither in the loss nor in the mean
    ref = torch.nn.functional.cross_entropy(h @ w.t(), targets, ignore_index=-1, label_smoothing=eps)
    ref_grads = torch.autograd.grad(ref * 3.0, (h, w))
    loss = LinearCrossEntropy.apply(h, w, targets, eps)
    grads = torch.autograd.grad(loss * 3.0, (h, w))  # the incoming gradient scales both
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("aligned", [False, True])
def test_fused_head_under_fp16_autocast_keeps_small_gradients(aligned):
    """fp16 + GradScaler: the loss is scaled by 2^16 before backward. Bug caught: the logit gradient
    divided by n (16k tokens) and cast to fp16 inside the forward pass, where most entries flush
    to zero (2% gradient error against 0.03% for the plain path). aligned: every token shares a
    target and h points one way, so the unnormalised grad^T @ h would overflow fp16 if h were not
    scaled down first."""
    g = torch.Generator().manual_seed(0)
    N, C, Vb = 16384, 16, 1024
    h = torch.randn(N, C, generator=g, dtype=torch.float64)
    w = 0.1 * torch.randn(Vb, C, generator=g, dtype=torch.float64)
    targets = torch.randint(0, Vb, (N,), generator=g)
    if aligned:
        h, targets = 8 * h.abs(), torch.zeros_like(targets)

    def grads(loss_fn, dtype):
        hh, ww = h.to(dtype).detach().requires_grad_(), w.to(dtype).detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.float16, enabled=dtype == torch.float32):
            loss = loss_fn(hh, ww)
        (loss * 2.0 ** 16).backward()  # what GradScaler's initial scale does
        return hh.grad.double() / 2 ** 16, ww.grad.double() / 2 ** 16

    ref = grads(lambda a, b: torch.nn.functional.cross_entropy(a @ b.t(), targets), torch.float64)
    plain = grads(lambda a, b: torch.nn.functional.cross_entropy((a @ b.t()).float(), targets), torch.float32)
    fused = grads(lambda a, b: LinearCrossEntropy.apply(a, b, targets, 0.0), torch.float32)
    for p, f, r in zip(plain, fused, ref):
        plain_err, fused_err = ((p - r).norm() / r.norm()).item(), ((f - r).norm() / r.norm()).item()
        if aligned:  # the plain path overflows here too, at this scale: GradScaler would halve it
            assert fused_err < 1e-3, fused_err
        else:
            assert plain_err < 1e-3 and fused_err < 1.5 * plain_err, (plain_err, fused_err)


def test_fused_head_scales_h_by_a_power_of_two_so_fp16_loses_nothing():
    """In fp16, the fused head scales h down before grad^T @ h when n * max|h| passes 2^15 (here
    two tokens with |h| of 17,000 to 30,000: by 1/2) and back up after. A power of two is exact,
    so the weight gradient equals the unscaled product bit for bit (a sum of two terms, so an error
    in h shows in the fp16 result). Bug caught: a scale that is not a power of two, which rounds
    every element of h once more."""
    g = torch.Generator().manual_seed(0)
    N, C, Vb = 2, 8, 64
    h = torch.randn(N, C, generator=g).sign() * (17000 + 13000 * torch.rand(N, C, generator=g))
    h, w = h.half(), (1e-4 * torch.randn(Vb, C, generator=g)).half()
    targets = torch.tensor([3, 5])
    assert 2 ** 15 < N * h.abs().amax().item() < 2 ** 16  # so the scale is 1/2
    ww = w.clone().requires_grad_()
    LinearCrossEntropy.apply(h, ww, targets, 0.0).backward()
    _, grad, n = model_module.logit_grads(h @ w.t(), targets, 0.0, Vb, torch.float16)
    assert torch.equal(ww.grad, ((grad.t() @ h).float() / n).half())


def test_label_smoothing_spreads_over_the_real_vocabulary_only():
    """A vocabulary padded from 32 to 37 ids. Bug caught: label smoothing (and softmax) putting
    probability on the padding ids, in the fused head or in the plain path."""
    eps, real = 0.1, 32
    x = ids(B=2) % real
    y = torch.roll(x, -1, dims=1)
    y[0, -3:] = -1
    results = []
    for return_logits in (True, False):
        model = tiny(real_vocab_size=real, label_smoothing=eps)
        logits, loss = model(x, y, return_logits=return_logits)
        loss.backward()
        results.append((loss.detach(), model.lm_head.weight.grad))
    with torch.no_grad():  # by hand: softmax over the 32 real ids, eps spread evenly over them
        logits, _ = model(x)
        h = model.encode(x)
        logp = torch.log_softmax((h @ model.lm_head.weight.t())[..., :real].double(), dim=-1)
        keep = y >= 0
        nll = -logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]
        expected = ((1 - eps) * nll - eps * logp.mean(-1))[keep].mean()
    assert (logits[..., real:] == float("-inf")).all() and torch.isfinite(logits[..., :real]).all()
    for loss, grad in results:
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert not grad[real:].any()  # the padding rows are left alone (the embedding never sees them)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-6, rtol=1e-4)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(40, 24, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, 24, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, real, (40,), generator=g)
    ref = torch.nn.functional.cross_entropy((h @ w.t())[:, :real], targets, label_smoothing=eps)
    loss = LinearCrossEntropy.apply(h, w, targets, eps, False, real)
    torch.testing.assert_close(loss, ref)
    for a, b in zip(torch.autograd.grad(loss, (h, w)), torch.autograd.grad(ref, (h, w))):
        torch.testing.assert_close(a, b)


def test_fused_linear_cross_entropy_of_only_ignored_targets_is_zero():
    h = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(V, 8, requires_grad=True)
    loss = LinearCrossEntropy.apply(h, w, torch.full((4,), -1), 0.0)
    loss.backward()
    assert loss.item() == 0.0 and not h.grad.any() and not w.grad.any()


def test_fp8_head_is_close_to_exact():
    """FP8 operands (3 mantissa bits for h and weight, 2 for the logit gradient) with fp32
    accumulation: loss within 1%, gradients pointing the same way to within a few percent."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(256, 64, generator=g, dtype=torch.float64, requires_grad=True)
    w = (0.2 * torch.randn(96, 64, generator=g, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 96, (256,), generator=g)
    targets[::5] = -1
    ref = torch.nn.functional.cross_entropy(h @ w.t(), targets, ignore_index=-1)
    ref_grads = torch.autograd.grad(ref, (h, w))
    loss = LinearCrossEntropy.apply(h.float(), w.float(), targets, 0.0, True)
    grads = torch.autograd.grad(loss, (h, w))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)
    for a, b in zip(grads, ref_grads):
        assert torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten(), dim=0) > 0.99
        assert ((a - b).norm() / b.norm()).item() < 0.1
    assert not grads[0][::5].any()  # ignored positions get no gradient


def test_fp8_head_trains_and_refuses_bad_shapes():
    model = tiny(vocab_size=48, fp8_head=True)
    x = torch.randint(0, 48, (4, T), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, y, return_logits=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    with pytest.raises(ValueError, match=r"tokens in a batch \(15\) and the vocabulary \(48\) to be multiples of 16"):
        model(x[:1, :15], y[:1, :15], return_logits=False)
    with pytest.raises(ValueError, match=r"vocabulary \(37\)"):
        tiny(fp8_head=True)(x[:, :4] % V, y[:, :4] % V, return_logits=False)
    with pytest.raises(ValueError, match="fp8_head=True needs a language model"):
        tiny(n_classes=3, fp8_head=True)


@pytest.mark.parametrize("kw", [dict(), dict(tie_weights=False, label_smoothing=0.1)])
def test_training_loss_without_logits_equals_the_plain_path(kw):
    """model(x, y, return_logits=False) takes the fused head: same loss, same gradients, no logits."""
    x = ids(B=2)
    y = torch.roll(x, -1, dims=1)
    y[0, -3:] = -1
    results = []
    for return_logits in (True, False):
        model = tiny(**kw)
        logits, loss = model(x, y, return_logits=return_logits)
        loss.backward()
        assert (logits is None) == (not return_logits)
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-4, msg=name)
    with torch.no_grad():  # no gradients: the plain head, the logits dropped
        logits, loss = model(x, y, return_logits=False)
    assert logits is None
    torch.testing.assert_close(loss, loss_a)


def test_masked_lm_training_loss_scores_every_masked_target_id_zero_included():
    """A masked LM's training loss (the fused head over the scored positions only) equals the
    cross-entropy over all positions with -1 ignored, worked out in float64 from the logits, for
    targets that include id 0. Catches: the positions kept for the head selected by
    `targets > 0` instead of `targets >= 0`, which silently leaves out every target 0."""
    model = tiny(causal=False, mlm=True)
    x = ids(B=2)
    y = torch.full_like(x, -1)
    y[:, ::3] = x[:, ::3]
    y[0, 1] = y[1, 4] = y[1, 8] = 0
    _, loss = model(x, y, return_logits=False)
    with torch.no_grad():
        logits, _ = model(x)
    expected = torch.nn.functional.cross_entropy(logits.double().reshape(-1, V), y.reshape(-1),
                                                 ignore_index=-1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fused_head_under_bf16_autocast_follows_the_plain_path():
    x = ids(B=2)
    y = torch.roll(x, -1, dims=1)
    losses, grads = [], []
    for return_logits in (True, False):
        model = tiny()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x, y, return_logits=return_logits)
        loss.backward()
        losses.append(loss.item())
        grads.append(model.transformer.wte.weight.grad)
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    torch.testing.assert_close(grads[1], grads[0], atol=2e-4, rtol=2e-2)


def test_gpt2_residual_projection_init_is_scaled():
    model = Transformer(TransformerConfig(vocab_size=V, block_size=T, n_layer=8, n_head=4, n_embd=256))
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_init_scales_both_residual_projections_and_draws_embeddings_at_0_02():
    """GPT-2's init (Radford et al. 2019, 2.3): N(0, 0.02) for every matrix and embedding table
    (learned positions and an untied token table included), N(0, 0.02 / sqrt(2 n_layer)) for the
    attention's output projection as well as the MLP's. Catches: the scaled init applied to the
    MLP's c_proj only, and nn.Embedding left at PyTorch's N(0, 1)."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=V, block_size=64, n_layer=8, n_head=4,
                                          n_embd=256, pos_encoding="learned", tie_weights=False))
    for block in model.transformer.h[::7]:
        assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for table in (model.transformer.wte, model.transformer.wpe, model.lm_head):
        assert table.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_num_params_counts_tied_weights_once():
    model = tiny(pos_encoding="learned")
    C = 32
    per_block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    expected = V * C + T * C + 2 * per_block + 2 * C
    assert model.num_params() == expected
    assert model.num_params(exclude_embeddings=True) == expected - T * C
    assert "2 layers x 4 heads x 32 wide" in repr(model)


def test_num_params_of_a_classifier_and_flops_per_token():
    """A classifier has no LM head, so its token table is an embedding only and leaves the count
    without embeddings (tie_weights=True, the default, ties nothing there). FLOPs per token are
    6 N + 12 L T C (Kaplan et al. 2020; PaLM appendix B). Catches: the token table kept in a
    classifier's count because tie_weights is set, and the attention term's 12 halved."""
    C = 32
    per_block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    body = 2 * per_block + 2 * C
    model = tiny(n_classes=3, causal=False)
    assert model.num_params() == V * C + body + 3 * C + 3
    assert model.num_params(exclude_embeddings=True) == body + 3 * C + 3
    lm = tiny()
    assert lm.flops_per_token(T) == 6 * (V * C + body) + 12 * 2 * T * C


# ---- generation --------------------------------------------------------------------------------

@pytest.mark.parametrize("pe", POS_ENCODINGS)
@pytest.mark.parametrize("attn", ATTENTIONS)
def test_kv_cache_logits_equal_a_full_forward_at_every_step(pe, attn, monkeypatch):
    """The logits generate() samples from, at each of 2 * block_size steps, against a full forward over
    what the model is defined to see (the whole text for relative encodings: a sliding window; the
    last block_size tokens, from position 0, for absolute ones). An unmodified random model, and
    logits compared, not greedy tokens. Bugs caught: cached keys or positions off by one, a ring
    buffer slot overwritten early, RoPE angles or ALiBi distances wrong past block_size."""
    model = tiny(pos_encoding=pe, attention=attn).eval()
    seen, g = [], torch.Generator().manual_seed(5)

    def record(logits, *args):  # stands in for sampling: keeps the logits, draws any token
        seen.append(logits.clone())
        return torch.randint(0, V, (logits.size(0), 1), generator=g)

    monkeypatch.setattr(model_module, "sample_next", record)
    prompt = ids(B=2, L=5)
    out = model.generate(prompt, 2 * T, temperature=1.0)
    assert len(seen) == 2 * T and out.shape == (2, 5 + 2 * T)
    with torch.no_grad():
        for i, logits in enumerate(seen):
            seq = out[:, :5 + i]
            window = seq if pe in ("rope", "alibi", "none") else seq[:, -T:]
            torch.testing.assert_close(logits, model(window)[0][:, -1], atol=1e-5, rtol=1e-5, msg=f"step {i}")


def test_a_decode_step_with_sdpa_attends_through_sdpa(monkeypatch):
    """With attention='sdpa' the prompt and every one-token decode step go through SDPA, which
    decodes faster than the written-out product on the GPU (GPT-2 shape: 1,994 against 1,830 tokens/s
    at batch 1 compiled, 1,500 against 1,179 recorded; results/speed-2026-12-01e/generate_gpt2_*.json).
    Catches: the decode step sent to manual_attention whatever `attention` says."""
    calls = []
    sdpa = model_module.F.scaled_dot_product_attention
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention",
                        lambda q, *a, **k: calls.append(("sdpa", q.size(-2))) or sdpa(q, *a, **k))
    manual = model_module.manual_attention
    monkeypatch.setattr(model_module, "manual_attention",
                        lambda q, *a, **k: calls.append(("manual", q.size(-2))) or manual(q, *a, **k))
    model = tiny(attention="sdpa").eval()
    model.generate(ids(B=1, L=5), 3, temperature=0)
    layers = model.config.n_layer
    assert calls == [("sdpa", 5)] * layers + [("sdpa", 1)] * (2 * layers), calls


def test_kv_cache_places_tokens_in_a_ring_buffer():
    """KVCache owns its positions: advance() numbers the new tokens and wraps their slots, update()
    writes keys and values there; place() (a recorded decode step's) gives slots without counting,
    count() counts. Bugs caught: a slot off by one, the count not advanced, update writing the
    previous step's slots, place() counting (a graph's warm-up would then skip positions)."""
    cache = model_module.KVCache(n_layer=1, size=4)
    assert cache.advance(3, "cpu").tolist() == [0, 1, 2] and cache.pos.tolist() == [0, 1, 2, -1]
    k = torch.arange(3.0).view(1, 1, 3, 1)  # (B, nh, T, hs): key t holds t
    cache.update(0, k, -k)
    assert cache.advance(2, "cpu").tolist() == [3, 4] and cache.pos.tolist() == [4, 1, 2, 3]
    keys, values = cache.update(0, torch.tensor([3.0, 4.0]).view(1, 1, 2, 1), torch.zeros(1, 1, 2, 1))
    assert keys.flatten().tolist() == [4, 1, 2, 3] and values.flatten().tolist() == [0, -1, -2, 0]
    assert cache.length == 5
    assert cache.place(torch.tensor([5])).tolist() == [5] and cache.slots.tolist() == [1]
    assert cache.length == 5 and cache.pos.tolist() == [4, 5, 2, 3]
    cache.count(1)
    assert cache.advance(1, "cpu").tolist() == [6] and cache.slots.tolist() == [2] and cache.length == 7


def test_generation_is_reproducible_with_a_generator_and_greedy_ignores_it():
    model = tiny().eval()
    prompt = ids(B=1, L=3)
    run = lambda seed, **kw: model.generate(prompt, 20, generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(run(1, top_k=5), run(1, top_k=5))
    assert not torch.equal(run(1), run(2))
    assert torch.equal(run(1, temperature=0), run(2, temperature=0))


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = lambda **kw: {sample_next(logits, 1.0, generator=g, **{"top_k": None, "top_p": None, **kw}).item()
                          for _ in range(300)}
    assert draws(top_k=2) == {0, 1}
    assert draws(top_p=0.8) == {0, 1}        # 0.5 + 0.3 reaches 0.8
    assert draws(top_p=0.81) == {0, 1, 2}
    assert draws(top_p=0.1) == {0}           # the most likely token always stays
    assert sample_next(logits, 0, None, None, None).item() == 0


def test_top_k_of_all_but_one_token_still_drops_the_last():
    """top_k = V - 1 keeps all but the least likely token, top_k = V keeps all. Catches: the top-k
    filter skipped unless k is well below the vocabulary (`top_k < V` -> `top_k < V - 1`)."""
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    g = torch.Generator().manual_seed(0)
    draws = lambda k: {sample_next(logits, 1.0, k, None, g).item() for _ in range(300)}
    assert draws(3) == {0, 1, 2}
    assert draws(4) == {0, 1, 2, 3}


def test_top_p_stops_at_the_token_whose_mass_reaches_p_exactly():
    """Four equally likely tokens (probability 0.25 each, exact in binary) and top_p=0.5: the first
    two reach 0.5 exactly, so the smallest set reaching p has two tokens and only two distinct ids
    are ever drawn. Catches: `cumsum - probs >= top_p` -> `> top_p`, keeping a third token."""
    g = torch.Generator().manual_seed(0)
    drawn = {sample_next(torch.zeros(1, 4), 1.0, None, 0.5, g).item() for _ in range(300)}
    assert len(drawn) == 2


def test_nucleus_of_bf16_logits_is_chosen_in_fp32():
    """bf16 logits (what the head gives under autocast) are sampled in fp32: the tokens kept by
    top_p=0.8007 are the nucleus computed in float64 from the same logits (the first three: the
    mass before the third is 0.80055), not the one of bf16 probabilities (0.80078, which top_p
    rounded to bf16 also is: the first two). Catches: `logits.float()` dropped from sample_next,
    which rounds every probability, and top_p, to 8 significant bits."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).bfloat16()
    probs = torch.softmax(logits.double(), -1)[0]  # sorted already
    nucleus = {i for i in range(4) if probs[:i].sum() < 0.8007}
    assert nucleus == {0, 1, 2}
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, None, 0.8007, g).item() for _ in range(300)} == nucleus


def test_attention_maps_are_causal_distributions():
    model = tiny().eval()
    maps = model.attention_maps(ids(B=1))
    assert len(maps) == 2 and maps[0].shape == (1, 4, T, T)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(1, 4, T))
    assert maps[1].triu(1).abs().max() == 0


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,message", [
    (dict(n_embd=30, n_head=4), "n_embd=30 must be divisible by n_head=4"),
    (dict(pos_encoding="rotary"), "pos_encoding='rotary' is not one of"),
    (dict(norm="layer"), "norm='layer' is not one of"),
    (dict(attention="flash"), "attention='flash' is not one of"),
    (dict(n_embd=20, n_head=4, pos_encoding="rope"), "head dim n_embd/n_head=5 must be even"),
    (dict(block_size=0), "block_size=0 must be a positive integer"),
    (dict(dropout=1.5), "dropout=1.5"),
    (dict(n_classes=2, causal=True, pooling="first"), "pooling='first' with causal=True"),
    (dict(dropout=1.0), "dropout=1.0 must be in"),
    (dict(n_classes=1), "n_classes=1 must be 0 (language model) or >= 2"),
    (dict(mlm=True, causal=True), "mlm=True is a bidirectional language model"),
    (dict(vocab_size=64, real_vocab_size=65), "real_vocab_size=65 must be in 0..vocab_size=64"),
    (dict(vocab_size=64, real_vocab_size=-1), "real_vocab_size=-1 must be in 0..vocab_size=64"),
    (dict(vocab_size=64, real_vocab_size=40.0), "real_vocab_size=40.0 must be in 0..vocab_size=64"),
    (dict(label_smoothing=1.0), "label_smoothing=1.0 must be in"),
])
def test_bad_config_raises_clear_errors(kw, message):
    args = dict(vocab_size=V, block_size=T, n_layer=1, n_head=4, n_embd=32)
    args.update(kw)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TransformerConfig(**args)


def test_bad_config_lists_every_problem_at_once():
    with pytest.raises(ValueError) as info:
        TransformerConfig(vocab_size=-1, norm="x", dropout=2.0)
    text = str(info.value)
    assert "vocab_size=-1" in text and "norm='x'" in text and "dropout=2.0" in text


@pytest.mark.parametrize("pe", ["learned", "sinusoidal"])
def test_too_long_for_absolute_positions(pe):
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds block_size=16"):
        tiny(pos_encoding=pe)(ids(L=T + 1))


@pytest.mark.parametrize("pe", ["rope", "alibi", "none"])
def test_relative_encodings_run_past_block_size_with_a_sliding_window(pe):
    model = tiny(pos_encoding=pe).eval()
    x = ids(B=1, L=3 * T)
    logits, _ = model(x)
    assert logits.shape == (1, 3 * T, V)
    # each layer attends to the last T tokens only
    y = x.clone()
    # two layers reach back 2 * (T - 1) tokens from position 3T - 1, so positions 0..T are out of sight
    y[:, : T + 1] = (y[:, : T + 1] + 1) % V
    torch.testing.assert_close(model(y)[0][:, -1], logits[:, -1], atol=1e-5, rtol=0)
    y[:, T + 1] = (y[:, T + 1] + 1) % V  # ...and position T + 1 is just in sight
    assert not torch.allclose(model(y)[0][:, -1], logits[:, -1], atol=1e-5)


def test_token_ids_out_of_range():
    model = tiny()
    with pytest.raises(ValueError, match=r"token id 37 is out of range: vocab_size=37 allows 0..36"):
        model(torch.tensor([[1, 2, 37]]))
    with pytest.raises(ValueError, match=r"token id -1 is out of range"):
        model(torch.tensor([[-1, 2]]))


def test_generate_rejects_bad_sampling_arguments_and_classifiers():
    with pytest.raises(ValueError, match="top_p"):
        tiny().generate(ids(B=1, L=2), 3, top_p=0.0)
    with pytest.raises(ValueError, match="classifier"):
        tiny(n_classes=2, causal=False).generate(ids(B=1, L=2), 3)


@pytest.mark.parametrize("kw", [dict(temperature=-0.5), dict(top_k=0), dict(top_p=1.5)])
def test_generate_refuses_each_sampling_argument_past_its_bound(kw):
    """A negative temperature, top_k below 1 and top_p above 1 are each refused with the bounds
    named, before anything is sampled. Catches: the temperature check dropped (logits divided by
    a negative number: the least likely tokens win), top_k's bound moved (`< 1` -> `< 0`: top_k=0
    fails inside torch.topk instead)."""
    with pytest.raises(ValueError, match="need temperature >= 0, top_k >= 1, 0 < top_p <= 1"):
        tiny().generate(ids(B=1, L=2), 3, **kw)


# ---- GPT-2 weights -----------------------------------------------------------------------------

def random_gpt2(**config):
    """A Hugging Face GPT-2 of the tiny shape with random, non-trivial weights everywhere (biases
    and LayerNorms included), and its config."""
    transformers = pytest.importorskip("transformers",
                                       reason="test-only dependency (requirements-test.txt)")
    hf_config = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=32, n_layer=2,
                                        n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                        **config)
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(hf_config).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.2)
    return hf_config, reference


def assert_imports_as(path, reference, **overrides):
    ours = Transformer.from_pretrained(path, **overrides).eval()
    x = ids(B=2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], reference(x).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_gpt2_import_matches_hugging_face(tmp_path, fmt):
    hf_config, reference = random_gpt2()
    hf_config.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    if fmt == "bin":
        torch.save(state, tmp_path / "pytorch_model.bin")
    else:
        reference.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
    for attn in ATTENTIONS:
        assert_imports_as(tmp_path, reference, attention=attn)


def test_gpt2_import_follows_the_activation_epsilon_and_mlp_width_of_the_config(tmp_path):
    """A GPT-2 with activation 'gelu_pytorch_tanh', layer_norm_epsilon 0.1 and n_inner = 2 n_embd
    imports to the logits Hugging Face's model computes. Catches: 'gelu_pytorch_tanh' mapped to the
    exact GELU, layer_norm_epsilon ignored, n_inner ignored (mlp_ratio 4)."""
    _, reference = random_gpt2(activation_function="gelu_pytorch_tanh", layer_norm_epsilon=0.1,
                               n_inner=64)
    reference.save_pretrained(tmp_path)
    assert_imports_as(tmp_path, reference)


def test_gpt2_import_of_an_original_layout_checkpoint(tmp_path):
    """GPT-2 as OpenAI's weights were first converted: names without 'transformer.', each
    attention's causal-mask buffers (attn.bias, attn.masked_bias) stored with the weights, no
    lm_head.weight (the head is tied). Catches: a stored buffer taken for a weight (strict loading
    then fails on it), the head not filled from wte."""
    hf_config, reference = random_gpt2()
    hf_config.save_pretrained(tmp_path)
    state = {k.removeprefix("transformer."): v.contiguous()
             for k, v in reference.state_dict().items() if k != "lm_head.weight"}
    for i in range(hf_config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(T, T, dtype=torch.uint8).tril().view(1, 1, T, T)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert_imports_as(tmp_path, reference)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpt2_import_reads_half_precision_safetensors(tmp_path, dtype):
    """Weights stored as float16 or bfloat16 in model.safetensors load as the same numbers in
    float32: the logits are those of Hugging Face's model with its weights rounded alike.
    Catches: a dtype code read as the other type of its width ('F16' as bfloat16)."""
    save_file = pytest.importorskip("safetensors.torch").save_file
    hf_config, reference = random_gpt2()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.to(dtype))
    hf_config.save_pretrained(tmp_path)
    state = {k: v.to(dtype).contiguous() for k, v in reference.state_dict().items()
             if k != "lm_head.weight"}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert_imports_as(tmp_path, reference)


@pytest.mark.parametrize("option", [dict(scale_attn_weights=False),
                                    dict(scale_attn_by_inverse_layer_idx=True),
                                    dict(model_type="gpt_neo")])
def test_gpt2_import_refuses_other_attention_scalings(tmp_path, option):
    """A checkpoint whose attention is not scaled by 1/sqrt(d_k) alone, or that is no GPT-2,
    computes another function: it is refused before any weight is read. Catches:
    scale_attn_weights=False or scale_attn_by_inverse_layer_idx=True imported as plain GPT-2."""
    config = dict(model_type="gpt2", vocab_size=V, n_positions=T, n_embd=32, n_layer=2, n_head=4)
    (tmp_path / "config.json").write_text(json.dumps({**config, **option}))
    with pytest.raises(ValueError, match="only plain GPT-2 checkpoints are supported"):
        Transformer.from_pretrained(tmp_path)


def test_from_pretrained_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Transformer.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize("pe", ["learned", "rope"])
def test_generate_zero_and_one_new_tokens(pe):
    """Both generation paths give exactly max_new_tokens tokens at the edges. Bug caught: a loop
    that samples its first token before checking the count (0 asked, 1 given)."""
    model = tiny(pos_encoding=pe).eval()
    x = ids(B=2, L=3)
    assert torch.equal(model.generate(x, 0), x)
    one = model.generate(x, 1, temperature=0)
    assert one.shape == (2, 4) and torch.equal(one[:, 3:], model(x)[0][:, -1].argmax(-1, keepdim=True))


@pytest.mark.parametrize("pe", ["learned", "sinusoidal"])
def test_decoding_from_a_prompt_that_fills_the_block_builds_no_decode_step(pe, monkeypatch):
    """Absolute positions, a prompt of exactly block_size tokens: no step fits the cache, so every
    new token is a forward over the cropped text, and no decode step is built (on a GPU it would be
    recorded at position block_size, past the position table). Bug caught: the fit check reduced
    to `n > 1`."""
    model = tiny(pos_encoding=pe).eval()
    built, decoder = [], model._decoder
    monkeypatch.setattr(model, "_decoder", lambda *a: built.append(1) or decoder(*a))
    prompt = ids(B=2, L=T)
    out = model.generate(prompt, 3, temperature=0)
    assert not built
    with torch.no_grad():
        for i in range(3):
            assert torch.equal(out[:, T + i], model(out[:, i:T + i])[0][:, -1].argmax(-1))
    model.generate(prompt[:, :-2], 3, temperature=0)  # a prompt that leaves room: one is built
    assert built


def test_generate_never_samples_padding_ids():
    """A vocabulary padded for speed (real_vocab_size < vocab_size): generate() samples only real
    ids, as forward() gives padding ids no probability. Bug caught: generate() sampling from the
    head's raw logits over the whole padded vocabulary unless the caller passes vocab_limit."""
    torch.manual_seed(0)
    model = tiny(vocab_size=64, real_vocab_size=40).eval()
    with torch.no_grad():
        model.lm_head.weight[40:] += 5.0 * model.lm_head.weight[40:].sign()  # padding rows: loud
    out = model.generate(torch.zeros(4, 1, dtype=torch.long), 30, temperature=2.0,
                         generator=torch.Generator().manual_seed(0))
    assert out.max() < 40


def test_an_explicit_vocab_limit_below_the_real_vocabulary_wins():
    """generate(vocab_limit=10) on a model whose real vocabulary is 40 of 64 ids samples only ids
    below 10 (at temperature 2 a random model would reach the rest at once). Catches:
    real_vocab_size taking precedence over the caller's vocab_limit."""
    model = tiny(vocab_size=64, real_vocab_size=40).eval()
    out = model.generate(torch.zeros(4, 1, dtype=torch.long), 30, temperature=2.0, vocab_limit=10,
                         generator=torch.Generator().manual_seed(0))
    assert out.max() < 10


@pytest.mark.parametrize("pe", ["rope", "learned"])
def test_a_prompt_longer_than_block_size_is_cropped_to_its_last_block(pe, monkeypatch):
    """generate() on a prompt of 2 block_size + 3 tokens samples from the same logits, step by
    step, as on the prompt's last block_size tokens, and hands an eval model back in eval mode.
    Catches: the whole prompt prefilled (RoPE: a cache of block_size slots then holds a context no
    forward computes; learned positions: an error), and generate() leaving the model in training
    mode (`self.train(was_training)` -> `self.train(True)`)."""
    model = tiny(pos_encoding=pe).eval()
    seen = []

    def record(logits, *args):  # stands in for sampling: keeps the logits, picks greedily
        seen.append(logits.clone())
        return logits.argmax(-1, keepdim=True)

    monkeypatch.setattr(model_module, "sample_next", record)
    prompt = ids(B=2, L=2 * T + 3)
    long, short = model.generate(prompt, 4), model.generate(prompt[:, -T:], 4)
    assert not model.training
    torch.testing.assert_close(torch.stack(seen[:4]), torch.stack(seen[4:]), atol=0, rtol=0)
    assert torch.equal(long[:, -4:], short[:, -4:]) and torch.equal(long[:, :-4], prompt)


@pytest.mark.parametrize("pe", ["learned", "rope"])
def test_first_token_comes_before_the_decode_step_is_built(pe, monkeypatch):
    """The first token needs only the prefill, so it is yielded before the decode step is built
    (on CUDA: recorded, maybe compiled, seconds). Bug caught: a streamed sample that shows nothing
    until the graph is recorded."""
    model = tiny(pos_encoding=pe).eval()
    built, real = [], model._decoder
    monkeypatch.setattr(model, "_decoder", lambda *a, **kw: built.append(1) or real(*a, **kw))
    stream = model.generate_stream(ids(B=1, L=3), 3)
    next(stream)
    assert built == []
    next(stream)
    assert built == [1]


# ---- checks that single-line slips elsewhere were found to pass -------------------------------------

def test_post_ln_blocks_end_in_a_layer_norm():
    """post-LN: x = ln_2(x + mlp(x)), so with the norms at their initial gain 1 and bias 0 every
    position of the output has mean 0 and standard deviation 1. Bug caught: the norm moved inside
    the residual branch (x + ln_2(mlp(x))), which leaves the shapes and gradients intact."""
    torch.manual_seed(0)
    m = Transformer(TransformerConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32,
                                      norm="post")).eval()
    with torch.no_grad():
        h = m.transformer.h[-1](torch.randn(2, 16, 32), m.attention_inputs(torch.arange(16)))
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 16), atol=1e-4, rtol=0)
    torch.testing.assert_close(h.std(-1, unbiased=False), torch.ones(2, 16), atol=1e-3, rtol=0)


def test_sampling_temperature_divides_the_logits():
    """Two tokens with logits 0 and ln 3 at temperature 2: p(second) = sqrt(3) / (1 + sqrt(3)) =
    0.634 (within 5 sigma over 20,000 draws). Bug caught: logits * temperature (p = 0.9)."""
    logits = torch.tensor([[0.0, math.log(3.0)]]).expand(20000, 2)
    draws = model_module.sample_next(logits, 2.0, None, None, torch.Generator().manual_seed(0))
    p = math.sqrt(3) / (1 + math.sqrt(3))
    assert abs(draws.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / 20000)


def test_a_window_shorter_than_the_input_slides():
    """forward(window=4) on 16 tokens: the last position sees only the last 4, as a forward over
    them does (RoPE: relative). Bug caught: the kernels' plain causal path taken whenever the input
    fits block_size, ignoring a shorter window."""
    torch.manual_seed(0)
    m = Transformer(TransformerConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    x = torch.randint(0, 65, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(m(x, window=4)[0][0, -1], m(x[:, -4:])[0][0, -1], atol=1e-5, rtol=1e-5)


def test_weight_decay_only_on_matrices():
    """Biases and LayerNorm gains sit in a group without weight decay, every matrix in one with it,
    for either optimizer. Bug caught: the 1-D group given cfg.weight_decay."""
    import optimizers
    from configurator import TrainConfig
    m = Transformer(TransformerConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=True))
    for name in ("adamw", "muon"):
        opts = optimizers.make_optimizers(m, TrainConfig(weight_decay=0.1, optimizer=name), torch.device("cpu"))
        decay = {p: g["weight_decay"] for o in opts for g in o.param_groups for p in g["params"]}
        assert len(decay) == len(list(m.parameters()))
        for p in m.parameters():
            assert decay[p] == (0.1 if p.dim() >= 2 else 0.0), (name, tuple(p.shape))


def test_a_compiled_one_token_linear_is_products_and_a_sum():
    """model.Linear traced by torch.compile at one row (batch 1, one token) without gradients (a
    compiled decode step) is written as products and a float32 sum (which Inductor fuses into one
    reduction kernel), and equals nn.Linear, in nn.Linear's output dtype (autocast's under
    autocast); with several rows (tokens or batch), or with gradients (training), it stays a
    linear. Catches: the decode path not taken (or taken in training, where its backward would store
    every product, or at batch sizes it was not measured at), a dropped bias, an output left in
    float32 for a bf16 layer or under bf16 autocast (a float32 key then cannot enter a bf16 cache)."""
    torch.manual_seed(0)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def ops(gm):
        return {str(n.target) for n in gm.graph.nodes if n.op in ("call_function", "call_method")}

    def compiled(layer):
        torch._dynamo.reset()
        return torch.compile(layer, backend=capture, dynamic=False)

    def is_sum(gm):
        return "sum" in ops(gm) and not any("linear" in op for op in ops(gm))

    for dtype in (torch.float32, torch.bfloat16):
        layer = model_module.Linear(16, 12).to(dtype)
        for shape in ((1, 1, 16), (1, 16)):  # a block's (B, T, C) and the output layer's (B, C)
            x = torch.randn(shape, dtype=dtype)
            with torch.no_grad():
                y = compiled(layer)(x)
                expected = torch.nn.functional.linear(x.float(), layer.weight.float(),
                                                      layer.bias.float()).to(dtype)
            assert y.dtype == dtype
            torch.testing.assert_close(y, expected)
            assert is_sum(graphs[-1]), shape
    layer = model_module.Linear(16, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = compiled(layer)(torch.randn(1, 1, 16))
    assert is_sum(graphs[-1]) and y.dtype == torch.bfloat16
    with torch.no_grad():
        for shape in ((1, 4, 16), (3, 1, 16), (3, 16)):  # four tokens; batch 3
            compiled(layer)(torch.randn(shape))
            assert any("linear" in op for op in ops(graphs[-1])) and "sum" not in ops(graphs[-1])
    compiled(layer)(torch.randn(1, 1, 16))  # one row, with gradients
    assert any("linear" in op for op in ops(graphs[-1])) and "sum" not in ops(graphs[-1])
    torch._dynamo.reset()


def test_logit_grads_traces_as_one_graph_and_matches_eager():
    """What compile_scope='block' compiles (LogitGrads), traced whole by torch.compile (dynamo and
    AOTAutograd, no kernels on a CPU): bf16 logits of a padded vocabulary, label smoothing and
    ignored targets give the eager loss, gradient and count. Catches: a graph break or an op the
    tracer rejects in logit_grads, a traced graph that computes something else, or a wrong
    gradient (against autograd through F.cross_entropy over the real ids, in float64)."""
    from model import LogitGrads
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(24, 40, generator=g)).bfloat16()
    targets = torch.randint(0, 33, (24,), generator=g)
    targets[::5] = -1
    eager = LogitGrads()(logits, targets, 0.1, 33, torch.bfloat16)
    traced = torch.compile(LogitGrads(), backend="aot_eager", fullgraph=True)(
        logits, targets, 0.1, 33, torch.bfloat16)
    for a, b in zip(traced, eager):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    loss, grad, n = eager
    assert n.item() == 19 and grad.dtype == torch.bfloat16
    assert not grad[::5].any() and not grad[:, 33:].any()  # ignored rows, padding ids
    real = logits.double()[:, :33].requires_grad_()
    ref = torch.nn.functional.cross_entropy(real, targets, ignore_index=-1, label_smoothing=0.1)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref.detach())
    # n times the gradient, to bf16 rounding (values within [-1, 1]: 2^-8)
    torch.testing.assert_close(grad[:, :33].double(), 19 * real.grad, atol=2 ** -8, rtol=0)


def test_the_training_loss_goes_through_the_models_logit_grads():
    """Training's fused loss calls the model's own LogitGrads, the module compile_scope='block'
    compiles. Catches: LinearCrossEntropy called without it (the compiled copy never used)."""
    model = tiny()
    calls = []
    model.logit_grads.register_forward_hook(lambda *args: calls.append(1))
    x = ids(B=2)
    _, loss = model(x, torch.roll(x, -1, dims=1), return_logits=False)
    loss.backward()
    assert calls == [1]


def test_logit_grads_never_changes_its_input_and_traces_for_any_vocabulary():
    """float32 logits of a padded vocabulary must be copied before the padding ids are set to
    -inf (the caller's tensor is left alone), and one compiled LogitGrads called with three
    vocabulary sizes (the third makes torch.compile trace the size as a symbol) still traces as
    one graph. Catches: the padding written into the caller's logits, or a copy decided by a
    symbolic bool that tracing rejects (Tensor.to(copy=SymBool))."""
    from model import LogitGrads
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(24, 40, generator=g)
    targets = torch.randint(0, 30, (24,), generator=g)
    kept = logits.clone()
    compiled = torch.compile(LogitGrads(), backend="aot_eager", fullgraph=True)
    for vocab in (33, 40, 36):
        loss, grad, n = compiled(logits, targets, 0.0, vocab, torch.float32)
        eager = LogitGrads()(logits, targets, 0.0, vocab, torch.float32)
        assert torch.equal(logits, kept)
        torch.testing.assert_close(loss, eager[0], atol=0, rtol=0)
        torch.testing.assert_close(grad, eager[1], atol=0, rtol=0)
        assert not grad[:, vocab:].any()


# ---- survivors of a hand-written mutation sweep (results/tests/mutation-2026-12-07e.json) -------

def test_sinusoidal_table_of_an_odd_width():
    """An odd width d has (d + 1) / 2 sine columns and (d - 1) / 2 cosine ones, each the paper's
    formula, and a model of that width (n_embd=15, 3 heads) runs. Catches: the cosines not cut to
    d // 2 columns, a shape error for every odd n_embd."""
    d = 5
    table = sinusoidal_table(6, d)
    pos = torch.arange(6.0, dtype=torch.float64)
    for i in range(d):
        angle = pos / 10000 ** (2 * (i // 2) / d)
        expected = torch.sin(angle) if i % 2 == 0 else torch.cos(angle)
        torch.testing.assert_close(table[:, i], expected.float())
    logits, _ = tiny(pos_encoding="sinusoidal", n_head=3, n_embd=15)(ids(B=1))
    assert logits.shape == (1, T, V)


def test_sdpa_gets_its_bias_in_the_dtype_of_the_queries(monkeypatch):
    """The additive bias (ALiBi, padding, a cache), built in float32, reaches SDPA in q's dtype
    like q, k and v. Catches: the float32 bias passed on as it is under bf16 weights, which SDPA
    then adds at another precision (on a CPU, outputs up to 0.008 apart for a random bias)."""
    sdpa, seen = model_module.F.scaled_dot_product_attention, []

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.dtype, None if attn_mask is None else attn_mask.dtype))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", spy)
    model = tiny(pos_encoding="alibi", attention="sdpa").to(torch.bfloat16).eval()
    with torch.no_grad():
        model(ids(B=1))
    assert seen == [(torch.bfloat16, torch.bfloat16)] * 2


def test_top_k_is_taken_row_by_row():
    """Each row of a batch keeps its own k most likely tokens. Catches: the k-th largest logit of
    one row used as every row's threshold (here the last row's keeps all of the first row)."""
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.05, 0.05, 0.1, 0.8]]))
    g = torch.Generator().manual_seed(0)
    drawn = [set(), set()]
    for _ in range(300):
        for row, token in zip(drawn, sample_next(logits, 1.0, 2, None, g).flatten().tolist()):
            row.add(token)
    assert drawn == [{0, 1}, {2, 3}]


def test_top_p_of_unsorted_logits_draws_token_ids_not_ranks():
    """The nucleus is found in sorted order but sampled by token id: logits not already sorted
    (as a model's never are) keep their most likely ids. Catches: the filtered logits left in
    sorted order, so the draw returns a rank (here 0 or 1) instead of an id (2 or 3)."""
    logits = torch.log(torch.tensor([[0.05, 0.15, 0.5, 0.3]]))
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, None, 0.8, g).item() for _ in range(300)} == {2, 3}


def test_top_k_and_top_p_together_apply_both():
    """top_k=3 then top_p=0.5: of the three kept tokens (0.5, 0.3, 0.15 before renormalising) the
    first alone holds more than half, so only token 0 is drawn. Catches: top_p skipped whenever
    top_k is given (tokens 0, 1 and 2 drawn)."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, 3, 0.5, g).item() for _ in range(300)} == {0}


def test_from_pretrained_overrides_win_over_the_imported_settings(tmp_path):
    """from_pretrained(path, dropout=0.1) fine-tunes with dropout 0.1: an override replaces what
    the import would set (dropout 0.0 there). Catches: the imported settings applied over the
    overrides, which then silently do nothing for every field the import sets."""
    _, reference = random_gpt2()
    reference.save_pretrained(tmp_path)
    model = Transformer.from_pretrained(tmp_path, dropout=0.1, attention="manual")
    assert (model.config.dropout, model.config.attention) == (0.1, "manual")
    assert model.transformer.drop.p == 0.1


def test_a_loss_without_gradients_is_taken_from_the_logits(monkeypatch):
    """return_logits=False with gradients off (an evaluation) scores the logits as the plain path
    does; the fused head would also work out its two gradient products (N x C and V x C), unread.
    Catches: LinearCrossEntropy taken whether or not gradients are on."""
    model = tiny().eval()
    x, y = ids(B=2), ids(B=2, seed=2)
    with torch.no_grad():
        _, expected = model(x, y)
        monkeypatch.setattr(model_module.LinearCrossEntropy, "apply",
                            lambda *a: pytest.fail("fused head under no_grad"))
        _, loss = model(x, y, return_logits=False)
    torch.testing.assert_close(loss, expected)
