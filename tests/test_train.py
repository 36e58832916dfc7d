"""train.py: configuration, schedule, accumulation, exact resume, NaN stop, signals, DDP, metrics."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prepare
import checkpoint
import configurator
import evaluation
import optimizers
import train
from data import Data

ROOT = Path(__file__).resolve().parent.parent


def tiny_args(data_dir, out_dir, *extra):
    return ["--dataset=shakespeare_char", f"--data_dir={data_dir}", f"--out_dir={out_dir}", "--n_layer=2",
            "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=8", "--max_iters=20",
            "--warmup_iters=2", "--eval_interval=10", "--eval_batch_size=64", "--device=cpu",
            "--log_interval=1", *extra]


def run(data_dir, out_dir, *extra):
    cfg, kw = train.parse_args(tiny_args(data_dir, out_dir, *extra))
    return train.train(cfg, kw, quiet=True)


def torchrun(data_dir, out_dir, *extra, nproc=2):
    """train.py in nproc CPU processes (gloo), started as torchrun starts them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "train.py"), *tiny_args(data_dir, out_dir, *extra)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def train_losses(out_dir):
    lines = (Path(out_dir) / "log.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["kind"] == "train"]


# ---- configuration ------------------------------------------------------------------------------


def test_command_line_values_are_coerced():
    cfg, kw = train.parse_args(["--compile=false", "--learning_rate=1", "--max_iters=5e3", "--out_dir=a=b",
                                "--n_layer=3", "--dropout=0.1", "--overwrite"])
    assert cfg.compile is False and cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.max_iters == 5000 and cfg.out_dir == "a=b" and cfg.overwrite is True
    assert kw == {"n_layer": 3, "dropout": 0.1}


def test_config_file_then_command_line(tmp_path):
    conf = tmp_path / "c.py"
    conf.write_text("import math\nn_layer = 2\nlearning_rate = 3e-4\nmax_iters = int(math.sqrt(10000))\n")
    cfg, kw = train.parse_args([str(conf), "--learning_rate=1e-3"])
    assert cfg.learning_rate == 1e-3 and cfg.max_iters == 100 and kw == {"n_layer": 2}


def test_every_problem_in_one_message(tmp_path):
    conf = tmp_path / "c.py"
    conf.write_text("batch_sise = 3\nn_layer = '2'\n")
    with pytest.raises(train.ConfigError) as info:
        train.parse_args([str(conf), "--compile=maybe", "--learning_rate=fast", "--warmup_iters=99999",
                          "--n_embd=30", "--n_head=4", "--pos_encoding=rotary", "--dataset=imagenet", "--max_iters",
                          str(tmp_path / "missing.py")])
    text = str(info.value)
    for expected in ["unknown key 'batch_sise'", "did you mean 'batch_size'?", "n_layer='2'",
                     "compile='maybe' (command line) is not a boolean", "learning_rate='fast'",
                     "warmup_iters=99999 is longer than training (max_iters=5000)",
                     "dataset='imagenet' is not one of", "--max_iters: expected --max_iters=VALUE",
                     "missing.py' not found"]:
        assert expected in text, expected
    with pytest.raises(train.ConfigError, match="n_embd=30 must be divisible by n_head=4"):
        train.parse_args(["--n_embd=30", "--n_head=4"])


def test_cuda_graph_misuse_is_explained(tiny_data, tmp_path, capsys):
    """Bugs caught: a conflicting combination accepted; a config that records graphs (sized for a GPU)
    failing on a CPU instead of running its steps eagerly, as compile=True does there."""
    with pytest.raises(train.ConfigError) as info:
        train.parse_args(["--cuda_graph=true", "--compile_mode=reduce-overhead", "--dataset=sst2", "--dtype=float16"])
    for expected in ["both record CUDA graphs", "dtype='float16'"]:
        assert expected in str(info.value), expected
    cfg, kw = train.parse_args(tiny_args(tiny_data, tmp_path, "--cuda_graph=true", "--max_iters=4",
                                         "--eval_interval=4"))
    result = train.train(cfg, kw)
    assert result["step"] == 4
    assert "note: cuda_graph=True needs a CUDA device; on cpu the steps run without" in capsys.readouterr().out
    train.train(*train.parse_args(tiny_args(tiny_data, tmp_path / "plain", "--max_iters=2")))
    assert "needs a CUDA device" not in capsys.readouterr().out  # no note for what was not asked


def test_help_lists_every_key(capsys):
    assert train.main(["--help"]) == 0
    out = capsys.readouterr().out
    for key in train.TRAIN_KEYS + train.MODEL_KEYS:
        assert f"--{key}=" in out, key
    assert "--learning_rate=1e-3" in out and "peak learning rate" in out


def test_help_headings_and_comments_read_from_the_model_source(capsys):
    """TransformerConfig's help comes from its source comments. Bugs caught: a field's second
    comment line shown as the heading of the next key, a heading of two lines cut to its first, a
    heading lost with the data-set key it stood above (vocab_size), a heading repeated per key."""
    train.main(["--help"])
    lines = [line.split()[0] if line.startswith("  --") else line
             for line in capsys.readouterr().out.splitlines()]
    at = lambda key: lines.index(next(k for k in lines if k.startswith(f"--{key}=")))  # noqa: E731
    after, before = lambda key: lines[at(key) + 1], lambda key: lines[at(key) - 1]  # noqa: E731
    assert before("block_size") == "# shape" and lines.count("# shape") == 1
    assert before("attn_dropout") == ('# finer dropout for small corpora (AWD-LSTM, Merity et al. 2017; '
                                      'Transformer-XL on WikiText-2), -1 meaning "same as dropout"')
    assert after("word_dropout").startswith("--layer_drop=") and after("layer_drop").startswith("--norm_eps=")
    assert after("n_layer").startswith("--n_head=")
    help_of = {line.split()[0]: line.split(None, 1)[1] for line in configurator.help_lines(train.TransformerConfig)
               if line.startswith("  --")}
    assert help_of["--word_dropout=0.0"].endswith("(Gal & Ghahramani 2016), never a window's first token (see embed)")
    assert help_of["--layer_drop=0.0"].endswith("with a rate rising linearly to this at the last layer")


def test_shipped_configs_parse():
    for path in sorted((ROOT / "config").glob("*.py")):
        if not path.name.startswith("study_"):
            train.parse_args([str(path)])


# ---- schedule, accumulation, metrics -----------------------------------------------------------


def test_auto_dtype_asks_for_native_bf16(monkeypatch):
    """Bug caught: dtype='auto' choosing bf16 on a GPU that only emulates it (is_bf16_supported()
    counts emulation unless including_emulation=False)."""
    cuda = torch.device("cuda")

    def gpu(native, emulated=True):
        def is_bf16_supported(including_emulation=True):
            return native or (including_emulation and emulated)
        return is_bf16_supported

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=False))  # a V100 or T4
    assert train.resolve_dtype("auto", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=True))  # an A100 or newer
    assert train.resolve_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # torch < 2.4: no argument
    assert train.resolve_dtype("auto", cuda) == torch.float16
    assert train.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert train.resolve_dtype("float16", cuda) == torch.float16


def test_mfu_peak_by_the_names_cuda_reports(monkeypatch):
    """Dense bf16 peaks from the datasheets, the MFU that PERFORMANCE publishes divides by. Bugs
    caught: a wrong figure, an H100 NVL or PCIe read as the SXM card (989 TFLOP/s), an L40S as an
    L4, a CPU given a peak."""
    cards = {"NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 NVL": 835e12,
             "NVIDIA H100 PCIe": 756e12, "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA L40S": 362e12,
             "NVIDIA L4": 121e12, "NVIDIA A10": 125e12, "Tesla T4": None}
    for name, peak in cards.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, n=name: n)
        assert train.peak_flops(torch.device("cuda")) == peak, name
    assert train.peak_flops(torch.device("cpu")) is None


def test_warmup_then_cosine_schedule():
    cfg = train.TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=110)
    lrs = [train.lr_at(s, cfg) for s in range(111)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[0] > 0
    assert lrs[9] == pytest.approx(1e-3 * 10 / 11)
    assert lrs[10] == pytest.approx(1e-3)  # the peak, right after warmup
    assert lrs[60] == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way down the cosine
    assert lrs[110] == pytest.approx(1e-4)
    assert train.lr_at(130, cfg) == pytest.approx(1e-4)  # past max_iters (a resume with more steps) it stays at min_lr
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert train.lr_at(0, train.TrainConfig(warmup_iters=0)) == pytest.approx(1e-3)


class GradRecorder:
    """An optimizer that keeps the gradients it is given and changes nothing."""

    def __init__(self, params):
        self.params, self.param_groups, self.grads = list(params), [{}], None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_accumulated_gradient_equals_one_large_batch(tiny_data, task):
    """train_step with 4 micro-batches of 4 against one forward and backward over the 16 sequences,
    written out here: the loss, the gradients themselves and the token count. Bugs caught: a missing
    / grad_accum (loss and gradients 4x), a micro-batch skipped or repeated, padding counted as tokens."""
    data = Data("shakespeare_char" if task == "lm" else "trec", tiny_data)
    torch.manual_seed(0)
    model = train.Transformer(train.TransformerConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2,
                                                      n_head=2, n_embd=32, n_classes=data.n_classes,
                                                      causal=task == "lm"))
    cfg = train.TrainConfig(batch_size=4, grad_accum=4, grad_clip=0.0, dataset=data.name)
    batches = train.Batches(data, cfg, 16, torch.device("cpu"), 1)
    recorder = GradRecorder(model.parameters())
    loss, grad_norm, _, tokens, stop = train.train_step(model, model, [recorder], None, batches, 3, cfg)
    micro = [batches.get(3, m, 0) for m in range(4)]
    if task == "lm":
        x, y = (torch.cat([b[i] for b in micro]) for i in (0, 1))
        _, ref = model(x, y)
        n_tokens = 16 * 16
    else:
        pad = lambda t, value: F.pad(t, (0, 16 - t.size(1)), value=value)  # every micro-batch to 16 columns
        x, mask = torch.cat([pad(b[0], data.pad_id) for b in micro]), torch.cat([pad(b[1], 0) for b in micro])
        y = torch.cat([b[2] for b in micro])
        _, ref = model(x, y, attention_mask=mask)
        n_tokens = int(mask.sum())
        assert n_tokens < 16 * 16  # padded batches
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5) and tokens == n_tokens and stop is False
    for p, got in zip(model.parameters(), recorder.grads):
        torch.testing.assert_close(got, p.grad, atol=1e-7, rtol=1e-4)
    assert grad_norm == pytest.approx(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item(), rel=1e-5)


def test_gradients_are_clipped_to_grad_clip_and_the_norm_before_is_logged(tiny_data):
    """Bug caught: grad_clip ignored (or the clipped norm reported)."""
    data = Data("shakespeare_char", tiny_data)
    torch.manual_seed(0)
    model = train.Transformer(train.TransformerConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1,
                                                      n_head=2, n_embd=32))
    cfg = train.TrainConfig(batch_size=4, grad_accum=1, grad_clip=0.01)
    recorder = GradRecorder(model.parameters())
    grad_norm = train.train_step(model, model, [recorder], None, train.Batches(data, cfg, 16, torch.device("cpu"), 1),
                                 0, cfg)[1]
    assert grad_norm > 0.1  # far above the limit...
    assert torch.cat([g.flatten() for g in recorder.grads]).norm().item() == pytest.approx(0.01, rel=1e-4)  # ...cut to it


class EagerGraph:
    """A stand-in for parallel.GraphedStep that runs on the CPU, to its contract: the forward and
    backward passes of one micro-batch, the loss scaled by 1 / grad_accum and returned detached."""

    def __init__(self, model, scale):
        self.model, self.scale = model, scale

    def __call__(self, *batch):
        if len(batch) == 2:  # (x, y)
            _, loss = self.model(batch[0], batch[1], return_logits=False)
        else:  # (x, mask, y)
            _, loss = self.model(batch[0], batch[2], attention_mask=batch[1], return_logits=False)
        loss = loss * self.scale
        loss.backward()
        return loss.detach()


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_a_graphed_step_reports_what_the_eager_step_does(tiny_data, task):
    """train_step through the graphed path (cuda_graph=True; here a stand-in that runs eagerly)
    against the eager path on the same step and weights: the same loss, gradients, gradient norm
    and count of real tokens. Catches, on the graphed path alone: the loss divided by grad_accum
    again (the graph has scaled it already), a classifier's padding counted as tokens."""
    data = Data("shakespeare_char" if task == "lm" else "trec", tiny_data)
    cfg = train.TrainConfig(batch_size=4, grad_accum=3, grad_clip=0.0, dataset=data.name)
    batches = train.Batches(data, cfg, 16, torch.device("cpu"), 1)
    results = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = train.Transformer(train.TransformerConfig(
            vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
            n_classes=data.n_classes, causal=task == "lm"))
        recorder = GradRecorder(model.parameters())
        stand_in = EagerGraph(model, 1 / cfg.grad_accum) if graphed else None
        loss, grad_norm, _, tokens, _ = train.train_step(model, model, [recorder], None, batches, 2,
                                                         cfg, graphed=stand_in)
        results.append((loss, grad_norm, tokens, recorder.grads))
    (loss, grad_norm, tokens, grads), (g_loss, g_grad_norm, g_tokens, g_grads) = results
    if task == "cls":
        assert tokens < 3 * 4 * 16  # the batches are padded
    assert g_tokens == tokens and g_loss == pytest.approx(loss, rel=1e-6)
    assert g_grad_norm == pytest.approx(grad_norm, rel=1e-5)
    for a, b in zip(g_grads, grads):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


def test_exact_evaluation_equals_direct_computation(tiny_data):
    data = Data("shakespeare_char", tiny_data)
    torch.manual_seed(0)
    model = train.Transformer(train.TransformerConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1,
                                                      n_head=2, n_embd=16))
    cfg = train.TrainConfig(eval_batch_size=3)  # several batches and a ragged last one
    metrics = evaluation.evaluate(model, data, "val", cfg, torch.device("cpu"), nullcontext())
    val = torch.from_numpy(np.asarray(data.tokens("val"), dtype=np.int64))
    nats = 0.0
    with torch.no_grad():  # one window at a time, no padding, no batching
        for s in range(0, len(val) - 1, 16):
            x, y = val[s:s + 16][None], val[s + 1:s + 17][None]
            x = x[:, : y.size(1)]
            nats += F.cross_entropy(model(x)[0][0], y[0], reduction="sum").item()
    assert metrics["tokens"] == len(val) - 1
    assert metrics["loss"] == pytest.approx(nats / (len(val) - 1), rel=1e-6)
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / math.log(2), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


class _Stream:
    """A stand-in token-stream data set (task lm or mlm) of word ids; its split comes from a
    patched split_on_device."""

    def __init__(self, task, vocab_size):
        self.task, self.vocab_size, self.mask_id = task, vocab_size, 3
        self.meta = {"tokenizer": {"kind": "word"}}


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_evaluation_sharded_over_processes_adds_up_to_the_one_process_figure(monkeypatch, task):
    """evaluate() as rank 0 and rank 1 of 2 processes, each process's sums kept apart (the
    all-reduce left out): the two shares of targets and of summed loss add up to the figures of
    one process, and each process scores some. Catches: every process scoring the same batches
    (`i % world == rank` -> `i % world == 0`: some targets counted twice, others never), and a
    masked LM's masks drawn only for the process's own batches (its generator then falls out of
    step, and the masks, so the figure, depend on the number of processes)."""
    torch.manual_seed(0)
    model = train.Transformer(train.TransformerConfig(vocab_size=40, block_size=8, n_layer=1,
                                                      n_head=2, n_embd=16, causal=task == "lm",
                                                      mlm=task == "mlm"))
    tokens = torch.randint(4, 40, (203,), generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(evaluation, "split_on_device", lambda data, split, device: tokens)
    monkeypatch.setattr(evaluation, "all_reduce", lambda tensor, world: None)
    cfg = train.TrainConfig(eval_batch_size=2)  # 13 batches of 2 windows of 8 targets
    args = (model, _Stream(task, 40), "val", cfg, torch.device("cpu"), nullcontext())
    one = evaluation.evaluate(*args)
    shares = [evaluation.evaluate(*args, rank=rank, world=2) for rank in (0, 1)]
    assert all(share["tokens"] > 0 for share in shares)
    assert sum(share["tokens"] for share in shares) == one["tokens"]
    nats = sum(share["loss"] * share["tokens"] for share in shares)
    assert nats == pytest.approx(one["loss"] * one["tokens"], rel=1e-6)


def test_classification_metrics_by_hand():
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    m = evaluation.classification_metrics(pred, true, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 1, R 2/3, F1 0.8;  b: P 1/2, R 1/2, F1 0.5;  c: P 1/2, R 1, F1 2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # a fourth class that neither occurs nor is predicted is left out of the macro average (bug caught:
    # counting it as F1 0); a fifth that is predicted but never occurs counts, with F1 0
    m = evaluation.classification_metrics(pred + [4], true + [0], ["a", "b", "c", "d", "e"])
    # a: P 1, R 2/4, F1 2/3;  b, c as above;  e: P 0, R 0/0 -> F1 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3 + 0.0) / 4)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # each class predicted or present once: no count of 1 taken for "none"
    m = evaluation.classification_metrics([0, 1, 1], [0, 1, 2], ["a", "b", "c"])
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # c occurs once, never predicted: in, at 0
    m = evaluation.classification_metrics([0, 2], [0, 1], ["a", "b", "c"])  # c predicted once, never occurs
    assert m["macro_f1"] == pytest.approx(1 / 3) and m["accuracy"] == 0.5
    assert evaluation.classification_metrics([1], [1], ["a", "b"])["accuracy"] == 1.0  # one example


class _SumClassifier(torch.nn.Module):
    """A stand-in classifier whose prediction is the sum of an example's real tokens mod k: known
    in advance for every example, and different from one example to the next."""

    def __init__(self, k, block_size):
        super().__init__()
        self.k, self.config = k, SimpleNamespace(block_size=block_size)

    def forward(self, x, attention_mask):
        return F.one_hot((x * attention_mask).sum(1) % self.k, self.k).float() * 5, None


def test_classifier_evaluation_over_several_batches_keeps_each_prediction_with_its_label(tiny_data):
    """trec's 12 test questions in batches of 5 (and a ragged last one): the confusion matrix and
    the loss are those of each example's own prediction. Bug caught: the batches' predictions
    joined out of order (torch.cat of a rotated or reordered list), so predictions meet the labels
    of other examples; one batch (the usual eval_batch_size) cannot show it."""
    data = Data("trec", tiny_data)
    tokens, offsets, labels = data.examples("test")
    k, block = len(data.label_names), 32
    preds = [int(np.asarray(tokens[offsets[i]:offsets[i + 1]][:block]).sum()) % k
             for i in range(len(labels))]
    assert len(set(preds)) > 1 and len(labels) > 10  # else any order would give the same figures
    cfg = train.TrainConfig(eval_batch_size=5)
    m = evaluation.evaluate(_SumClassifier(k, block), data, "test", cfg, torch.device("cpu"),
                            nullcontext())
    expected = evaluation.classification_metrics(preds, labels, data.label_names)
    assert {key: m[key] for key in expected} == expected
    logits = F.one_hot(torch.tensor(preds), k).float() * 5
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, torch.as_tensor(labels)).item())


def test_classification_metrics_of_no_examples_are_zeros_not_nan():
    """No examples (an empty shard or split): every figure 0, as a 0/0 precision or recall is.
    Bug caught: accuracy divided by len(true) without max(1, ...): NaN."""
    m = evaluation.classification_metrics([], [], ["a", "b"])
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0 and m["confusion"] == [[0, 0], [0, 0]]


# ---- runs ------------------------------------------------------------------------------------------


def test_training_reduces_loss_and_writes_its_files(tiny_data, tmp_path):
    result = run(tiny_data, tmp_path / "r", "--max_iters=60", "--eval_interval=30", "--learning_rate=3e-3")
    out = tmp_path / "r"
    for name in ("ckpt_last.pt", "ckpt_best.pt", "config.json", "log.jsonl", "metrics.json"):
        assert (out / name).exists(), name
    losses = [loss for _, loss in train_losses(out)]
    assert losses[-1] < losses[0] - 0.5
    assert result["loss"] < math.log(48) and result["step"] == 60
    evals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [30, 60]
    saved = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert saved["config"]["model"]["n_layer"] == 2 and saved["data"]["name"] == "shakespeare_char"
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in saved["model"])


def test_resume_is_bit_exact(tiny_data, tmp_path):
    args = ("--max_iters=20", "--eval_interval=5", "--dropout=0.1")  # dropout: the RNG state matters too
    run(tiny_data, tmp_path / "full", *args)
    run(tiny_data, tmp_path / "split", *args, "--stop_after=7")  # stops between evaluations
    assert torch.load(tmp_path / "split" / "ckpt_last.pt", weights_only=True)["step"] == 7
    run(tiny_data, tmp_path / "split", *args, "--init_from=resume")
    assert train_losses(tmp_path / "full") == train_losses(tmp_path / "split")
    a, b = weights(tmp_path / "full" / "ckpt_last.pt"), weights(tmp_path / "split" / "ckpt_last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_crash_logs_every_record_once(tiny_data, tmp_path, monkeypatch):
    """A crash at step 12, the last checkpoint at step 10, then resume. Bug caught: log records of the
    checkpoint's step kept on resume, so the training record of step 10 appears twice."""
    args = ("--max_iters=20", "--eval_interval=5")
    run(tiny_data, tmp_path / "full", *args)
    step_once = train.train_step

    def crash_at_12(*a, **kw):
        if a[5] == 12:  # step
            raise RuntimeError("power cut")
        return step_once(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(train, "train_step", crash_at_12)
        with pytest.raises(RuntimeError, match="power cut"):
            run(tiny_data, tmp_path / "split", *args)
    assert torch.load(tmp_path / "split" / "ckpt_last.pt", weights_only=True)["step"] == 10
    run(tiny_data, tmp_path / "split", *args, "--init_from=resume")
    records = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in records if r["kind"] != "startup"]
    assert sorted(keys) == sorted([("train", s) for s in range(20)] + [("eval", s) for s in (5, 10, 15, 20)])
    assert [r["step"] for r in records if r["kind"] == "startup"] == [0, 10]  # one per process, at its start
    assert train_losses(tmp_path / "split") == train_losses(tmp_path / "full")


def test_non_finite_loss_stops_before_the_step_and_keeps_the_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "r"
    run(tiny_data, out, "--max_iters=10", "--eval_interval=10")
    before = (out / "ckpt_last.pt").read_bytes()
    with pytest.raises(train.Stop) as info:
        run(tiny_data, out, "--max_iters=40", "--eval_interval=10", "--learning_rate=1e30", "--min_lr=1e30",
            "--warmup_iters=0", "--grad_clip=0", "--init_from=resume")
    message = str(info.value)
    assert "non-finite" in message and "at step 1" in message and str(out / "ckpt_last.pt") in message
    assert (out / "ckpt_last.pt").read_bytes() == before


def test_fresh_run_refuses_an_out_dir_with_a_run(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", "--max_iters=2", "--eval_interval=2")
    with pytest.raises(train.ConfigError, match="already holds a run.*--init_from=resume.*--overwrite=true"):
        run(tiny_data, tmp_path / "r", "--max_iters=2", "--eval_interval=2")
    run(tiny_data, tmp_path / "r", "--max_iters=2", "--eval_interval=2", "--overwrite=true")


def test_corrupt_checkpoint_is_named(tiny_data, tmp_path):
    out = tmp_path / "r"
    run(tiny_data, out, "--max_iters=2", "--eval_interval=2")
    data = (out / "ckpt_last.pt").read_bytes()
    (out / "ckpt_last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"ckpt_last.pt is corrupt or truncated"):
        run(tiny_data, out, "--max_iters=4", "--init_from=resume")


def test_a_checkpoint_holding_code_is_not_run(tmp_path):
    """torch.load(weights_only=True): a file that pickles an arbitrary object (here one whose
    unpickling would call a function) is refused, not executed; a checkpoint downloaded from
    elsewhere cannot run code on load."""
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    torch.save({"model": {}, "payload": Payload()}, tmp_path / "ckpt.pt")
    with pytest.raises(checkpoint.CheckpointError, match="cannot be loaded"):
        checkpoint.load_checkpoint(tmp_path / "ckpt.pt")
    assert not ran.exists()


def test_resume_with_another_model_is_refused(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", "--max_iters=2", "--eval_interval=2")
    with pytest.raises(train.ConfigError, match="n_layer=2 there, 3 here"):
        run(tiny_data, tmp_path / "r", "--max_iters=4", "--init_from=resume", "--n_layer=3")


def test_resume_may_change_how_the_model_computes(tiny_data, tmp_path):
    run(tiny_data, tmp_path / "r", "--max_iters=2", "--eval_interval=2")
    run(tiny_data, tmp_path / "r", "--max_iters=4", "--eval_interval=2", "--init_from=resume", "--attention=manual")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["attention"] == "manual"


def test_classifier_and_eval_only(tiny_data, tmp_path, capsys):
    out = tmp_path / "cls"
    args = ["--dataset=trec", "--causal=false", "--block_size=32", "--max_iters=30", "--eval_interval=10",
            "--learning_rate=3e-3"]
    run(tiny_data, out, *args)
    cfg, kw = train.parse_args(tiny_args(tiny_data, out, *args, "--eval_only=true", "--eval_split=test"))
    capsys.readouterr()
    train.train(cfg, kw, quiet=False)
    saved = json.loads((out / "metrics_test.json").read_text())
    said = capsys.readouterr().out  # the scores on the screen, not only in the file
    assert f"test: {evaluation.headline(saved)} (step {saved['step']}) -> {out / 'metrics_test.json'}" in said
    assert json.loads((out / "metrics.json").read_text())["split"] == "val"  # the training result is kept
    # the same numbers by hand: the best checkpoint, one unpadded question at a time (bugs caught: the
    # wrong checkpoint or split evaluated, padding leaking into the prediction, a confusion matrix transposed)
    model = checkpoint.model_from_checkpoint(torch.load(out / "ckpt_best.pt", weights_only=True)).eval()
    tokens, offsets, labels = Data("trec", tiny_data).examples("test")
    confusion, nats = np.zeros((6, 6), dtype=int), 0.0
    with torch.no_grad():
        for i, label in enumerate(labels):
            logits, _ = model(torch.as_tensor(np.asarray(tokens[offsets[i]:offsets[i + 1]][:32], dtype=np.int64))[None])
            confusion[label, int(logits.argmax())] += 1
            nats += F.cross_entropy(logits, torch.tensor([int(label)])).item()
    assert saved["split"] == "test" and saved["confusion"] == confusion.tolist() and len(labels) == 12
    assert saved["accuracy"] == pytest.approx(np.trace(confusion) / 12)
    assert saved["loss"] == pytest.approx(nats / 12, rel=1e-5)


def test_missing_data_is_prepared_or_explained(tiny_data, tmp_path, monkeypatch):
    calls = []

    def fake_prepare(name, source=None, data_dir="data", quiet=False, force=False):
        calls.append(name)
        raise prepare.DataError("could not download https://example.invalid/input.txt: no network")

    monkeypatch.setattr(prepare, "prepare", fake_prepare)
    with pytest.raises(prepare.DataError, match=r"python prepare.py shakespeare_char --data_dir .* --source PATH"):
        run(tmp_path / "empty", tmp_path / "r")
    assert calls == ["shakespeare_char"]


# ---- processes -------------------------------------------------------------------------------------


def test_sigterm_saves_and_exits_cleanly(tiny_data, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, str(ROOT / "train.py"), *tiny_args(tiny_data, out, "--max_iters=100000",
                                                              "--eval_interval=100000", "--warmup_iters=0")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (out / "log.jsonl").exists() or len(train_losses(out)) < 3:
        assert proc.poll() is None and time.time() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "stopped at step" in output
    step = torch.load(out / "ckpt_last.pt", weights_only=True)["step"]
    assert step >= 3


def ddp(tiny_data, out, *extra, prelude="", background=False):
    """train.py in 2 gloo processes under torchrun; prelude is code run in each before train.main."""
    script = out.parent / f"{out.name}_launch.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport train\n{prelude}\n"
                      f"train.exit_process(train.main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           *tiny_args(tiny_data, out, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def train_records(out_dir):
    lines = (Path(out_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_two_processes_equal_one_process_with_accumulation(tiny_data, tmp_path, monkeypatch):
    """2 processes x 2 micro-batches (DDP's no_sync path) train like 1 process x 4. Bugs caught: a wrong
    no_sync or / grad_accum (gradient norms differ), rank 0's share of the loss logged as the loss,
    tokens/s counted for one process, MFU multiplied by the number of processes."""
    common = ["--max_iters=4", "--eval_interval=4", "--batch_size=4"]
    ddp(tiny_data, tmp_path / "ddp", *common, "--grad_accum=2", prelude="train.peak_flops = lambda device: 1e12")
    monkeypatch.setattr(train, "peak_flops", lambda device: 1e12)  # a made-up GPU, so that MFU is logged
    run(tiny_data, tmp_path / "one", *common, "--grad_accum=4")
    a, b = train_records(tmp_path / "ddp"), train_records(tmp_path / "one")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-5)
        for r in (ra, rb):  # every step trains on 4 x 4 sequences of 16 tokens, in both runs
            assert r["tokens_per_s"] * r["ms_per_step"] / 1000 == pytest.approx(4 * 4 * 16)
        # MFU per GPU: at equal tokens/s, two processes reach half the MFU of one
        assert ra["mfu"] / ra["tokens_per_s"] == pytest.approx(rb["mfu"] / rb["tokens_per_s"] / 2)
    wa, wb = weights(tmp_path / "ddp" / "ckpt_last.pt"), weights(tmp_path / "one" / "ckpt_last.pt")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=0, msg=name)
    ddp_eval = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["loss"]
    assert ddp_eval == pytest.approx(json.loads((tmp_path / "one" / "metrics.json").read_text())["loss"], rel=1e-6)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_with_dropout_resumes_as_the_uninterrupted_run(tiny_data, tmp_path):
    """2 processes with dropout, stopped at step 3 and resumed, log the uninterrupted run's losses
    and end in its weights. Bug caught: every process reseeded (seed + rank) on resume, so the
    steps after a resume drew the dropout masks of the run's first steps again."""
    common = ("--max_iters=6", "--eval_interval=6", "--batch_size=4", "--dropout=0.2")
    ddp(tiny_data, tmp_path / "full", *common)
    ddp(tiny_data, tmp_path / "split", *common, "--stop_after=3")
    assert len(torch.load(tmp_path / "split" / "ckpt_last.pt", weights_only=True)["rng_ranks"]) == 2
    ddp(tiny_data, tmp_path / "split", *common, "--init_from=resume")
    assert train_losses(tmp_path / "full") == train_losses(tmp_path / "split")
    a, b = weights(tmp_path / "full" / "ckpt_last.pt"), weights(tmp_path / "split" / "ckpt_last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_processes_that_score_differently_still_save_one_best_checkpoint(tiny_data, tmp_path):
    """Rank 1 made to score worse at each evaluation: ckpt_best.pt is still saved at rank 0's best
    step, and the run ends. Bug caught: each process deciding on its own whether the evaluation
    improved, so that one entered the checkpoint's collective (its random generators are gathered
    from every process) and the other did not: a hang (a classifier's processes each score the
    whole split, and nothing makes their figures agree)."""
    prelude = ("_evaluate, _calls = train.evaluate, []\n"
               "def evaluate(*a, **k):\n"
               "    m = _evaluate(*a, **k)\n"
               "    _calls.append(1)\n"
               "    return {**m, 'loss': m['loss'] + 100 * len(_calls)} if os.environ['RANK'] == '1' else m\n"
               "train.evaluate = evaluate")
    out = tmp_path / "r"
    ddp(tiny_data, out, "--max_iters=6", "--eval_interval=2", "--learning_rate=3e-3", prelude=prelude)
    evals = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["loss"])["step"]
    assert best > 2  # rank 0 improved after the first evaluation, where rank 1 did not
    assert torch.load(out / "ckpt_best.pt", weights_only=True)["step"] == best


def test_each_process_resumes_its_own_random_state_or_says_why_not():
    """restore_rng: with several processes, rank r takes the r-th saved state; a checkpoint saved
    by another number of processes leaves each its seed + rank, and says so (bugs caught: rank 0's
    state given to every process, so all drew the same masks; an index past the saved states)."""
    def state(seed):
        torch.manual_seed(seed)
        return {"torch": torch.get_rng_state(), "device": None}
    saved = [state(10), state(11)]
    said = []
    run = SimpleNamespace(world=2, rank=1, device=torch.device("cpu"), say=said.append,
                          ckpt_path="out/ckpt_last.pt")
    train.restore_rng(run, {"rng": {**saved[0], "cuda": []}, "rng_ranks": saved})
    assert torch.equal(torch.get_rng_state(), saved[1]["torch"]) and not said
    torch.manual_seed(12)
    mine = torch.get_rng_state()
    train.restore_rng(run, {"rng": {**saved[0], "cuda": []}})  # saved by one process
    assert torch.equal(torch.get_rng_state(), mine)
    assert len(said) == 1 and "holds one process's generators, and 2 resume it" in said[0]
    train.restore_rng(run, {"rng": {**saved[0], "cuda": []}, "rng_ranks": saved * 2})
    assert torch.equal(torch.get_rng_state(), mine) and "saved by 4 processes" in said[1]
    train.restore_rng(SimpleNamespace(world=1, rank=0, device=torch.device("cpu")),
                      {"rng": {**saved[1], "cuda": []}, "rng_ranks": saved})  # "rng": rank 0's
    assert torch.equal(torch.get_rng_state(), saved[1]["torch"])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_signal_to_one_process_stops_both_at_the_same_step(tiny_data, tmp_path):
    """SIGTERM to rank 1 only. Bug caught: each process deciding on its own signal flag, so that
    rank 0 trains on alone and hangs (or fails) in the next all-reduce."""
    out = tmp_path / "r"
    prelude = (f"open(os.path.join({str(tmp_path)!r}, 'pid' + os.environ['RANK']), 'w').write(str(os.getpid()))\n"
               "_train = train.train\n"
               "def train_and_say(cfg, kw, quiet=False):\n"
               "    result = _train(cfg, kw, quiet)\n"
               "    print(f\"rank {os.environ['RANK']} ended at step {result['step']}\", flush=True)\n"
               "    return result\n"
               "train.train = train_and_say")
    proc = ddp(tiny_data, out, "--max_iters=100000", "--eval_interval=100000", "--warmup_iters=0",
               prelude=prelude, background=True)
    try:
        deadline = time.time() + 120
        while not (out / "log.jsonl").exists() or len(train_losses(out)) < 3 or not (tmp_path / "pid1").exists():
            assert proc.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.2)
        os.kill(int((tmp_path / "pid1").read_text()), signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a hang: the launcher's group, then its workers, which may
            os.killpg(proc.pid, signal.SIGKILL)  # have a group of their own (each still running
            for pid in tmp_path.glob("pid*"):    # this test's script: not a reused pid)
                try:
                    if str(tmp_path).encode() in Path(f"/proc/{pid.read_text()}/cmdline").read_bytes():
                        os.kill(int(pid.read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            proc.communicate()
    assert proc.returncode == 0, output
    step = torch.load(out / "ckpt_last.pt", weights_only=True)["step"]
    assert f"stopped at step {step} (signal)" in output
    assert f"rank 0 ended at step {step}" in output and f"rank 1 ended at step {step}" in output, output


def test_checkpoints_at_the_end_only(tiny_data, tmp_path):
    out = tmp_path / "r"
    run(tiny_data, out, "--max_iters=10", "--eval_interval=5", "--save_checkpoints=false")
    assert torch.load(out / "ckpt_last.pt", weights_only=True)["step"] == 10
    assert not (out / "ckpt_best.pt").exists()


def test_stop_at_loss_stops_at_the_first_evaluation_below(tiny_data, tmp_path):
    out = tmp_path / "r"
    result = run(tiny_data, out, "--max_iters=200", "--eval_interval=10", "--learning_rate=3e-3",
                 "--stop_at_loss=3.2")
    evals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals[-1]["loss"] <= 3.2 and all(e["loss"] > 3.2 for e in evals[:-1])
    assert result["step"] == evals[-1]["step"] < 200 and "unix_time" in evals[-1]


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_is_torch_muon_with_q_k_v_orthogonalised_apart():
    """Against torch.optim.Muon: equal on a plain matrix, and on c_attn equal to three torch Muons, one
    per (C, C) block. Bug caught: the fused QKV matrix orthogonalised as one (3C, C) matrix."""
    g = torch.Generator().manual_seed(0)
    C = 16
    w, qkv = torch.randn(4 * C, C, generator=g), torch.randn(3 * C, C, generator=g)
    grads = [(torch.randn(4 * C, C, generator=g), torch.randn(3 * C, C, generator=g)) for _ in range(3)]
    hyper = dict(lr=0.02, weight_decay=0.1, momentum=0.9)
    ours = [w.clone().requires_grad_(), qkv.clone().requires_grad_()]
    opt = optimizers.Muon(ours, blocks={ours[1]: 3}, **hyper)
    ref = [w.clone().requires_grad_()] + [b.clone().requires_grad_() for b in qkv.chunk(3)]
    ref_opt = torch.optim.Muon(ref, adjust_lr_fn="match_rms_adamw", **hyper)
    for gw, gq in grads:  # three steps: the momentum buffers matter too
        ours[0].grad, ours[1].grad = gw.clone(), gq.clone()
        for p, grad in zip(ref, [gw, *gq.chunk(3)]):
            p.grad = grad.clone()
        opt.step()
        ref_opt.step()
    torch.testing.assert_close(ours[0], ref[0], atol=0, rtol=0)
    torch.testing.assert_close(ours[1], torch.cat(ref[1:]), atol=0, rtol=0)
    model = train.Transformer(train.TransformerConfig(vocab_size=8, block_size=4, n_layer=2, n_head=2, n_embd=8))
    muon = train.make_optimizers(model, train.TrainConfig(optimizer="muon"), torch.device("cpu"))[1]
    assert {id(p): k for p, k in muon.blocks.items()} == {id(b.attn.c_attn.weight): 3 for b in model.transformer.h}


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_on_a_wide_matrix_is_torch_muon():
    """A (C, 4C) matrix, as the MLP's c_proj: the learning rate is scaled by sqrt(4C), the longer
    side, as torch.optim.Muon scales it. Bug caught: the scale taken from the rows (shape[0]),
    which only a matrix wider than tall shows."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 64, generator=g)
    hyper = dict(lr=0.02, weight_decay=0.1, momentum=0.9)
    ours, ref = w.clone().requires_grad_(), w.clone().requires_grad_()
    opts = (optimizers.Muon([ours], blocks={}, **hyper),
            torch.optim.Muon([ref], adjust_lr_fn="match_rms_adamw", **hyper))
    for grad in torch.randn(2, 16, 64, generator=g):
        for p, opt in zip((ours, ref), opts):
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_trains_and_resumes_only_with_muon(tiny_data, tmp_path):
    out = tmp_path / "r"
    run(tiny_data, out, "--max_iters=4", "--eval_interval=4", "--optimizer=muon")
    saved = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert len(saved["optimizers"]) == 2  # AdamW for embeddings and gains, Muon for the blocks' matrices
    muon_state = saved["optimizers"][1]["state"]
    assert len(muon_state) == 2 * 4  # 2 layers x (c_attn, attn.c_proj, c_fc, mlp.c_proj)
    with pytest.raises(train.ConfigError, match="another optimizer"):
        run(tiny_data, out, "--max_iters=8", "--init_from=resume", "--optimizer=adamw")


def test_muon_takes_the_configured_momentum_weight_decay_and_learning_rate():
    """make_optimizers gives Muon cfg.muon_momentum, cfg.weight_decay and cfg.learning_rate, none
    of them at its default. Catches: a momentum fixed at the default 0.95, so that
    --muon_momentum changes nothing."""
    model = train.Transformer(train.TransformerConfig(vocab_size=8, block_size=4, n_layer=2,
                                                      n_head=2, n_embd=8))
    cfg = train.TrainConfig(optimizer="muon", muon_momentum=0.8, weight_decay=0.05,
                            learning_rate=2e-3)
    muon = train.make_optimizers(model, cfg, torch.device("cpu"))[1]
    assert [(g["momentum"], g["weight_decay"], g["lr"]) for g in muon.param_groups] == [
        (0.8, 0.05, 2e-3)]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_layer_lr_decay_scales_each_layer_down_from_the_head(tiny_data, optimizer):
    """layer_lr_decay=0.5 on 2 layers: head and final norm at the learning rate, block 1 at half,
    block 0 at a quarter, the embeddings at an eighth, for every parameter, in every optimizer, as
    train_step sets them; 1 (the default) keeps the two plain groups of older checkpoints.
    Bugs caught: the scale counted from the input (the embeddings fastest), a parameter left out of
    the split, or the scale never applied (every group at the learning rate)."""
    model = train.Transformer(train.TransformerConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2,
                                                      n_embd=16, pos_encoding="learned"))
    cfg = train.TrainConfig(layer_lr_decay=0.5, optimizer=optimizer, learning_rate=1e-3, min_lr=1e-3,
                            warmup_iters=0, max_iters=10)
    opts = train.make_optimizers(model, cfg, torch.device("cpu"))

    class One:
        task = "lm"

        def get(self, step, micro, rank):
            x = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(0))
            return x, x

    train.train_step(model, model, opts, None, One(), 3, cfg)
    lr_of = {p: g["lr"] for opt in opts for g in opt.param_groups for p in g["params"]}
    want = {"transformer.wte.weight": 1 / 8, "transformer.wpe.weight": 1 / 8,
            "transformer.h.0.attn.c_attn.weight": 1 / 4, "transformer.h.0.ln_1.bias": 1 / 4,
            "transformer.h.1.mlp.c_proj.weight": 1 / 2, "transformer.ln_f.weight": 1.0}
    named = dict(model.named_parameters())
    in_groups = [p for opt in opts for g in opt.param_groups for p in g["params"]]
    assert len(in_groups) == len(named) and len(set(in_groups)) == len(named)  # each in one group
    for name, scale in want.items():
        assert lr_of[named[name]] == pytest.approx(1e-3 * scale), name
    plain = train.make_optimizers(model, train.TrainConfig(optimizer=optimizer), torch.device("cpu"))
    assert [len(o.param_groups) for o in plain] == ([2] if optimizer == "adamw" else [2, 1])
    assert all("lr_scale" not in g for o in plain for g in o.param_groups)
    with pytest.raises(train.ConfigError, match=r"layer_lr_decay=0.0 must be in \(0, 1\]"):
        train.parse_args(["--layer_lr_decay=0"])


def test_config_json_keeps_the_software_of_every_part_of_a_run(tiny_data, tmp_path, monkeypatch):
    """config.json names the torch and Python versions; a run resumed on another torch keeps the
    first one too. Bug caught: a resume overwriting the versions the run began with."""
    run(tiny_data, tmp_path, "--max_iters=2", "--eval_interval=2")
    saved = json.loads((tmp_path / "config.json").read_text())["software"]
    assert saved["torch"] == torch.__version__ and saved["python"] == sys.version.split()[0]
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    run(tiny_data, tmp_path, "--max_iters=4", "--eval_interval=2", "--init_from=resume")
    again = json.loads((tmp_path / "config.json").read_text())["software"]
    assert again["torch"] == f"{saved['torch']}, then 9.9.9" and again["python"] == saved["python"]


def test_a_resume_keeps_the_layer_lr_decay(tiny_data, tmp_path):
    """Another decay splits the parameters into other groups: refused with the value to keep, not a
    traceback from the optimizer's state."""
    run(tiny_data, tmp_path, "--max_iters=4", "--eval_interval=4", "--layer_lr_decay=0.8")
    with pytest.raises(train.ConfigError, match="keep --layer_lr_decay=0.8 to resume it"):
        run(tiny_data, tmp_path, "--max_iters=8", "--eval_interval=4", "--init_from=resume")
    with pytest.raises(train.ConfigError, match="keep --layer_lr_decay=0.8 to resume it"):
        run(tiny_data, tmp_path, "--max_iters=8", "--eval_interval=4", "--init_from=resume",
            "--layer_lr_decay=0.5")  # the same groups, other scales: the saved ones would win
    run(tiny_data, tmp_path, "--max_iters=8", "--eval_interval=4", "--init_from=resume", "--layer_lr_decay=0.8")


def _adamw_pair(seed=0):
    """Two copies of the same parameters: a decayed matrix, an undecayed vector and a matrix that
    gets no gradient at some steps."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (3, 4)]
    base = [torch.randn(s, generator=g) for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(4)]
    copies = [[t.clone().requires_grad_() for t in base] for _ in range(2)]
    groups = [[{"params": [c[0], c[2]], "weight_decay": 0.1}, {"params": [c[1]], "weight_decay": 0.0}]
              for c in copies]
    return copies, groups, grads


def _adamw_steps(opt, params, grads):
    for i, step_grads in enumerate(grads):
        for j, (p, grad) in enumerate(zip(params, step_grads)):
            p.grad = None if (j == 2 and i % 2) else grad.clone()  # the third one skips odd steps
        opt.step()
        opt.zero_grad()


def test_adamw_is_torch_fused_adamw_bit_for_bit():
    """Our AdamW (no torch.optim.Optimizer) against torch.optim.AdamW(fused=True), 4 steps, two groups,
    a parameter without a gradient at every other step, a learning rate changed between steps. Bugs
    caught: a wrong bias correction or step count, decay applied to the no-decay group, a skipped
    parameter's step counted anyway, the betas swapped (a configured eps: the next test)."""
    (ours, ref), (ours_groups, ref_groups), grads = _adamw_pair()
    opt = optimizers.AdamW(ours_groups, lr=1e-2, betas=(0.8, 0.95))
    ref_opt = torch.optim.AdamW(ref_groups, lr=1e-2, betas=(0.8, 0.95), fused=True)
    for o in (opt, ref_opt):
        _adamw_steps(o, ours if o is opt else ref, grads[:2])
        for group in o.param_groups:
            group["lr"] = 3e-3
        _adamw_steps(o, ours if o is opt else ref, grads[2:])
    for a, b in zip(ours, ref):
        assert not torch.equal(a, b.detach() * 0)  # they moved
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert [float(opt.state[p]["step"]) for p in ours] == [4.0, 4.0, 2.0]


def test_adamw_defaults_are_torchs():
    """Constructed with a learning rate only, as torch.optim.AdamW is: the same betas, eps and
    weight decay (0.01), so the same weights after a few steps."""
    torch.manual_seed(0)
    p, grads = torch.randn(5, 3), [torch.randn(5, 3) for _ in range(3)]
    ours, ref = p.clone().requires_grad_(), p.clone().requires_grad_()
    for opt, param in ((optimizers.AdamW([ours], lr=0.1), ours),
                       (torch.optim.AdamW([ref], lr=0.1, fused=True), ref)):
        for g in grads:
            param.grad = g.clone()
            opt.step()
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)


def test_adamw_takes_its_eps_as_torch_does():
    """eps=0.1 (far from the default 1e-8, so it shows in the update) gives torch's weights bit for
    bit. Bug caught: the fused call's eps hard-wired to the default, not the group's."""
    (ours, ref), (ours_groups, ref_groups), grads = _adamw_pair(2)
    for opt, params in ((optimizers.AdamW(ours_groups, lr=1e-2, eps=0.1), ours),
                        (torch.optim.AdamW(ref_groups, lr=1e-2, eps=0.1, fused=True), ref)):
        _adamw_steps(opt, params, grads)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_adamw_state_takes_its_parameters_dtype_but_the_step_stays_float32():
    """A state saved beside fp32 weights loaded for fp64 ones (as one saved on a GPU is loaded for
    the CPU): the moments take the parameter's dtype, which the fused kernel requires, and the step
    count stays float32 as torch.optim keeps it."""
    p32 = torch.randn(4, 3, requires_grad=True)
    saved = optimizers.AdamW([p32], lr=0.1)
    p32.grad = torch.randn(4, 3)
    saved.step()
    p64 = p32.detach().double().requires_grad_()
    opt = optimizers.AdamW([p64], lr=0.1)
    opt.load_state_dict(saved.state_dict())
    state = opt.state[p64]
    assert (state["exp_avg"].dtype, state["exp_avg_sq"].dtype, state["step"].dtype) == (
        torch.float64, torch.float64, torch.float32)
    p64.grad = torch.randn(4, 3, dtype=torch.float64)
    opt.step()
    assert float(state["step"]) == 2.0


def test_adamw_state_dict_loads_into_torch_adamw_and_back():
    """Two steps in one optimizer, its state dict loaded into the other kind, two more steps: the same
    weights as four steps in one torch.optim.AdamW. Bugs caught: state keyed by something other than
    the parameter's position, the step count or the moments not restored, the saved hyperparameters
    ignored."""
    (a, b), (ga, gb), grads = _adamw_pair(1)
    (ref, _), (gref, _), _ = _adamw_pair(1)
    ref_opt = torch.optim.AdamW(gref, lr=1e-2, fused=True)
    _adamw_steps(ref_opt, ref, grads)
    for first, second in ((optimizers.AdamW, torch.optim.AdamW), (torch.optim.AdamW, optimizers.AdamW)):
        (a, b), (ga, gb), _ = _adamw_pair(1)
        kw = [{"fused": True} if cls is torch.optim.AdamW else {} for cls in (first, second)]
        opt1 = first(ga, lr=1e-2, **kw[0])
        _adamw_steps(opt1, a, grads[:2])
        with torch.no_grad():
            for p, q in zip(b, a):
                p.copy_(q)
        opt2 = second(gb, lr=0.5, **kw[1])  # the saved lr (1e-2) must win, as in torch.optim
        opt2.load_state_dict(opt1.state_dict())
        _adamw_steps(opt2, b, grads[2:])
        for p, q in zip(b, ref):
            torch.testing.assert_close(p, q, atol=0, rtol=0)
    with pytest.raises(ValueError, match="groups of sizes"):
        optimizers.AdamW([torch.zeros(2, requires_grad=True)], lr=1).load_state_dict(opt1.state_dict())


def test_optimizer_state_of_other_group_sizes_is_refused():
    """Groups of 2 and 1 parameters saved, loaded into groups of 1 and 2 (as many groups and
    parameters, another split): a ValueError, not one group's moments given to the other's
    parameters. Bug caught: only the number of groups compared."""
    w = [torch.zeros(2, requires_grad=True) for _ in range(3)]
    saved = optimizers.AdamW([{"params": w[:2]}, {"params": w[2:]}], lr=1).state_dict()
    with pytest.raises(ValueError, match="groups of sizes"):
        optimizers.AdamW([{"params": w[:1]}, {"params": w[1:]}], lr=1).load_state_dict(saved)


def test_a_loaded_optimizer_state_brings_every_saved_hyperparameter():
    """load_state_dict gives each group every saved hyperparameter (torch.optim's rule): lr, betas,
    eps and weight_decay for AdamW; lr, weight_decay and momentum for Muon, none left at the values
    the optimizer was built with. Bug caught: the saved weight_decay not restored (the test above
    saves and loads the same default 0.01), so a resumed run decays at another rate."""
    w = torch.zeros(2, 2, requires_grad=True)
    hyper = lambda opt: {k: v for k, v in opt.param_groups[0].items() if k != "params"}  # noqa
    saved = optimizers.AdamW([w], lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.3)
    loaded = optimizers.AdamW([w], lr=1.0, weight_decay=0.0)
    loaded.load_state_dict(saved.state_dict())
    assert hyper(loaded) == dict(lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.3)
    saved = optimizers.Muon([w], lr=0.02, weight_decay=0.1, momentum=0.9, blocks={})
    loaded = optimizers.Muon([w], lr=1.0, weight_decay=0.0, momentum=0.5, blocks={})
    loaded.load_state_dict(saved.state_dict())
    assert hyper(loaded) == dict(lr=0.02, weight_decay=0.1, momentum=0.9)


def test_an_eager_run_never_imports_the_compiler(tiny_data, tmp_path):
    """A compile=false training run, resumed and evaluated, in a fresh process: torch._dynamo (about 6
    s of a cold start on a GPU machine) is never imported. Bug caught: an optimizer built on
    torch.optim.Optimizer, or any other torch.compile import on the eager path."""
    code = ("import sys, train; args = sys.argv[1:]; train.main(args)\n"
            "train.main(args + ['--init_from=resume', '--max_iters=8'])\n"
            "print('dynamo imported:', 'torch._dynamo' in sys.modules)")
    args = tiny_args(tiny_data, tmp_path / "eager", "--compile=false", "--max_iters=4", "--eval_interval=4")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dynamo imported: False" in result.stdout, result.stdout[-2000:]


def test_weight_average_is_the_decay_weighted_mean_of_the_weights_and_swaps_back_exactly():
    """WeightAverage against its definition written out: after update t, sum_s d^(t-s) w_s /
    sum_s d^(t-s) over the weights seen at updates 1..t (the initial ones never count); inside
    swapped_in() the parameters hold the average, after it (also after an error) the trained weights
    bit for bit, in the same tensors. Bugs caught: the decay applied the wrong way round (the average
    chasing the start), no bias correction (the initial weights kept in the average), a warm-up that
    overrides the decay (two decays giving the same average), a swap that loses the trained weights
    or replaces the parameter tensors (recorded graphs would read stale memory)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    seen = []
    avg = optimizers.WeightAverage([w], decay=0.9)
    other = optimizers.WeightAverage([w], decay=0.99)
    for t in range(1, 30):
        with torch.no_grad():
            w.add_(torch.randn(5, 3, dtype=torch.float64))
        seen.append(w.detach().clone())
        avg.update()
        other.update()
        for a, d in ((avg, 0.9), (other, 0.99)):
            weights = [d ** (t - s) for s in range(1, t + 1)]
            expected = sum(c * x for c, x in zip(weights, seen)) / sum(weights)
            torch.testing.assert_close(a.average[0], expected, rtol=1e-10, atol=1e-10)
    trained, storage = w.detach().clone(), w.data_ptr()
    with avg.swapped_in():
        assert torch.equal(w.detach(), avg.average[0]) and w.data_ptr() == storage
    assert torch.equal(w.detach(), trained)
    with pytest.raises(RuntimeError, match="inside"):
        with avg.swapped_in():
            raise RuntimeError("inside")
    assert torch.equal(w.detach(), trained)
    again = optimizers.WeightAverage([w], decay=0.9)
    again.load_state_dict(avg.state_dict())
    assert again.updates == 29 and torch.equal(again.average[0], avg.average[0])
    with pytest.raises(ValueError, match="holds 1 tensors, this model 2"):
        optimizers.WeightAverage([w, w], 0.9).load_state_dict(avg.state_dict())


def test_ema_run_evaluates_and_keeps_the_average_and_resumes_bit_exactly(tiny_data, tmp_path):
    """ema_decay: the val loss logged is the averaged weights' (re-evaluated here from ckpt_best.pt,
    which holds them, not the trained ones of ckpt_last.pt); a run stopped and resumed ends with the
    same weights and average as one that was not. Bugs caught: the trained weights evaluated or saved
    as best, the average not saved (a resumed run restarting it), the swap leaking into training."""
    args = ("--max_iters=12", "--eval_interval=12", "--dropout=0.1", "--ema_decay=0.9")
    run(tiny_data, tmp_path / "full", *args)
    best = torch.load(tmp_path / "full" / "ckpt_best.pt", weights_only=True)
    last = torch.load(tmp_path / "full" / "ckpt_last.pt", weights_only=True)
    names = [n for n, _ in train.Transformer(train.TransformerConfig(vocab_size=65, n_layer=2, n_head=2,
                                                                      n_embd=32, block_size=16)).named_parameters()]
    assert last["average"]["updates"] == 12
    for name, a in zip(names, last["average"]["average"]):
        assert torch.equal(best["model"][name], a), name
    assert any(not torch.equal(best["model"][n], last["model"][n]) for n in names)
    cfg, kw = train.parse_args(tiny_args(tiny_data, tmp_path / "full", *args))
    model = checkpoint.model_from_checkpoint(best)
    again = evaluation.evaluate(model, Data("shakespeare_char", tiny_data), "val", cfg, torch.device("cpu"),
                                nullcontext())
    assert again["loss"] == pytest.approx(best["metrics"]["loss"], rel=1e-6)
    run(tiny_data, tmp_path / "split", *args, "--stop_after=5")
    run(tiny_data, tmp_path / "split", *args, "--init_from=resume")
    split = torch.load(tmp_path / "split" / "ckpt_last.pt", weights_only=True)
    assert train_losses(tmp_path / "full") == train_losses(tmp_path / "split")
    assert all(torch.equal(last["model"][k], split["model"][k]) for k in last["model"])
    assert all(torch.equal(a, b) for a, b in zip(last["average"]["average"], split["average"]["average"]))
    # a resume that changes the decay would continue another average: refused, naming the saved one
    with pytest.raises(train.ConfigError, match="keep --ema_decay=0.9 to resume it"):
        run(tiny_data, tmp_path / "split", "--max_iters=14", "--eval_interval=12", "--dropout=0.1",
            "--ema_decay=0.5", "--init_from=resume")
    # without checkpoints at the evaluations, the averaged weights are still what eval_only scores
    result = run(tiny_data, tmp_path / "once", *args, "--save_checkpoints=false")
    scored = run(tiny_data, tmp_path / "once", "--eval_only=true", "--ema_decay=0.9")
    assert scored["loss"] == pytest.approx(result["loss"], rel=1e-6)


@pytest.mark.parametrize("task,scores,best", [("lm", [2.0, 1.5, 1.7], 1.5), ("cls", [0.5, 0.8, 0.6], 0.8)])
def test_the_best_checkpoint_is_the_best_evaluation(tiny_data, tmp_path, monkeypatch, task, scores, best):
    """Evaluations scripted to score 2.0, 1.5, 1.7 (loss) or 0.5, 0.8, 0.6 (accuracy): best_val and
    ckpt_best.pt are the second evaluation's. Bug caught: a classifier keeping its lowest accuracy
    (the direction of the comparison swapped for one task)."""
    real = train.evaluate
    seen = iter(scores)

    def scripted(*args, **kw):
        m = real(*args, **kw)
        return {**m, ("loss" if task == "lm" else "accuracy"): next(seen)}
    monkeypatch.setattr(train, "evaluate", scripted)
    args = ["--max_iters=6", "--eval_interval=2"]
    if task == "cls":
        args += ["--dataset=trec", "--causal=false", "--block_size=32"]
    result = run(tiny_data, tmp_path, *args)
    assert result["best_val"] == best
    assert torch.load(tmp_path / "ckpt_best.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize("task,scores", [("lm", [2.0, 1.5, 1.5]), ("cls", [0.5, 0.8, 0.8])])
def test_a_tie_keeps_the_earlier_best_checkpoint(tiny_data, tmp_path, monkeypatch, task, scores):
    """An evaluation that only equals the best so far (frequent for the accuracy of a small val
    split) is no improvement: best_val is that score and ckpt_best.pt stays the step that first
    reached it (4). Catches: the comparison loosened (`>` -> `>=`, `<` -> `<=`), so that a tie
    replaces ckpt_best.pt with later weights."""
    real = train.evaluate
    seen = iter(scores)
    metric = "loss" if task == "lm" else "accuracy"
    monkeypatch.setattr(train, "evaluate", lambda *a, **kw: {**real(*a, **kw), metric: next(seen)})
    args = ["--max_iters=6", "--eval_interval=2"]
    if task == "cls":
        args += ["--dataset=trec", "--causal=false", "--block_size=32"]
    result = run(tiny_data, tmp_path, *args)
    assert result["best_val"] == scores[1] and result["step"] == 6
    assert torch.load(tmp_path / "ckpt_best.pt", weights_only=True)["step"] == 4


def test_stop_at_loss_stops_at_a_loss_equal_to_it(tiny_data, tmp_path, monkeypatch):
    """stop_at_loss stops at the first evaluation whose loss is <= it, equality included:
    evaluations scripted to 2.0, 1.5, 1.4 with stop_at_loss=1.5 stop the run at step 4.
    Catches: `<=` -> `<` (a run that reaches the target exactly trains on)."""
    real = train.evaluate
    seen = iter([2.0, 1.5, 1.4])
    monkeypatch.setattr(train, "evaluate", lambda *a, **kw: {**real(*a, **kw), "loss": next(seen)})
    result = run(tiny_data, tmp_path, "--max_iters=6", "--eval_interval=2", "--stop_at_loss=1.5")
    assert result["step"] == 4 and result["loss"] == 1.5


def test_stop_after_counts_from_where_a_resumed_run_began(tiny_data, tmp_path):
    """--stop_after=3 on a run resumed at step 10 stops at step 13. Bug caught: stop_after
    compared with the step itself (a resumed run then never stops, or stops at once)."""
    run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=10")
    run(tiny_data, tmp_path, "--max_iters=30", "--eval_interval=10", "--init_from=resume", "--stop_after=3")
    assert checkpoint.load_checkpoint(tmp_path / "ckpt_last.pt")["step"] == 13


def test_a_resumed_run_keeps_the_best_evaluation_before_the_stop(tiny_data, tmp_path, monkeypatch):
    """Evaluations scripted to 2.0, 1.5, 1.7 with a stop and a resume between the second and the
    third: best_val stays 1.5 and ckpt_best.pt stays step 4's. Bug caught: the checkpoint saving
    another best (inf), so the first evaluation after a resume overwrites ckpt_best.pt with a
    worse model."""
    real = train.evaluate
    seen = iter([2.0, 1.5, 1.7])

    def scripted(*args, **kw):
        return {**real(*args, **kw), "loss": next(seen)}
    monkeypatch.setattr(train, "evaluate", scripted)
    run(tiny_data, tmp_path, "--max_iters=6", "--eval_interval=2", "--stop_after=4")
    assert checkpoint.load_checkpoint(tmp_path / "ckpt_last.pt")["best"] == 1.5
    result = run(tiny_data, tmp_path, "--max_iters=6", "--eval_interval=2", "--init_from=resume")
    assert result["best_val"] == 1.5
    assert torch.load(tmp_path / "ckpt_best.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_micro_batches_of_a_later_step_are_that_steps_one_large_batch(tiny_data, task):
    """Step 2 as 4 micro-batches of 4 sequences holds the very sequences of step 2 as one batch of
    16 (the documented layout; for a classifier, the same labels in the same order). Bug caught:
    the classifier's example counter advancing by batch_size rather than the global batch per step
    (steps overlapping), which step 0 alone cannot show."""
    from data import Data
    dataset = "trec" if task == "cls" else "shakespeare_char"
    data = Data(dataset, tiny_data)
    extra = ["--causal=false"] if task == "cls" else []

    def batches(bs, accum):
        cfg, _ = train.parse_args(tiny_args(tiny_data, "/tmp/unused", f"--dataset={dataset}", *extra,
                                            f"--batch_size={bs}", f"--grad_accum={accum}"))
        return train.Batches(data, cfg, 16, torch.device("cpu"), 1)

    small, large = batches(4, 4), batches(16, 1)
    for step in (0, 2):
        parts = [small.get(step, m, 0) for m in range(4)]
        whole = large.get(step, 0, 0)
        if task == "lm":
            assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
        else:  # (x, mask, y): labels and the real tokens of each example
            assert torch.equal(torch.cat([p[2] for p in parts]), whole[2])


@pytest.mark.parametrize("task", ["lm", "cls"])
def test_processes_and_micro_batches_split_one_global_batch(tiny_data, task):
    """Micro-batch `micro` of process `rank` (2 processes x 2 micro-batches) is micro-batch
    g = micro * 2 + rank of one process with 4, at every step: the processes train on disjoint
    quarters of the global batch, the layout the Batches docstring gives. Catches: a classifier's
    example counter that ignores the rank (both processes training on the same examples, half of
    the global batch never seen), the rows of a language model's batch taken in another order."""
    data = Data("shakespeare_char" if task == "lm" else "trec", tiny_data)

    def batches(world, accum):
        cfg = train.TrainConfig(batch_size=4, grad_accum=accum, dataset=data.name)
        return train.Batches(data, cfg, 16, torch.device("cpu"), world)

    two, one = batches(2, 2), batches(1, 4)
    for step in (0, 3):
        for micro in range(2):
            for rank in range(2):
                got, want = two.get(step, micro, rank), one.get(step, micro * 2 + rank, 0)
                assert all(torch.equal(a, b) for a, b in zip(got, want)), (step, micro, rank)


def test_classifier_epochs_are_fresh_permutations_of_the_examples(tiny_data, monkeypatch):
    """Three epochs of trec's training examples drawn 8 at a time: each epoch holds every example
    exactly once, and each comes in an order of its own. Catches: one permutation reused for
    every epoch (`seeded(seed, 1, epoch)` -> `seeded(seed, 1, 0)`), an example repeated or
    skipped within an epoch."""
    data = Data("trec", tiny_data)
    monkeypatch.setattr(train, "cls_batch", lambda tokens, offsets, labels, idx, *rest: idx)
    cfg = train.TrainConfig(batch_size=8, grad_accum=1, dataset="trec")
    batches = train.Batches(data, cfg, 16, torch.device("cpu"), 1)
    n = len(data.examples("train")[2])
    seen = [i for step in range(-(-3 * n // 8)) for i in batches.get(step, 0, 0)]
    epochs = [seen[e * n:(e + 1) * n] for e in range(3)]
    assert all(sorted(order) == list(range(n)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3


# ---- progress reporting ------------------------------------------------------------------------

def fake_progress(tmp_path, monkeypatch, master=True, **keys):
    """A Progress on a stand-in run and a clock the test moves: (progress, clock, lines said)."""
    clock = [0.0]
    monkeypatch.setattr(train, "time", SimpleNamespace(time=lambda: clock[0]))
    lines = []
    run = SimpleNamespace(
        cfg=train.TrainConfig(save_checkpoints=False, max_iters=100, eval_interval=50, **keys),
        model_cfg=SimpleNamespace(block_size=16), world=1, device=torch.device("cpu"),
        raw=SimpleNamespace(flops_per_token=lambda T: 1000.0), start=0, verbose=False,
        data=SimpleNamespace(meta={"splits": {"val": {"tokens": 500}}}), master=master,
        out=tmp_path, t_start=0.0, setup_s={}, say=lambda *a, **k: lines.append(" ".join(map(str, a))))
    return train.Progress(run), clock, lines


def log_steps(progress, clock, steps, first=0):
    """Steps first, first + 1, ... of (pause before the step, its seconds, its tokens)."""
    for step, (pause, seconds, tokens) in enumerate(steps, first):
        clock[0] += pause
        t_step = clock[0]
        clock[0] += seconds
        progress.log_step(step, t_step, 2.5, 1.0, 1e-3, tokens)


def step_lines(lines):
    """{step: (ms per step, thousands of tokens per second)} of the progress lines said."""
    pattern = r"step +(\d+)/\d+ .*\| +([\d.]+) ms \| +([\d.]+)k tok/s"
    found = [re.match(pattern, line) for line in lines]
    return {int(m[1]): (float(m[2]), float(m[3])) for m in found if m}


def test_progress_reports_the_median_step_time_and_the_mean_tokens_of_its_interval(tmp_path,
                                                                                   monkeypatch):
    """Over a log interval, ms/step is the median of the steps' times (an evaluation pause inside
    the interval does not move it) and tokens/s the mean tokens of a step over that time; each
    interval starts afresh after its line. Catches: another reduction of either (mean, first,
    last, an index off by one, unsorted, the tokens summed), and steps of earlier intervals (the
    first step's compilation) counted again."""
    progress, clock, lines = fake_progress(tmp_path, monkeypatch, log_interval=5)
    log_steps(progress, clock, [(0, 5.0, 1000),  # step 0: compiles
                                (0, 0.9, 1000), (0, 0.1, 1000),
                                (10.0, 0.5, 4000),  # after an evaluation of 10 s
                                (0, 0.3, 1000), (0, 0.2, 1000)])
    # step 5's interval: 900, 100, 10500 (the pause included), 300 and 200 ms -> median 300 ms;
    # 1600 tokens a step on average -> 1600 / 0.3 s
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_records = {r["step"]: r for r in records if r["kind"] == "train"}
    assert list(train_records) == [0, 5]
    assert train_records[0]["ms_per_step"] == pytest.approx(5000.0)
    assert train_records[0]["tokens_per_s"] == pytest.approx(200.0)
    assert train_records[5]["ms_per_step"] == pytest.approx(300.0)
    assert train_records[5]["tokens_per_s"] == pytest.approx(1600 / 0.3)
    assert step_lines(lines) == {0: (5000.0, 0.2), 5: (300.0, 5.3)}


def test_progress_line_at_least_every_60_seconds_between_log_steps(tmp_path, monkeypatch):
    """Between log_interval steps a line comes as soon as PROGRESS_S (60 s) have passed since the
    last one, not before, measured over the steps since that line; log.jsonl keeps log_interval
    and another process says nothing. Catches: the 60 s bound off (> for >=), its clock never
    restarted (a line at every step once a minute has passed), the periodic lines written into
    log.jsonl, and their step time taken over the wrong steps."""
    progress, clock, lines = fake_progress(tmp_path, monkeypatch, log_interval=1000)
    log_steps(progress, clock, [(0, 1.0, 1e5),  # step 0: a line (log_interval), at 1 s
                                (0, 25.0, 1e5), (0, 25.0, 1e5), (0, 10.0, 1e5),  # 61 s: 60 s later
                                (0, 25.0, 1e5), (0, 35.0, 1e5),  # 121 s
                                (0, 59.5, 1e5), (0, 0.5, 1e5),  # 180.5 s: not yet; 181 s
                                (0, 1.0, 1e5)])
    assert step_lines(lines) == {0: (1000.0, 100.0), 3: (25000.0, 4.0), 5: (35000.0, 2.9),
                                 7: (59500.0, 1.7)}
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("startup", 0), ("train", 0)]

    other, clock, lines = fake_progress(tmp_path / "rank1", monkeypatch, master=False,
                                        log_interval=2)
    log_steps(other, clock, [(0, 70.0, 100)] * 4)
    assert step_lines(lines) == {} and not (tmp_path / "rank1").exists()


def test_non_finite_loss_and_gradient_name_the_step_and_the_value(tiny_data, tmp_path, monkeypatch):
    """The stop message says what was not finite, its value and the step: a loss made infinite at
    step 3 gives 'non-finite loss (inf) at step 3', a NaN weight at step 1 'non-finite loss (nan)
    at step 1', an infinite gradient at step 2 'non-finite gradient norm (inf) at step 2'.
    Catches: the value or the step left out of the message, another value shown (the gradient
    norm's for the loss), or another step named (the run's first, or the next)."""
    real_step = train.train_step

    def poisoned(*a, **kw):
        raw, step = a[1], a[5]
        if step == 3 and poison == "loss":
            forward = raw.forward

            def forward_inf(*x, **k):
                logits, loss = forward(*x, **k)
                return logits, loss * float("inf")
            raw.forward = forward_inf
        if step == 1 and poison == "weight":
            with torch.no_grad():
                raw.transformer.wte.weight[0, 0] = float("nan")
        if step == 2 and poison == "gradient":
            raw.transformer.wte.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
        return real_step(*a, **kw)

    monkeypatch.setattr(train, "train_step", poisoned)
    for poison, expected in [("loss", "non-finite loss (inf) at step 3:"),
                             ("weight", "non-finite loss (nan) at step 1:"),
                             ("gradient", "non-finite gradient norm (inf) at step 2:")]:
        with pytest.raises(train.Stop) as info:
            run(tiny_data, tmp_path / poison, "--max_iters=10", "--eval_interval=10")
        assert str(info.value).startswith(expected), str(info.value)


# ---- mutation sweep 9: what the earlier tests let through --------------------------------------


def test_a_resumed_run_with_nothing_left_to_train_keeps_its_metrics(tiny_data, tmp_path):
    """Resuming a finished run (init_from=resume at max_iters) evaluates nothing new: its result
    and metrics.json keep the checkpoint's last evaluation. Bug caught: a resume that drops the
    checkpoint's metrics, so metrics.json loses the loss and perplexity of the run."""
    first = run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=10")
    again = run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=10", "--init_from=resume")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert again["step"] == 10 and again["loss"] == first["loss"] and saved["loss"] == first["loss"]
    assert saved["perplexity"] == first["perplexity"]


def test_metrics_json_wall_time_is_the_runs_duration(tiny_data, tmp_path):
    """Bug caught: wall_s written as the clock's time (seconds since 1970), not the run's length."""
    t0 = time.time()
    result = run(tiny_data, tmp_path, "--max_iters=2", "--eval_interval=2")
    elapsed = time.time() - t0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < saved["wall_s"] == result["wall_s"] <= elapsed


def test_a_resumed_run_keeps_where_it_began_in_its_config_and_checkpoints(tiny_data, tmp_path):
    """config.json and the checkpoints of a resumed run keep init_from='scratch', where the run
    began. Bug caught: init_from='resume' written there, so the run's own config no longer says
    how it was made (from scratch, or from which pretrained encoder)."""
    run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=5", "--stop_after=5")
    run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=5", "--init_from=resume")
    assert json.loads((tmp_path / "config.json").read_text())["train"]["init_from"] == "scratch"
    for name in ("ckpt_last.pt", "ckpt_best.pt"):
        saved = checkpoint.load_checkpoint(tmp_path / name)
        assert saved["step"] == 10 and saved["config"]["train"]["init_from"] == "scratch", name


def test_eval_only_of_a_run_stopped_before_its_first_evaluation_scores_ckpt_last(tiny_data,
                                                                                  tmp_path):
    """A run stopped (stop_after) before its first evaluation has ckpt_last.pt and no ckpt_best.pt:
    eval_only scores ckpt_last.pt. Bug caught: the choice of checkpoint testing for the wrong file,
    so eval_only asks for a ckpt_best.pt that does not exist."""
    run(tiny_data, tmp_path, "--max_iters=20", "--eval_interval=10", "--stop_after=3")
    assert not (tmp_path / "ckpt_best.pt").exists()
    result = run(tiny_data, tmp_path, "--eval_only=true")
    assert result["step"] == 3 and result["checkpoint"] == str(tmp_path / "ckpt_last.pt")


def test_the_stop_message_names_the_learning_rate_and_warmup_in_use(tiny_data, tmp_path,
                                                                     monkeypatch):
    """A non-finite loss stops the run with advice naming the values in use: here learning_rate
    0.001 and warmup_iters 2. Bug caught: another key's value shown for learning_rate (min_lr,
    which the older test could not tell apart: it set both to 1e30)."""
    real_step = train.train_step

    def nan_loss(*a, **kw):
        with torch.no_grad():
            a[1].transformer.wte.weight[0, 0] = float("nan")
        return real_step(*a, **kw)
    monkeypatch.setattr(train, "train_step", nan_loss)
    with pytest.raises(train.Stop) as info:
        run(tiny_data, tmp_path, "--max_iters=10", "--eval_interval=10", "--learning_rate=1e-3",
            "--min_lr=1e-4")
    assert "Lower learning_rate (now 0.001) or raise warmup_iters (now 2)" in str(info.value)


def test_a_second_signal_stops_at_once_and_the_handlers_are_put_back(tmp_path):
    """The first SIGTERM only sets the flag; a second one raises KeyboardInterrupt at once; after
    the block SIGINT and SIGTERM have the handlers they had before. Bugs caught: a second signal
    needed twice over (a third) to stop, and the training's handlers left installed after
    train() returns (a later Ctrl-C in the same process then only appends to a dead list)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    said = []
    stand_in = SimpleNamespace(master=True, world=1, out=tmp_path,
                               say=lambda *a, **k: said.append(" ".join(map(str, a))))
    with pytest.raises(KeyboardInterrupt):
        with train.signals_set_a_flag(stand_in) as signalled:
            signal.raise_signal(signal.SIGTERM)
            assert signalled == [signal.SIGTERM] and "SIGTERM: stopping after this step" in said[0]
            signal.raise_signal(signal.SIGINT)
            pytest.fail("the second signal did not stop at once")
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_config_line_lists_the_keys_set_and_only_them(capsys, monkeypatch):
    """main() prints the keys that differ from the defaults. Bug caught: the comparison inverted,
    so the line lists every key left at its default and hides those set."""
    monkeypatch.setattr(train, "train", lambda cfg, kw: None)
    assert train.main(["--max_iters=100", "--n_layer=3", "--seed=1337"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "config: max_iters=100 n_layer=3"


def test_an_interrupt_outside_the_loop_exits_with_130(capsys, monkeypatch):
    """Ctrl-C before training starts (or a second one) exits with 130, the shell's code for
    SIGINT, and says so. Bug caught: the code of an ordinary error (1), so scripts cannot tell an
    interrupted run from a failed one."""
    def interrupted(cfg, kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "train", interrupted)
    assert train.main(["--max_iters=100"]) == 130
    assert "interrupted; " in capsys.readouterr().err


def test_tokens_per_step_count_every_process(tmp_path, monkeypatch):
    """Under torchrun a step trains on batch_size x block_size x grad_accum tokens in each of the
    world's processes: the start line and the first ETA's guess of an evaluation use that global
    count. Bug caught: world left out (the count of one process)."""
    progress, _, _ = fake_progress(tmp_path, monkeypatch, batch_size=8, grad_accum=3)
    assert progress.tokens_per_step == 8 * 16 * 3
    progress.run.world = 4
    assert train.Progress(progress.run).tokens_per_step == 8 * 16 * 3 * 4
