"""Faults a user can run into: bad inputs at the edges, damaged or unwritable files, a run
directory's life, signals. Every one must end in one clear line (no traceback) and lose nothing."""
import pytest
import torch

import sample
import train


def config_error(*argv):
    with pytest.raises(train.ConfigError) as info:
        train.parse_args(list(argv))
    return str(info.value)


# ---- inputs at the edges -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_everywhere(value, tmp_path):
    for key in ("learning_rate", "grad_clip", "dropout", "rope_base", "stop_at_loss", "muon_momentum"):
        assert f"{key}={float(value)} (command line) is not a finite number" in config_error(f"--{key}={value}")
    conf = tmp_path / "c.py"
    conf.write_text(f"weight_decay = float('{value}')\n")
    assert "is not a finite number" in config_error(str(conf))
    with pytest.raises(sample.SampleError, match="not a finite number"):
        sample.parse_args([f"--temperature={value}"])


def test_ranges_of_keys_without_an_obvious_bound():
    text = config_error("--seed=-1", "--muon_momentum=1", "--norm_eps=0", "--out_dir=", "--data_dir= ")
    for expected in ["seed=-1 must be in", "muon_momentum=1.0 must be in [0, 1)", "norm_eps=0.0 must be",
                     "out_dir='' is empty", "data_dir=' ' is empty"]:
        assert expected in text, expected
    with pytest.raises(sample.SampleError, match="out_dir='' is empty"):
        sample.parse_args(["--out_dir="])


def test_every_model_key_is_reported_with_the_rest():
    # an unknown data set hid the model keys, and a bad choice hid the shape errors
    text = config_error("--dataset=imagenet", "--pos_encoding=rotary", "--n_embd=30", "--n_head=4")
    for expected in ["dataset='imagenet'", "pos_encoding='rotary'", "n_embd=30 must be divisible by n_head=4"]:
        assert expected in text, expected


def test_config_file_that_does_not_parse_or_raises(tmp_path, capsys):
    broken, raising = tmp_path / "broken.py", tmp_path / "raising.py"
    broken.write_text("n_layer = 2\nx = (\n")
    raising.write_text("import math\n\nn_layer = int(math.sqrt(-1))\n")
    text = config_error(str(broken), str(raising), "--batch_size=0")
    assert f"config file {broken}, line 2:" in text and "was never closed" in text
    assert f"config file {raising}, line 3: ValueError: math domain error" in text
    assert "batch_size=0 must be >= 1" in text  # and the other problems in the same message
    assert train.main([str(raising)]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_and_cpu_float16_are_config_errors():
    assert "this machine has no CUDA GPU" in config_error("--device=cuda")
    assert "dtype='float16' on a CPU" in config_error("--device=cpu", "--dtype=float16")
    with pytest.raises(sample.SampleError, match="no CUDA GPU"):
        sample.get_device("cuda:1")
