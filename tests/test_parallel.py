"""parallel.py on a CPU: torchrun's environment, how a model is handed to FSDP, and where a
recorded CUDA graph is refused. Process groups and FSDP's own work are stubbed out: what is
checked is what parallel.py asks of them."""
import pytest
import torch

import parallel
import train
from configurator import ConfigError
from model import Transformer, TransformerConfig


def tiny_model():
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2,
                                         n_embd=16))


@pytest.fixture
def process_group(monkeypatch):
    """init_process_group and set_device recorded instead of run."""
    calls = []
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    return calls


def test_setup_distributed_reads_torchrun_environment(monkeypatch, process_group):
    """Rank, local rank and world size from torchrun's variables, in that order, with gloo on a
    CPU and nccl on CUDA ('auto' included), the process's GPU its local rank. Catches: RANK and
    LOCAL_RANK swapped (equal on one host, wrong on the second), the backends swapped, and
    --device=auto left on gloo where CUDA is available."""
    cfg = train.parse_args(["--device=cpu"])[0]
    monkeypatch.delenv("RANK", raising=False)
    assert parallel.setup_distributed(cfg) == (0, 0, 1) and process_group == []
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert parallel.setup_distributed(cfg) == (5, 1, 8)
    assert process_group == [("init", "gloo")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for device, want in [("auto", [("set_device", 1), ("init", "nccl")]),
                         ("cuda", [("set_device", 1), ("init", "nccl")]),
                         ("cpu", [("init", "gloo")])]:
        process_group.clear()
        cfg.device = device
        assert parallel.setup_distributed(cfg) == (5, 1, 8)
        assert process_group == want, device


@pytest.fixture
def shards(monkeypatch):
    """fully_shard recorded instead of run: (module, mixed-precision policy) per call."""
    import torch.distributed.fsdp as fsdp
    calls = []

    def fully_shard(module, mp_policy):
        calls.append((module, mp_policy))
    monkeypatch.setattr(fsdp, "fully_shard", fully_shard)
    return calls


def test_fsdp_shards_each_block_then_the_root_with_bf16_compute_and_fp32_reduce(shards):
    """Every block is its own unit and the root (embeddings, ln_f, head) is sharded last; in bf16
    the weights are gathered in bf16 and gradients reduced in fp32, in fp32 no policy at all.
    Catches: the root or the policy left out, gradients reduced in bf16."""
    cfg = train.parse_args(["--device=cpu", "--parallel=fsdp"])[0]
    raw = tiny_model()
    assert parallel.parallelize(raw, cfg, torch.device("cpu"), torch.bfloat16, world=2) is raw
    assert [m for m, _ in shards] == [*raw.transformer.h, raw]
    assert all((p.param_dtype, p.reduce_dtype) == (torch.bfloat16, torch.float32)
               for _, p in shards)
    shards.clear()
    parallel.parallelize(raw, cfg, torch.device("cpu"), torch.float32, world=2)
    assert [m for m, _ in shards] == [*raw.transformer.h, raw]
    assert all((p.param_dtype, p.reduce_dtype) == (None, None) for _, p in shards)


def test_fsdp_refuses_float16_and_trains_one_process_whole(shards):
    """float16 is refused before anything is sharded (its loss scaler would see one shard), bf16
    is not; one process with parallel='fsdp' trains the model whole and says so. Catches: the
    check made on bf16, and one process handed to FSDP."""
    cfg = train.parse_args(["--device=cpu", "--parallel=fsdp"])[0]
    raw = tiny_model()
    with pytest.raises(ConfigError, match="does not support float16"):
        parallel.parallelize(raw, cfg, torch.device("cpu"), torch.float16, world=2)
    assert shards == []
    notes = []
    assert parallel.parallelize(raw, cfg, torch.device("cpu"), torch.bfloat16, world=1,
                                say=notes.append) is raw
    assert shards == [] and "nothing to shard" in notes[0]


def test_a_cpu_model_is_never_compiled():
    """compile=True (the default) compiles on CUDA only: on a CPU training calls raw itself, in one
    process and with DDP's world. Catches: torch.compile applied on a CPU (minutes of compilation
    for a tiny model)."""
    cfg = train.parse_args(["--device=cpu", "--compile=true"])[0]
    raw = tiny_model()
    for world in (1, 2):
        assert parallel.compile_model(raw, cfg, torch.device("cpu"), world) is raw


def test_cuda_graph_is_refused_on_a_cpu():
    """A CPU batch is refused with the reason, before anything is recorded. Catches: the device
    check missing (the recording then fails inside CUDA with an error that names no option)."""
    x = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ConfigError, match="it runs on cpu; drop --cuda_graph=true"):
        parallel.GraphedStep(tiny_model(), [(x, x)], 1.0, torch.float32)


# ----------------------------------------------------------------------------------------------
# CUDA-only paths, on a CPU: what parallel.py asks of torch.compile and of a CUDA graph recording,
# with both stubbed (tests/test_gpu.py runs them for real where there is a GPU; CI has none)

class OnCuda:
    """A CPU tensor that GraphedStep takes for a CUDA one: it says it is on CUDA, and its clone
    (the graph's own input tensor) is the CPU tensor."""
    device = torch.device("cuda")

    def __init__(self, t):
        self.t, self.shape = t, t.shape

    def clone(self):
        return self.t.clone()


@pytest.fixture
def fake_graphs(monkeypatch):
    """record_cuda_graph on a CPU: the warm-up calls and before_recording as the real one makes
    them, then one call standing for the recording (a real recording runs nothing: the tests zero
    the gradients after it, as train_step does); replay() calls fn again and writes its result into
    the recorded output, as replaying the recorded kernels does. Records (warmup, device) per
    recording."""
    recordings = []

    class Graph:
        def __init__(self, fn, out):
            self.fn, self.out = fn, out

        def replay(self):
            self.out.copy_(self.fn())

    def record(fn, device, warmup=2, before_recording=None):
        recordings.append((warmup, device))
        for _ in range(warmup):
            fn()
        if before_recording is not None:
            before_recording()
        out = fn()
        return Graph(fn, out), out
    monkeypatch.setattr(parallel, "record_cuda_graph", record)
    return recordings


def eager_step(model, *batch, scale=1.0, mask=None):
    """(loss * scale, gradients) of one eager forward and backward from zero gradients."""
    model.zero_grad(set_to_none=True)
    kw = {} if mask is None else {"attention_mask": mask}
    _, loss = model(*batch, return_logits=False, **kw)
    (loss * scale).backward()
    return (loss * scale).item(), [p.grad.clone() for p in model.parameters()]


def graphed_step(step, model, *batch):
    model.zero_grad(set_to_none=False)
    loss = step(*batch)
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_a_graphed_step_replays_forward_and_backward_on_the_batch_it_is_given(fake_graphs):
    """A language model's GraphedStep (recording stubbed) records one graph for the batch shape,
    then for each batch copies it into the graph's inputs and replays: the loss times the scale and
    the gradients of an eager step on that batch, not on the example it was recorded with. A batch
    of another shape is refused with the shapes recorded. Catches: no graph recorded, the forward
    or the loss left out of the recording, the record or the loss not returned, the shape check
    missing or inverted."""
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    x0, y0, x1, y1 = (torch.randint(32, (4, 8), generator=g) for _ in range(4))
    step = parallel.GraphedStep(model, [(OnCuda(x0), OnCuda(y0))], 0.5, torch.float32)
    assert list(step.graphs) == [(4, 8)] and len(fake_graphs) == 1
    loss, grads = graphed_step(step, model, x1, y1)
    want_loss, want_grads = eager_step(model, x1, y1, scale=0.5)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"no CUDA graph was recorded for batches of shape "
                                         r"\(2, 8\); recorded: \(4, 8\)"):
        step(x1[:2], y1[:2])


def test_a_graphed_step_leaves_no_warm_up_gradient_behind(fake_graphs):
    """The warm-up passes before a recording accumulate gradients; GraphedStep zeroes them before
    recording, so that the first training step, which train_step does not zero before (it zeroes
    after each step), starts from the recorded backward's own gradients. With the stub, whose
    recording call runs once, the gradients after construction are one eager step's. Bug caught:
    the warm-up gradients kept (zero_grads a no-op): the first step trains on 4x its gradient."""
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    x, y = (torch.randint(32, (4, 8), generator=g) for _ in range(2))
    _, want = eager_step(model, x, y, scale=0.5)
    model.zero_grad(set_to_none=True)
    parallel.GraphedStep(model, [(OnCuda(x), OnCuda(y))], 0.5, torch.float32)
    assert [warmup for warmup, _ in fake_graphs] == [3]
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, w)


def test_a_graphed_classifier_has_a_graph_per_padded_length_and_reads_its_mask(fake_graphs):
    """A classifier's batches (x, mask, y) get one graph per padded length, keyed by the shape of
    x; a replay passes the mask as the attention mask and y as the labels, so each length gives the
    eager step's loss and gradients. Catches: graphs keyed by the labels' shape (every length then
    shares one graph), a batch looked up by the labels' shape, the classifier's forward left out
    of the recording."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2,
                                          n_embd=16, causal=False, n_classes=3))
    g = torch.Generator().manual_seed(1)
    batches = []
    for n in (8, 16):
        mask = torch.arange(n)[None] < torch.tensor([n, n // 2, 3, 1])[:, None]
        x = torch.where(mask, torch.randint(1, 32, (4, n), generator=g), 0)
        batches.append((x, mask, torch.randint(0, 3, (4,), generator=g)))
    step = parallel.GraphedStep(model, [tuple(OnCuda(t) for t in b) for b in batches], 1.0,
                                torch.float32)
    assert sorted(step.graphs) == [(4, 8), (4, 16)]
    for x, mask, y in reversed(batches):
        loss, grads = graphed_step(step, model, x, mask, y)
        want_loss, want_grads = eager_step(model, x, y, mask=mask)
        assert loss == pytest.approx(want_loss, rel=1e-6)
        for a, b in zip(grads, want_grads):
            torch.testing.assert_close(a, b)


def test_cuda_graph_is_refused_for_fsdp_and_float16_with_the_reason(fake_graphs, monkeypatch):
    """On CUDA, a model sharded by FSDP (its collectives are not recorded) and float16 (its loss
    scaling is not) are refused before anything is recorded, each with its reason. Catches: a
    refusal missing, so that recording starts anyway."""
    x = torch.zeros(2, 8, dtype=torch.long)
    batch = [(OnCuda(x), OnCuda(x))]
    with monkeypatch.context() as m:
        m.setattr(parallel, "sharded", lambda model: True)
        with pytest.raises(ConfigError, match="FSDP's all-gathers and reduce-scatters are not "
                                              "recorded; drop --cuda_graph=true"):
            parallel.GraphedStep(tiny_model(), batch, 1.0, torch.bfloat16)
    with pytest.raises(ConfigError, match="fp16 loss scaling is not recorded"):
        parallel.GraphedStep(tiny_model(), batch, 1.0, torch.float16)
    assert fake_graphs == []


def test_compile_on_cuda_by_scope_and_reduce_overhead_only_in_one_process(monkeypatch):
    """On CUDA (torch.compile stubbed), compile_scope='model' wraps the model, 'block' compiles
    every block in place, and a language model's loss work (LogitGrads, in mode 'default'), and
    returns raw; mode='reduce-overhead' (CUDA graphs) is kept in one process and, with a note,
    becomes 'default' with several, whose DDP/FSDP hooks it would break. Catches: the blocks or the
    loss left uncompiled, the mode changed in one process, or kept with two."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode: compiled.append((fn, mode)) or fn)
    cuda = torch.device("cuda")
    for scope, world, mode in [("model", 1, "reduce-overhead"), ("model", 2, "default"),
                               ("block", 1, "reduce-overhead"), ("block", 2, "default")]:
        compiled.clear()
        cfg = train.parse_args(["--device=cpu", "--compile=true", f"--compile_scope={scope}",
                                "--compile_mode=reduce-overhead"])[0]
        raw, notes = tiny_model(), []
        assert parallel.compile_model(raw, cfg, cuda, world, say=notes.append) is raw
        if scope == "model":
            assert compiled == [(raw, mode)]
        else:  # Module.compile hands each block's call to torch.compile
            assert [(fn.__self__, m) for fn, m in compiled] == [
                (b, mode) for b in raw.transformer.h] + [(raw.logit_grads, "default")]
        assert bool(notes) == (world > 1) and all("mode='default'" in n for n in notes)


def test_only_a_cuda_model_is_compiled(monkeypatch):
    """compile=True compiles on CUDA only: on the CPU and on MPS compile_model returns raw untouched
    (the inductor's CPU and MPS back ends are not what the runs were timed or checked with), in
    either scope. Bug caught: the device test inverted into "not the CPU", so an MPS run is
    compiled."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode: compiled.append(fn) or fn)
    for scope in ("model", "block"):
        cfg = train.parse_args(["--device=cpu", "--compile=true", f"--compile_scope={scope}"])[0]
        for device in ("cpu", "mps"):
            raw = tiny_model()
            assert parallel.compile_model(raw, cfg, torch.device(device)) is raw
    assert compiled == []


def test_one_process_is_never_sharded_and_never_touches_fsdp(monkeypatch):
    """Without a process group (or without torch.distributed at all) sharded() answers False before
    importing FSDP (about a second, and absent from some builds). Catches: the early answer lost,
    or asked only when both halves fail (FSDP imported in every one-process run)."""
    import torch.distributed.fsdp as fsdp
    monkeypatch.delattr(fsdp, "FSDPModule")  # as if FSDP could not be imported
    assert not torch.distributed.is_initialized()
    assert parallel.sharded(tiny_model()) is False
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    assert parallel.sharded(tiny_model()) is False


def test_block_scope_leaves_a_masked_lm_loss_and_a_classifier_eager(monkeypatch):
    """A masked LM's head scores a different number of tokens at every eager step (a compiled
    LogitGrads would recompile for each), and a classifier has no LogitGrads: compile_scope='block'
    compiles only their blocks. Catches: the masked LM's loss compiled, or a classifier failing on
    the missing module."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode: compiled.append(fn.__self__) or fn)
    cfg = train.parse_args(["--device=cpu", "--compile=true", "--compile_scope=block"])[0]
    for extra in (dict(mlm=True, causal=False), dict(n_classes=3, causal=False)):
        compiled.clear()
        raw = Transformer(TransformerConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2,
                                            n_embd=16, **extra))
        assert parallel.compile_model(raw, cfg, torch.device("cuda")) is raw
        assert compiled == list(raw.transformer.h)
