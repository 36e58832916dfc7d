"""train.py --parallel=fsdp in two CPU processes (gloo): the same training as one process with the
whole batch, exact resume, and checkpoints that one process reads (sample.py, eval_only, resume)."""
import json
import shutil

import pytest
import torch

import sample
import train
from test_train import run, tiny_args, torchrun, train_losses, weights

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

# two processes x 2 micro-batches of 4 = one process x one batch of 16: the same 16 sequences (see
# train.Batches); evaluations at steps 2 and 4, so training goes on after an evaluation and a checkpoint
FSDP = ("--max_iters=4", "--eval_interval=2", "--batch_size=4", "--grad_accum=2", "--parallel=fsdp")
ONE = ("--max_iters=4", "--eval_interval=2", "--batch_size=16")


@pytest.fixture(scope="module")
def fsdp_out(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp") / "run"
    torchrun(tiny_data, out, *FSDP)
    return out


def grad_norms(out_dir):
    return [json.loads(line)["grad_norm"] for line in (out_dir / "log.jsonl").read_text().splitlines()
            if '"train"' in line]


def assert_same_state(a, b, exact=False):
    """Two checkpoints' weights and AdamW state, equal (exact) or within float32 reordering noise."""
    a, b = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    close = torch.equal if exact else lambda x, y: torch.allclose(x, y, atol=1e-6, rtol=0)
    assert a["model"].keys() == b["model"].keys()
    assert all(close(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizers"][0]["state"], b["optimizers"][0]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["step"], sb[i]["step"]) for i in sa)
    for name in ("exp_avg", "exp_avg_sq"):  # the state of parameter i sits under key i in both files
        assert all(close(sa[i][name], sb[i][name]) for i in sa), name


def test_fsdp_equals_one_process_with_the_whole_batch(fsdp_out, tiny_data, tmp_path):
    run(tiny_data, tmp_path / "one", *ONE)
    assert_same_state(fsdp_out / "ckpt_last.pt", tmp_path / "one" / "ckpt_last.pt")
    assert grad_norms(fsdp_out) == pytest.approx(grad_norms(tmp_path / "one"), rel=1e-5)
    loss = json.loads((fsdp_out / "metrics.json").read_text())["loss"]
    assert loss == pytest.approx(json.loads((tmp_path / "one" / "metrics.json").read_text())["loss"], rel=1e-6)


def test_fsdp_resume_is_exact_and_one_process_can_resume(fsdp_out, tiny_data, tmp_path):
    torchrun(tiny_data, tmp_path / "split", *FSDP, "--stop_after=3")  # stops between evaluations
    shutil.copytree(tmp_path / "split", tmp_path / "one")
    torchrun(tiny_data, tmp_path / "split", *FSDP, "--init_from=resume")
    assert_same_state(fsdp_out / "ckpt_last.pt", tmp_path / "split" / "ckpt_last.pt", exact=True)
    assert train_losses(fsdp_out) == train_losses(tmp_path / "split")
    run(tiny_data, tmp_path / "one", *ONE, "--init_from=resume")  # a sharded run's checkpoint, one process
    assert_same_state(fsdp_out / "ckpt_last.pt", tmp_path / "one" / "ckpt_last.pt")


def test_fsdp_checkpoint_is_read_by_one_process(fsdp_out, tiny_data):
    text = sample.sample(fsdp_out, start="ROM", max_new_tokens=20, device="cpu", checkpoint="last")
    assert len(text) == 1 and text[0].startswith("ROM") and len(text[0]) == 3 + 20
    trained = json.loads((fsdp_out / "metrics.json").read_text())
    cfg, kw = train.parse_args(tiny_args(tiny_data, fsdp_out, *FSDP, "--eval_only=true"))
    assert train.train(cfg, kw, quiet=True)["loss"] == pytest.approx(trained["loss"], rel=1e-6)


def test_fsdp_misuse_is_explained():
    with pytest.raises(train.ConfigError) as info:
        train.parse_args(["--parallel=zero3"])
    assert "parallel='zero3' is not one of 'ddp', 'fsdp'" in str(info.value)
    with pytest.raises(train.ConfigError, match="optimizer='muon' is not supported with parallel='fsdp'"):
        train.parse_args(["--parallel=fsdp", "--optimizer=muon"])
