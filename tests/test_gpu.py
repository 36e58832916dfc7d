"""Checks that need a CUDA device (skipped elsewhere): CUDA-graph decoding and bf16 fused attention."""
import pytest
import torch

import optimizers
from model import Transformer, TransformerConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("pe,compile", [(pe, False) for pe in ("none", "sinusoidal", "learned", "rope", "alibi")]
                         + [("rope", True), ("learned", True)])
def test_cuda_graph_decoding_logits_equal_full_recompute(pe, compile, monkeypatch):
    """The logits of every graphed decoding step (compiled or not), on an unmodified random model,
    equal a full forward over the same text (its last block_size tokens for absolute positions), past
    block_size. Bugs caught: a wrong cache slot, position or mask in the recorded step (tokens alone
    can hide them); a compiled step that bakes in the position of its first call."""
    import model as model_lib
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32: fp32 on both sides, compared closely
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64,
                                          pos_encoding=pe)).cuda().eval()
    seen = []

    def greedy(logits, *args):
        seen.append(logits.float().clone())  # a graph's output buffer is overwritten at the next replay
        return logits.argmax(-1, keepdim=True)
    monkeypatch.setattr(model_lib, "sample_next", greedy)
    prompt = torch.randint(0, 65, (2, 5), device="cuda")
    out = model.generate(prompt, 150, temperature=0, compile=compile)  # past block_size: the window slides
    assert len(seen) == 150
    with torch.no_grad():
        for i, logits in enumerate(seen):
            text = out[:, :5 + i]
            window = text[:, -64:] if pe in ("learned", "sinusoidal") else text
            torch.testing.assert_close(logits, model(window)[0][:, -1].float(), atol=1e-4, rtol=1e-3,
                                       msg=f"step {i}")
    torch.set_float32_matmul_precision(precision)


def test_bf16_fused_attention_matches_manual():
    x = torch.randint(0, 65, (4, 64), device="cuda")
    outs = []
    for attention in ("manual", "sdpa"):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64,
                                              attention=attention)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs.append(model(x)[0].float())
    assert ((outs[0] - outs[1]).norm() / outs[1].norm()).item() < 1e-2  # bf16 operands: 1e-3 to 1e-2


def test_bf16_weights_cuda_graph_decoding_matches_bf16_full_recompute():
    import sample
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)).cuda().eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)
    sample.cast_for_inference(model, torch.bfloat16)
    prompt = torch.randint(0, 65, (1, 5), device="cuda")
    graphed = model.generate(prompt, 40, temperature=0)
    ref = prompt
    with torch.no_grad():
        for _ in range(40):
            ref = torch.cat([ref, model(ref)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert (graphed == ref).float().mean() > 0.9  # bf16: a near-tie may flip late tokens, not most


@pytest.mark.parametrize("grad_accum,dropout", [(1, 0.0), (2, 0.0), (1, 0.1)])
def test_graphed_training_step_equals_eager(grad_accum, dropout):
    import parallel
    import train
    cfg, kw = train.parse_args(["--n_layer=2", "--n_head=4", "--n_embd=64", "--block_size=32", "--batch_size=8",
                                f"--grad_accum={grad_accum}", f"--dropout={dropout}", "--dtype=float32",
                                "--max_iters=10", "--warmup_iters=2"])

    class Fixed:  # a few fixed batches, the same for both runs
        task = "lm"
        data = torch.randint(0, 65, (4, 8, 33), generator=torch.Generator().manual_seed(1)).cuda()

        def get(self, step, micro, rank):
            b = self.data[(step * grad_accum + micro) % 4]
            return b[:, :-1], b[:, 1:]

    runs = []
    for graph in (False, True):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=65, **kw)).cuda()
        opts = train.make_optimizers(model, cfg, torch.device("cuda"))
        torch.cuda.manual_seed(5)
        graphed = parallel.GraphedStep(model, [Fixed().get(0, 0, 0)], 1 / grad_accum, torch.float32) if graph else None
        losses = [train.train_step(model, model, opts, None, Fixed(), s, cfg, graphed=graphed)[0] for s in range(6)]
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
        if graph and dropout:  # two replays on the same batch: new dropout masks each time
            assert graphed(*Fixed().get(0, 0, 0)).item() != graphed(*Fixed().get(0, 0, 0)).item()
    (eager_losses, eager_params), (graph_losses, graph_params) = runs
    if dropout == 0:  # the same arithmetic: the same losses and weights, up to summation order
        assert graph_losses == pytest.approx(eager_losses, rel=1e-5)
        for a, b in zip(eager_params, graph_params):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    else:  # dropout masks differ from eager's draws
        assert graph_losses == pytest.approx(eager_losses, rel=0.05)
    assert graph_losses[-1] < graph_losses[0]  # it learns


def test_block_compiled_graphed_training_equals_eager():
    """compile_scope='block' with the whole step recorded (the WikiText-2 recipe's set-up): each
    block and the loss work (model.LogitGrads) compiled by compile_model, then recorded by
    GraphedStep, train as the eager model does in float32."""
    import parallel
    import train
    cfg, kw = train.parse_args(["--n_layer=3", "--n_head=4", "--n_embd=64", "--block_size=32", "--batch_size=8",
                                "--dropout=0", "--dtype=float32", "--max_iters=10", "--warmup_iters=2",
                                "--compile_scope=block", "--cuda_graph=true"])
    data = torch.randint(0, 65, (4, 8, 33), generator=torch.Generator().manual_seed(1)).cuda()

    class Fixed:
        task = "lm"

        def get(self, step, micro, rank):
            return data[step % 4, :, :-1], data[step % 4, :, 1:]

    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        raw = Transformer(TransformerConfig(vocab_size=65, **kw)).cuda()
        opts = train.make_optimizers(raw, cfg, torch.device("cuda"))
        model = parallel.compile_model(raw, cfg, torch.device("cuda")) if compiled else raw
        graphed = parallel.GraphedStep(model, [Fixed().get(0, 0, 0)], 1.0, torch.float32) \
            if compiled else None
        runs.append([train.train_step(model, raw, opts, None, Fixed(), s, cfg, graphed=graphed)[0] for s in range(6)])
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)


def test_compiled_fused_head_matches_plain_head_in_bf16():
    """The training path (return_logits=False: LinearCrossEntropy) under torch.compile and bf16
    autocast gives the loss and gradients of the plain head, to bf16 accuracy."""
    x = torch.randint(0, 1000, (4, 128), device="cuda")
    y = torch.roll(x, -1, dims=1)
    results = []
    for return_logits in (True, False):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=1024, block_size=128, n_layer=2, n_head=4,
                                              n_embd=128)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = torch.compile(model)(x, y, return_logits=return_logits)
        loss.backward()
        results.append((loss.item(), [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert abs(loss_a - loss_b) < 1e-3 * loss_a
    for a, b in zip(grads_a, grads_b):
        assert ((a - b).norm() / a.norm()).item() < 2e-2


def test_compiled_fp8_head_is_close_to_bf16():
    x = torch.randint(0, 1024, (4, 128), device="cuda")
    y = torch.roll(x, -1, dims=1)
    results = []
    for fp8 in (False, True):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=1024, block_size=128, n_layer=2, n_head=4, n_embd=128,
                                              fp8_head=fp8)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = torch.compile(model)(x, y, return_logits=False)
        loss.backward()
        results.append((loss.item(), [p.grad.flatten() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert abs(loss_a - loss_b) < 1e-2 * loss_a
    for a, b in zip(grads_a, grads_b):
        assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.99


def test_optimizers_match_torch_on_cuda():
    """Our AdamW against torch.optim.AdamW(fused=True), and our Muon (its Newton-Schulz batched over
    matrices of one shape) against torch.optim.Muon, on the GPU, 3 steps on 4 matrices of two shapes.
    AdamW is the same kernel, so bit for bit; Muon's batched products may round differently in bf16,
    so within a bf16 step of the update. Bugs caught: the fused kernel called with wrong arguments on
    CUDA, a stack's outputs added to the wrong matrices, the wrong learning-rate scale per shape."""
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(96, 32), (96, 32), (32, 128), (32, 128)]
    base = [torch.randn(s, device="cuda", generator=g) for s in shapes]
    grads = [[torch.randn(s, device="cuda", generator=g) for s in shapes] for _ in range(3)]
    pairs = [(lambda ps: optimizers.AdamW(ps, lr=1e-2, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True), 0.0),
             (lambda ps: optimizers.Muon(ps, 0.02, 0.1, 0.95, blocks={}),
              lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.1, momentum=0.95,
                                          adjust_lr_fn="match_rms_adamw"), 2e-4)]
    for ours_cls, ref_cls, atol in pairs:
        ours, ref = ([t.clone().requires_grad_() for t in base] for _ in range(2))
        opt, ref_opt = ours_cls(ours), ref_cls(ref)
        for step_grads in grads:
            for p, q, grad in zip(ours, ref, step_grads):
                p.grad, q.grad = grad.clone(), grad.clone()
            opt.step()
            ref_opt.step()
        for p, q, b in zip(ours, ref, base):
            assert (p - b).abs().max() > 1e-3  # moved
            torch.testing.assert_close(p, q, atol=atol, rtol=0)


def test_graphed_classifier_steps_equal_eager_at_every_length():
    """A classifier trained 6 steps on batches of three padded lengths, eagerly and through one CUDA
    graph per length (recorded up front from cls_batches_of_every_length): the same losses, token
    counts and weights (no dropout). Bugs caught: a batch replayed through another length's graph,
    the mask not copied into the graph's inputs (padding pooled), padding counted as tokens."""
    import parallel
    import train
    from data import cls_batches_of_every_length
    g = torch.Generator().manual_seed(3)
    batches = []
    for n in (8, 24, 16, 8, 16, 24):
        real = torch.randint(1, n + 1, (8,), generator=g)
        mask = torch.arange(n)[None] < real[:, None]
        x = torch.where(mask, torch.randint(1, 50, (8, n), generator=g), 0)
        batches.append((x.cuda(), mask.cuda(), torch.randint(0, 3, (8,), generator=g).cuda()))

    class Fixed:
        task = "cls"

        def get(self, step, micro, rank):
            return batches[step]

    cfg = train.TrainConfig(max_iters=10, warmup_iters=0, learning_rate=3e-3)
    runs = []
    for graph in (False, True):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=64,
                                              causal=False, n_classes=3, dropout=0.0)).cuda()
        opts = train.make_optimizers(model, cfg, torch.device("cuda"))
        graphed = parallel.GraphedStep(model, cls_batches_of_every_length(batches[0], 24, 0), 1.0,
                                       torch.float32) if graph else None
        if graph:
            assert sorted(graphed.graphs) == [(8, 8), (8, 16), (8, 24)]
        steps = [train.train_step(model, model, opts, None, Fixed(), s, cfg, graphed=graphed) for s in range(6)]
        runs.append(([s[0] for s in steps], [s[3] for s in steps], [p.detach().clone() for p in model.parameters()]))
    (eager_losses, eager_tokens, eager_params), (graph_losses, graph_tokens, graph_params) = runs
    assert graph_tokens == eager_tokens == [float(b[1].sum()) for b in batches]
    assert graph_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(eager_params, graph_params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("extra", [dict(word_dropout=0.1, embd_dropout=0.6, out_dropout=0.4),
                                   dict(layer_drop=0.2)])
def test_graphed_compiled_step_gradient_norms_are_the_eager_steps(extra):
    """With WikiText-2's dropout sites (word, embedding, output), bf16 and a padded vocabulary, a
    block-compiled graphed step's gradient norms are of the eager steps' size from step 0 on (the
    dropout masks differ, so not equal). The same for layer_drop, which also runs here compiled
    and graphed. (The ~4e13 at step 0 of the WikiText-2 logs was word dropout's zero first token,
    on every device alike: tests/test_recipes.py, test_word_dropout_at_initialisation_...)"""
    import parallel
    import train
    cfg, kw = train.parse_args(["--n_layer=2", "--n_head=4", "--n_embd=64", "--block_size=32", "--batch_size=8",
                                "--dtype=bfloat16", "--max_iters=10", "--warmup_iters=2", "--compile_scope=block",
                                "--cuda_graph=true", *[f"--{k}={v}" for k, v in extra.items()]])
    data = torch.randint(0, 1100, (4, 8, 33), generator=torch.Generator().manual_seed(1)).cuda()

    class Fixed:
        task = "lm"

        def get(self, step, micro, rank):
            return data[step % 4, :, :-1], data[step % 4, :, 1:]

    norms = []
    for graph in (False, True):
        torch.manual_seed(0)
        raw = Transformer(TransformerConfig(vocab_size=1152, real_vocab_size=1100, **kw)).cuda()
        opts = train.make_optimizers(raw, cfg, torch.device("cuda"))
        model = parallel.compile_model(raw, cfg, torch.device("cuda")) if graph else raw
        graphed = parallel.GraphedStep(model, [Fixed().get(0, 0, 0)], 1.0, torch.bfloat16) if graph else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        norms.append([float(train.train_step(model, raw, opts, None, Fixed(), s, cfg, autocast=autocast,
                                             graphed=graphed)[1]) for s in range(4)])
    eager, graphed = norms
    assert all(0 < n < 1e3 for n in eager + graphed), norms
    for a, b in zip(eager, graphed):
        assert b < 5 * a and a < 5 * b, norms


def train_losses(out):
    """The loss of every train record in out/log.jsonl."""
    import json
    records = map(json.loads, (out / "log.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_a_graphed_run_with_accumulation_trains_as_the_eager_run(tiny_data, tmp_path):
    """train.py's own set-up with cuda_graph=True and grad_accum=2 logs the eager run's losses: the
    graph is recorded with the 1/grad_accum loss scale (one recorded at scale 1 would log, and
    accumulate, twice the loss)."""
    import train
    from test_train import tiny_args
    losses = []
    for graph in ("false", "true"):
        train.train(*train.parse_args(tiny_args(
            tiny_data, tmp_path / graph, "--grad_accum=2", "--max_iters=12", "--eval_interval=12",
            "--dropout=0", "--dtype=float32", "--device=cuda", "--compile=false",
            f"--cuda_graph={graph}")), quiet=True)
        losses.append(train_losses(tmp_path / graph))
    eager, graphed = losses
    assert len(eager) == 12 and graphed == pytest.approx(eager, rel=1e-4), losses


def test_a_graphed_run_with_dropout_resumes_as_the_uninterrupted_run(tiny_data, tmp_path):
    """cuda_graph=True with dropout: a run stopped at step 5 and resumed logs the uninterrupted
    run's losses (to float32 noise; other dropout masks move them by ~1e-2). Bug caught: the RNG
    restored before the graph is recorded, whose warm-up passes draw dropout masks, so every step
    after a resume drew other masks than the uninterrupted run (seen in WikiText-2 runs: the
    losses parted at the very step a run resumed from, results/recipes/wt2long/README.md)."""
    import train
    from test_train import tiny_args
    args = ("--max_iters=12", "--eval_interval=6", "--dropout=0.2", "--dtype=float32",
            "--device=cuda", "--compile=false", "--cuda_graph=true")
    full, split = tmp_path / "full", tmp_path / "split"
    train.train(*train.parse_args(tiny_args(tiny_data, full, *args)), quiet=True)
    train.train(*train.parse_args(tiny_args(tiny_data, split, *args, "--stop_after=5")), quiet=True)
    train.train(*train.parse_args(tiny_args(tiny_data, split, *args, "--init_from=resume")),
                quiet=True)
    a, b = train_losses(full), train_losses(split)
    assert len(a) == len(b) == 12 and b == pytest.approx(a, rel=1e-5, abs=1e-6), (a, b)


def test_a_float16_run_scales_its_loss_and_resumes_its_scale(tiny_data, tmp_path, monkeypatch):
    """dtype=float16 trains under a GradScaler (its update runs once a step) and learns; without
    one, small fp16 gradients underflow to zero unnoticed. A resumed run goes on with the saved
    scale (here 2**10, set apart from a fresh scaler's 2**16), not a fresh one."""
    import functools

    import checkpoint
    import train
    from test_train import tiny_args
    scales = []  # the scale each update starts from
    update, init = torch.amp.GradScaler.update, torch.amp.GradScaler.__init__
    monkeypatch.setattr(torch.amp.GradScaler, "update",
                        lambda self, *a, **k: scales.append(self.get_scale()) or update(self, *a, **k))
    out = tmp_path / "fp16"
    args = tiny_args(tiny_data, out, "--max_iters=30", "--eval_interval=30", "--learning_rate=3e-3",
                     "--dtype=float16", "--device=cuda", "--compile=false")
    with monkeypatch.context() as m:
        m.setattr(torch.amp.GradScaler, "__init__", functools.partialmethod(init, init_scale=2.0 ** 10))
        train.train(*train.parse_args(args + ["--stop_after=20"]), quiet=True)
    saved = checkpoint.load_checkpoint(out / "ckpt_last.pt")["scaler"]
    assert saved["scale"] == scales[19] == 2.0 ** 10
    train.train(*train.parse_args(args + ["--init_from=resume"]), quiet=True)
    assert len(scales) == 30 and scales[20] == 2.0 ** 10  # not 2**16
    losses = train_losses(out)
    assert losses[-1] < losses[0] - 0.3, losses


def test_inductor_logit_grads_match_eager():
    """model.LogitGrads as compile_scope='block' compiles it (Inductor's kernels) against eager,
    on bf16 logits of a padded vocabulary with label smoothing and ignored targets: the loss to
    float32 rounding, the bf16 gradient to its rounding, nothing on ignored rows or padding ids."""
    from model import LogitGrads
    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(512, 1024, generator=g)).bfloat16().cuda()
    targets = torch.randint(0, 1000, (512,), generator=g).cuda()
    targets[::7] = -1
    eager = LogitGrads()(logits, targets, 0.1, 1000, torch.bfloat16)
    fused = LogitGrads()
    fused.compile(mode="default")
    loss, grad, n = fused(logits, targets, 0.1, 1000, torch.bfloat16)
    torch.testing.assert_close(loss, eager[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, eager[1], rtol=1.6e-2, atol=1e-5)
    assert n == eager[2] and not grad[::7].any() and not grad[:, 1000:].any()
