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

