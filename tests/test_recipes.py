"""The small-corpus recipe features: sliding-window LM evaluation (data.lm_eval_batches with a
stride, TrainConfig.eval_stride), the dropout sites of model.py (attention, residual, embedding,
output, word type), eval_only's metrics_SPLIT.json, and ablate.py's test-split scoring of the
variant chosen on val. Each test's docstring names a one-line bug it catches."""
import json
import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ablate
import evaluation
import train
from data import Data, lm_eval_batches
from model import Transformer, TransformerConfig
from test_train import run, tiny_args

BLOCK = 8


# ---- data.lm_eval_batches ------------------------------------------------------------------------

def scored_contexts(n, batch_size, block_size, stride):
    """Run lm_eval_batches over data whose token ids name their positions (data[i] = 100 + i) and
    return {target index t: tokens of context it was scored with}, checking along the way that each
    scored y is the token after its x, that the row up to it is the contiguous text before it, and
    that no target is scored twice."""
    data = torch.arange(100, 100 + n)
    contexts = {}
    for x, y in lm_eval_batches(data, batch_size, block_size, stride):
        assert x.shape == y.shape and x.shape[0] <= batch_size and x.shape[1] == block_size
        for r, c in (y >= 0).nonzero().tolist():
            t = int(y[r, c]) - 100
            assert t not in contexts, f"target {t} scored twice"
            assert int(x[r, c]) == 100 + t - 1  # y is the next token of x
            assert torch.equal(x[r, :c + 1], data[t - c - 1:t])  # the window is the text just before t
            contexts[t] = c + 1
    return contexts


def n_windows(n, batch_size, block_size, stride):
    return sum(len(x) for x, _ in lm_eval_batches(torch.arange(n), batch_size, block_size, stride))


LENGTHS = [2, 5, BLOCK, BLOCK + 1, BLOCK + 2, 2 * BLOCK + 1, 3 * BLOCK, 3 * BLOCK + 2, 47]


@pytest.mark.parametrize("n", LENGTHS)
def test_stride_zero_keeps_separate_windows(n):
    """Target t sits at column (t-1) % block_size of a window starting at a multiple of block_size.
    Catches: the stride=0 branch dropped (`if not stride:` -> `if False:`) or shifted by one
    (`data[s + 1:e + 1]` -> `data[s:e]`)."""
    contexts = scored_contexts(n, 3, BLOCK, 0)
    assert contexts == {t: (t - 1) % BLOCK + 1 for t in range(1, n)}
    assert n_windows(n, 3, BLOCK, 0) == -(-(n - 1) // BLOCK)


@pytest.mark.parametrize("stride", [1, 3, 5, BLOCK])
@pytest.mark.parametrize("n", LENGTHS)
def test_sliding_window_scores_each_target_once_with_enough_context(n, stride):
    """Every target once; the first window's targets see everything before them, every later one at
    least block_size - stride + 1 tokens; 1 + ceil((n - 1 - block_size) / stride) windows in all.
    Catches: `pos >= lo` -> `pos >= lo - 1` (scored twice), `his - block_size` -> `his - block_size + 1`
    (a target past the window), `range(block_size + stride, ...)` -> `range(block_size + stride + 1, ...)`
    (too little context), and the last window (`+ ([n_targets] if n_targets > block_size else [])`) dropped."""
    contexts = scored_contexts(n, 3, BLOCK, stride)
    assert sorted(contexts) == list(range(1, n))
    for t, context in contexts.items():
        if t <= BLOCK:
            assert context == t, t
        else:
            assert BLOCK - stride + 1 <= context <= BLOCK, (t, context)
    assert n_windows(n, 3, BLOCK, stride) == 1 + max(0, -(-(n - 1 - BLOCK) // stride))


@pytest.mark.parametrize("stride", [-1, BLOCK + 1])
def test_bad_stride_raises(stride):
    """Catches: the range check loosened (`0 < stride <= block_size` -> `0 < stride`), which would
    silently skip targets for stride > block_size."""
    with pytest.raises(ValueError, match=f"stride={stride} must be in"):
        list(lm_eval_batches(torch.arange(50), 4, BLOCK, stride))


def tiny_lm(data, **kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=data.vocab_size, block_size=BLOCK, n_layer=1, n_head=2,
                                         n_embd=16, **kw))


def test_stride_one_loss_is_full_context_brute_force(tiny_data):
    """train.evaluate with eval_stride=1 equals one forward per target over its own preceding
    window (up to block_size tokens), the loss read at the window's last position.
    Catches: evaluate ignoring cfg.eval_stride (`cfg.eval_stride if stride is None else stride` -> `stride or 0`)
    and any lost context in the sliding windows."""
    data = Data("shakespeare_char", tiny_data)
    model = tiny_lm(data)
    cfg = train.TrainConfig(eval_batch_size=7, eval_stride=1)  # several batches, a ragged last one
    metrics = evaluation.evaluate(model, data, "val", cfg, torch.device("cpu"), nullcontext())
    val = torch.from_numpy(np.asarray(data.tokens("val"), dtype=np.int64))
    nats = 0.0
    with torch.no_grad():
        for t in range(1, len(val)):
            x = val[max(0, t - BLOCK):t][None]
            nats += F.cross_entropy(model(x)[0][0, -1].double(), val[t]).item()
    assert metrics["eval_stride"] == 1 and metrics["tokens"] == len(val) - 1
    assert metrics["loss"] == pytest.approx(nats / (len(val) - 1), rel=1e-5)
    separate = evaluation.evaluate(model, data, "val", cfg, torch.device("cpu"), nullcontext(), stride=0)
    assert separate["eval_stride"] == 0 and separate["loss"] != pytest.approx(metrics["loss"], rel=1e-5)


# ---- TrainConfig.eval_stride and eval_only ----------------------------------------------------------

@pytest.mark.parametrize("stride,ok", [(-1, False), (0, True), (1, True), (16, True), (17, False)])
def test_eval_stride_is_validated_against_block_size(stride, ok):
    """Catches: `0 <= cfg.eval_stride <= block_size` -> `< block_size` (16 refused) or the lower
    bound dropped (-1 accepted)."""
    args = ["--block_size=16", f"--eval_stride={stride}"]
    if ok:
        assert train.parse_args(args)[0].eval_stride == stride
    else:
        with pytest.raises(train.ConfigError, match=rf"eval_stride={stride} must be in \[0, 16\]"):
            train.parse_args(args)


# ---- TrainConfig.eval_context: evaluation windows longer than the trained context ------------------

def same_params(short, long):
    """long takes short's parameters (its position buffers, e.g. RoPE's tables, are its own)."""
    long.load_state_dict(dict(short.named_parameters()), strict=False)
    return long.eval()


@pytest.mark.parametrize("pos", ["alibi", "rope", "none"])
def test_a_wider_window_reads_a_long_input_whole_as_a_longer_trained_model_would(pos):
    """window=32 on a block-16 model computes what the same weights with block_size=32 compute; the
    default reads the second half through a 16-token sliding window instead.
    Catches: the window not reaching the mask (the block_size sliding window kept for ALiBi, or
    for any encoding once the input is longer than the window)."""
    short = model_of(block_size=16, pos_encoding=pos).eval()
    long = same_params(short, model_of(block_size=32, pos_encoding=pos))
    x = tokens(B=2, T=32)
    with torch.no_grad():
        wide, whole, sliding = short(x, window=32)[0], long(x)[0], short(x)[0]
    torch.testing.assert_close(wide, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sliding[:, :16], whole[:, :16], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sliding[:, 16:], whole[:, 16:], atol=1e-3)


def test_eval_context_scores_in_windows_of_its_length(tiny_data, monkeypatch):
    """evaluate and dynamic_evaluate with eval_context=16 on a block-8 ALiBi model give the loss of
    the same weights trained at block 16 evaluated as usual; eval_context=8 (= block_size) changes
    nothing. Catches: eval_context not reaching lm_eval_batches (windows of block_size) or the model
    (windows of 16 read through an 8-token sliding window)."""
    data = Data("shakespeare_char", tiny_data)
    short = tiny_lm(data, pos_encoding="alibi").eval()
    torch.manual_seed(0)
    long = same_params(short, Transformer(TransformerConfig(vocab_size=data.vocab_size, block_size=16,
                                                            n_layer=1, n_head=2, n_embd=16,
                                                            pos_encoding="alibi")))
    dev = torch.device("cpu")
    for stride in (0, 4):
        cfg = train.TrainConfig(eval_batch_size=16, eval_stride=stride, eval_context=16)
        plain = train.TrainConfig(eval_batch_size=16, eval_stride=stride)
        wide = evaluation.evaluate(short, data, "val", cfg, dev, nullcontext())
        assert wide["eval_context"] == 16
        assert wide["loss"] == pytest.approx(evaluation.evaluate(long, data, "val", plain, dev,
                                                                 nullcontext())["loss"], rel=1e-5)
        assert wide["loss"] != pytest.approx(evaluation.evaluate(short, data, "val", plain, dev,
                                                                 nullcontext())["loss"], rel=1e-5)
    same = train.TrainConfig(eval_batch_size=16, eval_stride=4, eval_context=8)
    assert (evaluation.evaluate(short, data, "val", same, dev, nullcontext())["loss"]
            == evaluation.evaluate(short, data, "val", plain, dev, nullcontext())["loss"])
    head = torch.from_numpy(np.asarray(data.tokens("val")[:200], dtype=np.int64))  # dynamic: one window at a time
    monkeypatch.setattr(evaluation, "split_on_device", lambda d, split, device: head)
    d_wide = evaluation.dynamic_evaluate(short, data, "val", cfg, dev, nullcontext(), lr=0.0)
    d_long = evaluation.dynamic_evaluate(long, data, "val", plain, dev, nullcontext(), lr=0.0)
    assert d_wide["loss"] == pytest.approx(d_long["loss"], rel=1e-5)


def test_metrics_name_eval_context_only_when_it_differs_from_block_size(tiny_data):
    """The metrics carry eval_context only for a window other than the model's block_size, so a
    plain run's log and metrics.json do not read as a separate-window figure. Bug caught: the
    `window != block_size` test dropped (eval_context written for every evaluation)."""
    data = Data("shakespeare_char", tiny_data)
    model, dev = tiny_lm(data), torch.device("cpu")
    for context in (0, BLOCK):  # 0: the default, block_size
        cfg = train.TrainConfig(eval_batch_size=64, eval_stride=4, eval_context=context)
        metrics = evaluation.evaluate(model, data, "val", cfg, dev, nullcontext())
        assert "eval_context" not in metrics and metrics["eval_stride"] == 4



def test_eval_only_checks_the_window_against_the_checkpoints_model(tiny_data, tmp_path):
    """An eval_only names no model keys, so the command line's check sees the defaults (rope, 256):
    the window is checked again against the checkpoint's model (learned positions, block 16).
    Bug caught: a traceback from the model's length check instead of the configuration error."""
    run(tiny_data, tmp_path, "--max_iters=2", "--eval_interval=2", "--pos_encoding=learned")
    with pytest.raises(train.ConfigError, match="has no positions past it"):
        run(tiny_data, tmp_path, "--eval_only=true", "--eval_context=32")
    with pytest.raises(train.ConfigError, match=r"eval_stride=20 must be in \[0, 16\]"):
        run(tiny_data, tmp_path, "--eval_only=true", "--eval_stride=20")
    assert run(tiny_data, tmp_path, "--eval_only=true", "--eval_stride=8")["eval_stride"] == 8


@pytest.mark.parametrize("args,message", [
    (["--eval_context=-1"], "eval_context=-1 must be >= 0"),
    (["--block_size=16", "--eval_context=32", "--pos_encoding=learned"], "has no positions past it"),
    (["--block_size=16", "--eval_context=32", "--pos_encoding=sinusoidal"], "has no positions past it"),
    (["--block_size=16", "--eval_context=24", "--eval_stride=25"], r"eval_stride=25 must be in \[0, 24\]"),
    (["--dataset=sst2", "--eval_context=32"], "not a language-model data set"),
])
def test_eval_context_is_checked(args, message):
    with pytest.raises(train.ConfigError, match=message):
        train.parse_args(args)
    assert train.parse_args(["--block_size=16", "--eval_context=32", "--eval_stride=32",
                             "--pos_encoding=alibi"])[0].eval_context == 32


def test_eval_only_writes_metrics_split_and_the_separate_window_figure(tiny_data, tmp_path):
    """eval_only writes out_dir/metrics_val.json and leaves the training run's metrics.json as it
    was; with eval_stride > 0 it carries eval_stride and "separate_windows", the figure of a
    separate stride-0 evaluation; with eval_stride=0 there is no such entry.
    Catches: `metrics_{cfg.eval_split}.json` -> `metrics.json` (the training result overwritten) and
    the comparison evaluated with `stride=0` dropped (it would repeat the sliding figure)."""
    out = tmp_path / "r"
    trained = run(tiny_data, out, "--max_iters=4", "--eval_interval=4", "--eval_stride=4")
    before = (out / "metrics.json").read_bytes()
    assert trained["eval_stride"] == 4  # training's evaluations slide too
    sliding = run(tiny_data, out, "--max_iters=4", "--eval_only=true", "--eval_stride=4")
    saved = json.loads((out / "metrics_val.json").read_text())
    assert saved == json.loads(json.dumps(sliding)) and saved["split"] == "val" and saved["eval_stride"] == 4
    separate = run(tiny_data, out, "--max_iters=4", "--eval_only=true", "--eval_stride=0")
    assert "separate_windows" not in separate and separate["eval_stride"] == 0
    assert saved["separate_windows"] == {"loss": separate["loss"], "perplexity": separate["perplexity"]}
    assert saved["loss"] != separate["loss"]
    assert (out / "metrics.json").read_bytes() == before


# ---- dropout sites -------------------------------------------------------------------------------

V = 37


def model_of(**kw):
    args = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16, pos_encoding="learned")
    args.update(kw)
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**args))


def tokens(B=4, T=16, seed=1, vocab=V):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def sites_that_drop(model, x):
    """The dropout sites that changed something in one forward of model on x: "embd" (transformer.drop),
    "attn" (the attention weights of the first layer: its c_proj input against attention recomputed from
    its q, k, v), "resid_attn" / "resid_mlp" (each block's output against its c_proj output) and "out"
    (before the head)."""
    modules = {"drop": model.transformer.drop, "out": model.out_drop}
    for i, block in enumerate(model.transformer.h):
        modules.update({f"attn{i}": block.attn, f"attn{i}.c_attn": block.attn.c_attn,
                        f"attn{i}.c_proj": block.attn.c_proj, f"mlp{i}": block.mlp, f"mlp{i}.c_proj": block.mlp.c_proj})
    seen = {}  # name: (input, output) of its one call

    def keep(name):
        def hook(module, args, out):
            seen[name] = args[0], out
        return hook

    hooks = [m.register_forward_hook(keep(name)) for name, m in modules.items()]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()

    def changed(a, b):
        return not torch.allclose(a, b, atol=1e-6)

    dropped = {site for site, name in (("embd", "drop"), ("out", "out")) if changed(*seen[name])}
    B, T, C = x.shape[0], x.shape[1], model.config.n_embd
    q, k, v = seen["attn0.c_attn"][1].view(B, T, 3, model.config.n_head, -1).unbind(2)
    plain = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True)
    if changed(seen["attn0.c_proj"][0], plain.transpose(1, 2).reshape(B, T, C)):
        dropped.add("attn")
    for kind in ("attn", "mlp"):
        if any(changed(seen[f"{kind}{i}"][1], seen[f"{kind}{i}.c_proj"][1]) for i in range(model.config.n_layer)):
            dropped.add(f"resid_{kind}")
    return dropped


RESID = {"resid_attn", "resid_mlp"}


@pytest.mark.parametrize("kw,expected", [
    (dict(dropout=0.3), {"embd", "attn"} | RESID),  # -1: the three inherit dropout; out_dropout does not
    (dict(dropout=0.9, attn_dropout=0.0, resid_dropout=0.0, embd_dropout=0.0), set()),  # an explicit 0 wins
    (dict(attn_dropout=0.5), {"attn"}),
    (dict(resid_dropout=0.5), RESID),
    (dict(embd_dropout=0.5), {"embd"}),
    (dict(out_dropout=0.5), {"out"}),
    (dict(), set()),
])
def test_each_rate_reaches_its_site_only(kw, expected):
    """In training mode, a rate drops exactly at its own site; in eval mode nothing drops.
    Catches: MLP or SelfAttention keeping `nn.Dropout(cfg.dropout)`, `self.dropout = cfg.rate("resid")`
    in SelfAttention, `drop=nn.Dropout(cfg.dropout)`, `self.out_drop = nn.Dropout(cfg.rate("resid"))`,
    and rate() treating 0 as "unset" (`value == -1.0` -> `value <= 0`)."""
    model = model_of(**kw).train()
    torch.manual_seed(2)
    assert sites_that_drop(model, tokens()) == expected
    assert sites_that_drop(model.eval(), tokens()) == set()


def test_rates_and_inheritance_on_the_modules():
    """rate() and the module attributes: distinct values land on distinct modules, -1 inherits dropout.
    Catches: two sites swapped (`cfg.rate("attn")` <-> `cfg.rate("resid")` in SelfAttention), or
    rate() falling back to 0 instead of dropout."""
    m = model_of(dropout=0.1, attn_dropout=0.2, resid_dropout=0.3, embd_dropout=0.4, out_dropout=0.5)
    assert [m.config.rate(s) for s in ("attn", "resid", "embd")] == [0.2, 0.3, 0.4]
    for block in m.transformer.h:
        assert block.attn.dropout == 0.2 and block.attn.resid_dropout.p == 0.3 and block.mlp.dropout.p == 0.3
    assert m.transformer.drop.p == 0.4 and m.out_drop.p == 0.5
    m = model_of(dropout=0.15)
    assert [m.config.rate(s) for s in ("attn", "resid", "embd")] == [0.15] * 3
    for block in m.transformer.h:
        assert block.attn.dropout == 0.15 and block.attn.resid_dropout.p == 0.15 and block.mlp.dropout.p == 0.15
    assert m.transformer.drop.p == 0.15 and m.out_drop.p == 0.0


@pytest.mark.parametrize("kw", [dict(attn_dropout=1.0), dict(resid_dropout=-0.5), dict(embd_dropout=-2.0),
                                dict(out_dropout=-1.0), dict(out_dropout=1.0), dict(word_dropout=-1.0),
                                dict(word_dropout=1.0), dict(layer_drop=1.0), dict(layer_drop=-0.1)])
def test_bad_rates_are_refused(kw):
    """Only attn/resid/embd accept -1; every rate must be below 1.
    Catches: `< 1.0` -> `<= 1.0` for out/word dropout, or out_dropout left out of their check."""
    [(name, value)] = kw.items()
    with pytest.raises(ValueError, match=f"{name}={value} must be in"):
        TransformerConfig(vocab_size=V, **kw)
    for ok in (0.0, 0.5) + ((-1.0,) if name in ("attn_dropout", "resid_dropout", "embd_dropout") else ()):
        TransformerConfig(vocab_size=V, **{name: ok})


# ---- stochastic depth (layer_drop) ----------------------------------------------------------------

def test_layer_drop_rises_linearly_to_its_rate_at_the_last_layer():
    """Catches: the linear rule off by one (`layer_idx / n_layer`: the first layer never drops, the
    last one below the rate) or one rate for every layer."""
    m = model_of(n_layer=4, layer_drop=0.2)
    assert [b.drop_rate for b in m.transformer.h] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert all(b.drop_rate == 0 for b in model_of(n_layer=4).transformer.h)


def test_layer_drop_keeps_or_drops_a_whole_sequence_and_scales_what_it_keeps():
    """In training, each sequence gets x (branch dropped) or x + y / (1 - rate), and over 4,000
    sequences the dropped fraction is the rate (within 5 sigma).
    Catches: a mask per position or per element, no rescaling, or the keep test inverted
    (dropping 1 - rate)."""
    block = model_of(n_layer=2, layer_drop=0.6).transformer.h[0].train()  # rate 0.3
    rate, B = block.drop_rate, 4000
    x, y = torch.randn(B, 5, 16), torch.randn(B, 5, 16)
    torch.manual_seed(0)
    out = block.add(x, y)
    dropped = (out == x).all(-1).all(-1)
    kept = torch.isclose(out, x + y / (1 - rate), atol=1e-6).all(-1).all(-1)
    assert bool((dropped ^ kept).all()), "a sequence neither wholly dropped nor wholly kept"
    assert abs(dropped.float().mean().item() - rate) < 5 * math.sqrt(rate * (1 - rate) / B)
    # in bf16 (autocast's branch outputs) the result stays bf16 and the kept branch is y / (1 - rate)
    # rounded once, not y times a rounded 1 / (1 - rate)
    xb, yb = x[:64].bfloat16(), y[:64].bfloat16()
    torch.manual_seed(0)
    out = block.add(xb, yb)
    kept = ~(out == xb).all(-1).all(-1)
    assert out.dtype == torch.bfloat16 and kept.any()
    torch.testing.assert_close(out[kept], (xb + yb / (1 - rate))[kept], rtol=0, atol=0)


def test_layer_drop_is_off_in_eval_mode_and_the_same_model_without_it():
    """Catches: the branch dropped at evaluation (`if self.training and ...` -> `if ...`)."""
    a, b = same_weights(dict(layer_drop=0.5), {})
    x = tokens()
    torch.testing.assert_close(a.eval()(x)[0], b.eval()(x)[0], rtol=0, atol=0)
    torch.manual_seed(1)
    la = a.train()(x, x)[1]
    torch.manual_seed(1)
    assert la != b.train()(x, x)[1]  # and on in training


def test_layer_drop_needs_residual_connections():
    with pytest.raises(ValueError, match="layer_drop=0.1 drops residual branches"):
        TransformerConfig(vocab_size=V, layer_drop=0.1, residual=False)


def embedded(model, x):
    """What the token embedding hands on (transformer.drop's input; pos_encoding='none', no other dropout)."""
    seen = []
    hook = model.transformer.drop.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[0]


def test_word_dropout_drops_a_word_type_everywhere_and_scales_the_rest():
    """In training mode each position's embedding after the first is 0 or 1/(1-p) times its row of
    wte, and every occurrence of one id there gets the same factor; the first position is wte's row
    itself. Catches: a mask per position (`torch.rand(cfg.vocab_size)` -> `torch.rand(idx.shape)`),
    no rescaling (`/ (1 - cfg.word_dropout)` dropped), or the first token dropped or rescaled."""
    p = 0.5
    model = model_of(pos_encoding="none", word_dropout=p).train()
    x = tokens(B=8, T=16)
    torch.manual_seed(3)
    h = embedded(model, x)
    factor = (h / model.transformer.wte(x)).nan_to_num()[..., 0]  # (B, T), one factor per position
    torch.testing.assert_close(h, model.transformer.wte(x) * factor[..., None])
    torch.testing.assert_close(h[:, 0], model.transformer.wte(x[:, 0]), rtol=0, atol=0)
    rest, ids = factor[:, 1:], x[:, 1:]
    assert set(torch.round(rest, decimals=5).unique().tolist()) == {0.0, 1 / (1 - p)}
    for i in ids.unique():
        assert rest[ids == i].unique().numel() == 1, f"id {int(i)} dropped at some positions only"


def test_word_dropout_at_initialisation_keeps_the_gradient_norm():
    """A 12 x 64 language model at initialisation (zero biases) with word dropout 0.5: its gradient
    norm stays of the size it has without word dropout (6.3 against 3.4). A dropped first token
    would be a zero row that every layer maps to zero again (it attends only to itself), each
    LayerNorm multiplying its gradient by 1/sqrt(eps): 3.3e6 here; 1.4e13 and 1.1e22 for the
    WikiText-2 shapes 6 x 512 and 12 x 384 (results/recipes/wt2-gnorm/zero_first_token.json).
    Catches: the first token dropped like the others (`scale[:, 0] = 1.0` removed)."""
    x = tokens(B=16, T=16)
    y = torch.randint(0, V, (16, 16), generator=torch.Generator().manual_seed(2))
    norms = []
    for p in (0.0, 0.5):
        model = model_of(n_layer=12, n_head=2, n_embd=64, pos_encoding="rope", word_dropout=p).train()
        _, loss = model(x, y)
        loss.backward()
        norms.append(math.sqrt(sum(q.grad.double().square().sum().item() for q in model.parameters())))
    assert norms[1] < 10 * norms[0], norms


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_word_dropout_drops_about_p_of_a_large_vocabulary(p):
    """Over 4096 word types, each seen once, the dropped fraction is p (within 5 sigma).
    Catches: the keep test inverted (`>= cfg.word_dropout` -> `< cfg.word_dropout`, dropping 1-p)."""
    vocab = 4096
    model = model_of(vocab_size=vocab, block_size=64, n_embd=8, n_layer=1, pos_encoding="none",
                     word_dropout=p).train()
    torch.manual_seed(4)
    h = embedded(model, torch.randperm(vocab, generator=torch.Generator().manual_seed(0)).view(64, 64))
    dropped = (h[:, 1:] == 0).all(-1).float().mean().item()  # the first position is always kept
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / (vocab - 64))


def same_weights(kw_a, kw_b):
    a, b = model_of(**kw_a), model_of(**kw_b)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("kw", [dict(word_dropout=0.5), dict(out_dropout=0.5)])
def test_eval_mode_ignores_word_and_output_dropout(kw):
    """In eval mode a model with word or output dropout computes exactly what it computes without.
    Catches: `if self.training and cfg.word_dropout` -> `if cfg.word_dropout`."""
    a, b = same_weights(kw, {})
    x = tokens()
    assert torch.equal(a.eval()(x)[0], b.eval()(x)[0])


@pytest.mark.parametrize("n_classes", [0, 3])
def test_output_dropout_feeds_the_head_in_training(n_classes):
    """The head (LM or classifier) sees out_drop's output in training mode: about half of the final
    hidden states zeroed at p=0.5, the rest doubled; in eval mode the plain final hidden states.
    Catches: `h = self.out_drop(self.encode(...))` -> `h = self.encode(...)`."""
    model = model_of(out_dropout=0.5, n_classes=n_classes, causal=not n_classes)
    head = model.cls_head if n_classes else model.lm_head
    x, seen = tokens(), []
    hook = head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    model.train()
    torch.manual_seed(5)
    model(x)
    model.eval()
    model(x)
    hook.remove()
    with torch.no_grad():
        h = model.encode(x)
        plain = h if not n_classes else model.pool(h)
    trained, evaluated = seen
    assert torch.equal(evaluated, plain)
    if not n_classes:  # dropout per element of the hidden states
        zero = trained == 0
        assert 0.35 < zero.float().mean().item() < 0.65
        torch.testing.assert_close(trained[~zero], 2 * plain[~zero])
    else:  # then pooled
        assert not torch.allclose(trained, plain)


def test_default_rates_are_the_single_dropout_bit_for_bit():
    """With the new rates at their defaults, a model built with only `dropout` set draws the same
    masks and gives the same training loss as one with every site set to dropout by hand and as one
    whose output dropout is taken out altogether (the model before these sites); with every rate 0,
    a training forward draws no random numbers at all.
    Catches: word dropout drawing its mask while off (`if self.training and cfg.word_dropout` ->
    `if self.training`) and -1 resolving to anything but dropout."""
    p = 0.2
    a, b = same_weights(dict(dropout=p), dict(dropout=p, attn_dropout=p, resid_dropout=p, embd_dropout=p))
    c, _ = same_weights(dict(dropout=p), {})
    c.out_drop = torch.nn.Identity()
    x, y = tokens(), tokens(seed=2)
    losses, states = [], []
    for m in (a, b, c):
        torch.manual_seed(6)
        losses.append(m.train()(x, y)[1])
        states.append(torch.get_rng_state())
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], losses[2])
    assert torch.equal(states[0], states[2])
    assert not torch.equal(losses[0], a.eval()(x, y)[1])  # dropout was on
    plain = model_of().train()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    plain(x, y)
    assert torch.equal(torch.get_rng_state(), state)


# ---- ablate.py --test ------------------------------------------------------------------------------

class FakeRunner:
    """Stands in for ablate.Runner: records each job and writes a metrics_test.json for it."""

    def __init__(self, code=0, write=True):
        self.jobs, self.code, self.write = [], code, write

    def run(self, job, log_name="train.log"):
        self.jobs.append((job, log_name))
        if self.write:
            seed = job["seed"]
            (job["out_dir"] / "metrics_test.json").write_text(json.dumps(
                {"split": "test", "step": 20, "loss": 1.0 + seed / 10, "accuracy": 0.5 + seed / 100,
                 "macro_f1": 0.25 * (seed + 1), "confusion": [[1, 0], [0, 1]]}))
        return self.code, 0.1


def fake_study(tmp_path, higher_is_better):
    results = {"summary": [{"variant": "a", "mean": 0.7}, {"variant": "b", "mean": 0.9},
                           {"variant": "c", "mean": 0.8}]}
    jobs = []
    for seed in range(3):
        for v in ("a", "b", "c"):
            out_dir = tmp_path / f"{v}-s{seed}"
            out_dir.mkdir()
            jobs.append({"variant": v, "seed": seed, "out_dir": out_dir, "args": ["config/x.py", "--n_layer=1"],
                         "state": "done"})
    return results, {"metric": "best_val", "higher_is_better": higher_is_better}, jobs


@pytest.mark.parametrize("higher_is_better,pick", [(True, "b"), (False, "a")])
def test_score_selected_scores_only_the_best_variant_on_test(tmp_path, higher_is_better, pick):
    """The best mean (max or min as the study says) is selected; only its runs are evaluated, each
    with --eval_only=true --eval_split=test into test.log; the per-seed values and mean / sample std
    are those of the metrics_test.json files, numbers only.
    Catches: `(max if study["higher_is_better"] else min)` swapped, `ddof=1` -> `ddof=0`, and the
    variant filter `j["variant"] == pick` dropped."""
    results, study, jobs = fake_study(tmp_path, higher_is_better)
    runner = FakeRunner()
    test = ablate.score_selected(results, study, jobs, runner)
    assert test["variant"] == pick and test["selected_by"] == "best mean best_val on val"
    assert [(j["variant"], j["seed"], log) for j, log in runner.jobs] == [(pick, s, "test.log") for s in range(3)]
    for job, _ in runner.jobs:
        assert job["args"] == ["config/x.py", "--n_layer=1", "--eval_only=true", "--eval_split=test"]
        assert job["state"] == "eval"
    files = [json.loads((tmp_path / f"{pick}-s{s}" / "metrics_test.json").read_text()) for s in range(3)]
    assert test["runs"] == [{"seed": s, **{k: f[k] for k in ("step", "loss", "accuracy", "macro_f1")}}
                            for s, f in enumerate(files)]
    assert list(test["summary"]) == ["loss", "accuracy", "macro_f1"]
    for k, v in test["summary"].items():
        values = [f[k] for f in files]
        assert v == {"mean": pytest.approx(np.mean(values)), "std": pytest.approx(np.std(values, ddof=1))}


def test_score_selected_failures_and_nothing_to_select(tmp_path):
    """A failed evaluation or a missing metrics_test.json is an error naming test.log; a summary
    without a mean selects nothing.
    Catches: `if code != 0 or not m` -> `if not m` (a failed run's stale file would pass)."""
    results, study, jobs = fake_study(tmp_path, True)
    with pytest.raises(ablate.StudyError, match=r"scoring 'b' seed 0 on the test split failed: .*test.log"):
        ablate.score_selected(results, study, jobs, FakeRunner(code=1))
    for j in jobs:
        (j["out_dir"] / "metrics_test.json").unlink(missing_ok=True)
    with pytest.raises(ablate.StudyError, match="seed 0 on the test split failed"):
        ablate.score_selected(results, study, jobs, FakeRunner(write=False))
    assert ablate.score_selected({"summary": [{"variant": "a", "mean": None}]}, study, jobs, FakeRunner()) is None


def test_ablate_test_flag_end_to_end(tmp_path, tiny_data):
    """`ablate.py STUDY --test` on tiny TREC: the variant with the lower val loss is selected, only its
    run gets a metrics_test.json (its metrics.json kept), and results.json / summary.md carry its
    test figures.
    Catches: `test=args.test` dropped from main, and the Runner's stale-file removal hitting
    metrics.json for an evaluation (`"metrics_test.json" if evaluating` -> `"metrics.json"`)."""
    quick = {**ablate.load_study("trecreg")["quick"], "max_iters": 10, "eval_interval": 10}
    study = tmp_path / "study_pick.py"
    study.write_text(f"base = {str(ablate.ROOT / 'config/trec.py')!r}\nmetric = 'loss'\nhigher_is_better = False\n"
                     f"overrides = dict(compile=False, cpu_config='')\nquick = {quick!r}\n"
                     "variants = {'baseline': dict(learning_rate=1e-6, min_lr=1e-7), "
                     "'fast': dict(learning_rate=1e-2)}\n")
    out = tmp_path / "out"
    code = ablate.main([str(study), "--quick", "--seeds=1", "--jobs=2", "--test", f"--out={out}",
                        f"--set=data_dir={tiny_data}"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    means = {s["variant"]: s["mean"] for s in results["summary"]}
    test = results["test"]
    assert test["variant"] == min(means, key=means.get) == "fast"
    assert "--test" in results["command"]
    run_dir = out / "runs" / "fast-s0"
    saved = json.loads((run_dir / "metrics_test.json").read_text())
    assert saved["split"] == "test" and sum(map(sum, saved["confusion"])) == 12
    assert json.loads((run_dir / "metrics.json").read_text())["split"] == "val"
    assert not (out / "runs" / "baseline-s0" / "metrics_test.json").exists()
    assert test["runs"][0]["seed"] == 0
    assert all(test["runs"][0][k] == saved[k] for k in ("loss", "accuracy", "macro_f1"))
    assert test["summary"]["accuracy"] == {"mean": saved["accuracy"], "std": None}
    md = (out / "summary.md").read_text()
    assert "## Test split: `fast` (selected by best mean loss on val)" in md
    assert f"| 0 | {saved['loss']:.4f} | {saved['accuracy']:.4f} | {saved['macro_f1']:.4f} |" in md
    assert f"| mean ± std | {saved['loss']:.4f} | {saved['accuracy']:.4f} | {saved['macro_f1']:.4f} |" in md


def _dynamic_setup(tiny_data, monkeypatch, tokens):
    """A small trained-from-nothing char model, and the val split replaced by tokens."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
    monkeypatch.setattr(evaluation, "split_on_device", lambda data, split, device: tokens)
    cfg, _ = train.parse_args(["--eval_stride=8", "--eval_batch_size=4", "--block_size=16"])
    return model, Data("shakespeare_char", tiny_data), cfg


def test_dynamic_evaluation_scores_each_window_before_learning_from_it(tiny_data, monkeypatch):
    """Krause et al.'s dynamic evaluation: with a learning rate of 0, or a decay that undoes every
    step, it is the static evaluation; on one window it is the static score whatever the learning rate
    (nothing may be learned before a token is scored); on text that repeats itself it scores the
    repeat better; the trained weights come back. Bugs caught: the SGD step taken before the scoring
    (a model that has seen the answer), the decay pulling the wrong way, weights left adapted."""
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 65, (40,), generator=g)
    repeated = text.repeat(6)
    model, data, cfg = _dynamic_setup(tiny_data, monkeypatch, repeated)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dev = torch.device("cpu")
    static = evaluation.evaluate(model, data, "val", cfg, dev, nullcontext())
    zero = evaluation.dynamic_evaluate(model, data, "val", cfg, dev, nullcontext(), lr=0.0)
    assert zero["loss"] == pytest.approx(static["loss"], rel=1e-6) and zero["tokens"] == static["tokens"]
    adapted = evaluation.dynamic_evaluate(model, data, "val", cfg, dev, nullcontext(), lr=0.1)
    assert adapted["loss"] < static["loss"] - 0.3  # it has learned the text it already scored
    undone = evaluation.dynamic_evaluate(model, data, "val", cfg, dev, nullcontext(), lr=0.1,
                                         decay=1 - 1e-9)
    assert undone["loss"] == pytest.approx(static["loss"], rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # one window: scored before any step, so the learning rate cannot matter
    monkeypatch.setattr(evaluation, "split_on_device", lambda data, split, device: text[:17])
    one_static = evaluation.evaluate(model, data, "val", cfg, dev, nullcontext())
    one = evaluation.dynamic_evaluate(model, data, "val", cfg, dev, nullcontext(), lr=10.0)
    assert one["loss"] == pytest.approx(one_static["loss"], rel=1e-6) and one["tokens"] == 16


def test_dynamic_evaluation_is_one_sgd_step_on_each_windows_mean_loss(tiny_data, monkeypatch):
    """By hand on 19 tokens with stride 1: the first window (16 targets) scored, one SGD step on its
    mean loss, then each later window's one target scored and learned from; dropout off
    throughout. Bugs caught: a window's loss divided by more than its targets, dropout left on."""
    import copy
    tokens = torch.randint(0, 65, (19,), generator=torch.Generator().manual_seed(2))
    _, data, _ = _dynamic_setup(tiny_data, monkeypatch, tokens)
    cfg, _ = train.parse_args(["--eval_stride=1", "--block_size=16"])
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32,
                                          dropout=0.3))
    ref, lr, nats = copy.deepcopy(model).eval(), 0.5, 0.0
    for t in range(16, 19):  # window t: tokens[t-16:t], scored on its last target (all 16 at first)
        x, y = tokens[None, t - 16:t], tokens[t - 15:t + 1]
        losses = F.cross_entropy(ref(x)[0][0], y, reduction="none")[0 if t == 16 else -1:]
        nats += losses.sum().item()
        grads = torch.autograd.grad(losses.mean(), list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads):
                p -= lr * g
    model.train()
    got = evaluation.dynamic_evaluate(model, data, "val", cfg, torch.device("cpu"), nullcontext(), lr=lr)
    assert got["tokens"] == 18 and got["loss"] == pytest.approx(nats / 18, rel=1e-5)
    assert model.training  # handed back as it came


def test_dynamic_evaluation_options_are_checked(tiny_data, tmp_path):
    """dynamic_lr is an eval_only option of language models; its decay is a fraction."""
    with pytest.raises(train.ConfigError) as info:
        train.parse_args(["--dynamic_lr=1e-4", "--dynamic_decay=1.5"])
    assert "--eval_only=true" in str(info.value) and "dynamic_decay=1.5 must be in [0, 1)" in str(info.value)
    with pytest.raises(train.ConfigError, match="dynamic_lr"):
        train.parse_args(["--dynamic_lr=1e-4", "--eval_only=true", "--dataset=sst2"])
    run(tiny_data, tmp_path, "--max_iters=4", "--eval_interval=4", "--eval_stride=8")
    result = run(tiny_data, tmp_path, "--eval_only=true", "--eval_stride=8", "--dynamic_lr=0.01")
    saved = json.loads((tmp_path / "metrics_val.json").read_text())
    assert saved["dynamic"]["dynamic_lr"] == 0.01 and saved["loss"] == result["loss"]
    assert saved["dynamic"]["loss"] != saved["loss"] and math.isfinite(saved["dynamic"]["perplexity"])
