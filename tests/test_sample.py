"""sample.py: reproducible sampling, streaming, prompts, errors, and classifier output.

    python -m pytest tests/test_sample.py -q

A tiny character model and a tiny TREC classifier are trained once per module on the `tiny_data`
fixture (a few seconds on a CPU); every test then loads their checkpoints as a user would.
"""
import inspect
import io
import re
import shutil
import sys

import pytest
import torch

import sample as S
import train
from data import Data


def test_sampling_arguments_at_their_bounds():
    """0 new tokens, temperature 0 (greedy) and seed 0 are valid; 0 samples and top_p=0 (nothing
    left to sample) are not. Bugs caught: each bound off by one."""
    cfg = S.parse_args(["--max_new_tokens=0", "--temperature=0", "--seed=0"])
    assert (cfg.max_new_tokens, cfg.temperature, cfg.seed) == (0, 0.0, 0)
    for bad, text in [("--num_samples=0", "num_samples=0 must be >= 1"), ("--top_p=0", "top_p=0.0 must be in (0, 1]")]:
        with pytest.raises(S.SampleError, match=re.escape(text)):
            S.parse_args([bad])

PROMPT = "ROMAN:"  # the tiny data set has no 'E'
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--batch_size=8", "--max_iters=20", "--warmup_iters=2",
        "--eval_interval=10", "--eval_batch_size=64", "--device=cpu", "--log_interval=5"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tensors of a few hundred numbers: syncing two threads per op costs more than it saves, and on a
    # busy two-core machine one token step takes ~30 ms with two threads against ~5 ms with one
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def char_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "char"
    cfg, kw = train.parse_args(["--dataset=shakespeare_char", f"--data_dir={tiny_data}", f"--out_dir={out}",
                                "--block_size=16", *TINY])
    train.train(cfg, kw, quiet=True)
    return out


@pytest.fixture(scope="module")
def trec_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "trec"
    cfg, kw = train.parse_args(["--dataset=trec", f"--data_dir={tiny_data}", f"--out_dir={out}", "--block_size=32",
                                "--causal=false", "--pooling=mean", *TINY])
    train.train(cfg, kw, quiet=True)
    return out


def draw(run, **kw):
    args = dict(start=PROMPT, max_new_tokens=40, temperature=1.0, top_k=0, seed=1, device="cpu")
    return S.sample(run, **{**args, **kw})


# ----------------------------------------------------------------------------------------------
# language model

def test_same_seed_same_text_and_other_seeds_differ(char_run):
    a, b, c = draw(char_run, seed=1), draw(char_run, seed=1), draw(char_run, seed=2)
    assert a == b
    assert a != c  # 40 characters at temperature 1 from a barely trained model: near-uniform draws
    assert len(a[0]) == len(PROMPT) + 40 and a[0].startswith(PROMPT)


def test_greedy_is_seed_independent_and_matches_argmax(char_run):
    a = draw(char_run, temperature=0, seed=1, top_p=0.5)
    b = draw(char_run, temperature=0, seed=99)
    assert a == b
    # the same text by argmax over a full forward at every step (no KV cache, no sampling code)
    model, tok, _, _ = S.load(char_run, "best", torch.device("cpu"))
    ids = tok.encode(PROMPT)
    with torch.no_grad():
        for _ in range(40):
            logits, _ = model(torch.tensor([ids[-model.config.block_size:]]))
            ids.append(int(logits[0, -1].argmax()))
    assert a[0] == tok.decode(ids)


def test_top_k_one_is_greedy(char_run):
    assert draw(char_run, top_k=1, seed=5) == draw(char_run, temperature=0)


def test_num_samples_batch(char_run):
    buf = io.StringIO()
    texts = draw(char_run, num_samples=3, max_new_tokens=25, stream=buf)
    assert len(texts) == 3
    assert all(t.startswith(PROMPT) and len(t) == len(PROMPT) + 25 for t in texts)
    assert len(set(texts)) == 3
    assert buf.getvalue() == ("\n" + "-" * 40 + "\n").join(texts) + "\n"


def test_stream_equals_returned_text_and_arrives_token_by_token(char_run):
    writes = []

    class Recorder(io.StringIO):
        def write(self, s):
            writes.append(s)
            return super().write(s)

    buf = Recorder()
    texts = draw(char_run, max_new_tokens=30, stream=buf)
    assert buf.getvalue() == texts[0] + "\n"
    assert sum(1 for w in writes if w) >= 30  # the prompt, then a piece per token: not one write at the end


class ByteTokenizer:
    """BPE-like: one token per byte, so multi-byte characters are split across tokens."""
    kind = "tiktoken"

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


def test_stream_decoder_holds_back_split_characters():
    text = "héllo € 𝄞 done"
    dec = S.StreamDecoder(ByteTokenizer())
    pieces = [dec.push([b]) for b in text.encode("utf-8")] + [dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_unknown_prompt_characters_are_listed(char_run, capsys):
    with pytest.raises(S.SampleError, match="é") as e:
        draw(char_run, start="ROMAN é ü")
    assert "ü" in str(e.value)
    assert S.main([f"--out_dir={char_run}", "--start=café ü", "--device=cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") or "\nerror: " in err
    assert "é" in err and "ü" in err and "Traceback" not in err


def test_prompt_from_file(char_run, tmp_path):
    (tmp_path / "prompt.txt").write_text(PROMPT, encoding="utf-8")
    assert draw(char_run, start=f"FILE:{tmp_path / 'prompt.txt'}") == draw(char_run, start=PROMPT)
    with pytest.raises(S.SampleError, match="nope.txt"):
        draw(char_run, start=f"FILE:{tmp_path / 'nope.txt'}")


def test_cli_prints_the_sample(char_run, capsys):
    argv = [f"--out_dir={char_run}", f"--start={PROMPT}", "--max_new_tokens=20", "--temperature=0.8",
            "--top_k=200", "--top_p=0.95", "--seed=3", "--device=cpu"]
    assert S.main(argv) == 0
    out = capsys.readouterr().out
    assert out == S.sample(char_run, PROMPT, 1, 20, 0.8, 200, 0.95, 3, "cpu")[0] + "\n"


def test_bare_run_without_checkpoint_names_the_train_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no out-shakespeare-char here
    assert S.main([]) == 1
    err = capsys.readouterr().err
    assert "out-shakespeare-char" in err and "python train.py config/shakespeare.py" in err
    assert S.main(["--out_dir=elsewhere"]) == 1
    assert "elsewhere" in capsys.readouterr().err


def test_bad_options(capsys):
    with pytest.raises(S.SampleError, match="did you mean 'temperature'"):
        S.parse_args(["--temprature=0.5"])
    with pytest.raises(S.SampleError) as e:
        S.parse_args(["--top_p=2", "--num_samples=two", "--checkpoint=newest", "--start"])
    for bad in ("top_p=2", "'two'", "newest", "--start: expected --start=VALUE"):
        assert bad in str(e.value)
    cfg = S.parse_args(["--start=a=b", "--max_new_tokens=1e3"])
    assert cfg.start == "a=b" and cfg.max_new_tokens == 1000
    assert S.main(["--top_k=-1"]) == 1 and "top_k=-1" in capsys.readouterr().err


def test_corrupt_checkpoint_names_the_file(char_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(char_run, run)
    ckpt = run / "ckpt_best.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:len(data) // 2])
    assert S.main([f"--out_dir={run}", "--device=cpu"]) == 1
    err = capsys.readouterr().err
    assert str(ckpt) in err and "corrupt" in err and "Traceback" not in err
    # --checkpoint=last skips the broken file
    assert S.main([f"--out_dir={run}", "--checkpoint=last", "--max_new_tokens=5", "--device=cpu"]) == 0


# ----------------------------------------------------------------------------------------------
# classifier

def test_classifier_labels_and_probabilities(trec_run, tiny_data, tmp_path, capsys):
    names = Data("trec", tiny_data).label_names
    texts = ["What is the capital of France ?", "Who wrote Hamlet ?", "How many legs does a spider have ?"]
    (tmp_path / "q.txt").write_text("\n".join(texts[:2]) + "\n\n" + texts[2] + "\n", encoding="utf-8")
    results = S.classify(trec_run, f"FILE:{tmp_path / 'q.txt'}", device="cpu")
    assert [r["text"] for r in results] == texts  # blank line skipped
    for r in results:
        probs = list(r["probs"].values())
        assert set(r["probs"]) == set(names) and r["label"] in names
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert probs == sorted(probs, reverse=True) and r["label"] == next(iter(r["probs"]))
    # one text at a time gives the same probabilities as the padded batch
    alone = S.classify(trec_run, texts[1], device="cpu")[0]
    assert alone["probs"] == pytest.approx(results[1]["probs"], abs=1e-5)

    assert S.main([f"--out_dir={trec_run}", f"--start={texts[1]}", "--device=cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == alone["label"] and out[0].endswith(texts[1])
    assert out[1].split()[::2] == list(alone["probs"])


def test_classifier_input_errors(trec_run, char_run):
    with pytest.raises(S.SampleError, match="nothing to classify"):
        S.classify(trec_run, "   ", device="cpu")
    with pytest.raises(S.SampleError, match="no words"):
        S.classify(trec_run, ["fine question ?", ""], device="cpu")
    with pytest.raises(S.SampleError, match="classifier"):
        S.sample(trec_run, device="cpu")
    with pytest.raises(S.SampleError, match="language model"):
        S.classify(char_run, "hello", device="cpu")


# ----------------------------------------------------------------------------------------------
# inference precision

@pytest.mark.parametrize("pos", ["rope", "learned", "sinusoidal", "alibi"])
def test_bf16_weights_stay_close_to_fp32_and_keep_fp32_tables(pos, monkeypatch):
    import model as model_module
    from model import Transformer, TransformerConfig
    seen = []  # the logits each generation step samples from (greedy here)
    monkeypatch.setattr(model_module, "sample_next", lambda logits, *a: seen.append(logits) or logits.argmax(-1, True))
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32,
                                          pos_encoding=pos)).eval()
    x = torch.randint(50, (2, 16))
    with torch.no_grad():
        ref, _ = model(x)
        half = S.cast_for_inference(model, torch.bfloat16)
        out, _ = half(x)
        gen = half.generate(x[:1, :3], 20, temperature=0)  # through the KV cache, past block_size
    assert out.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert all(b.dtype == torch.float32 for b in half.buffers())
    assert (out.float() - ref).abs().max() < 0.02 * ref.abs().max()
    assert gen.shape == (1, 23) and len(seen) == 20
    with torch.no_grad():  # the bf16 KV-cache steps against a bf16 full forward (bug caught: a table cast to bf16)
        for i, logits in enumerate(seen):
            window = gen[:, :3 + i] if pos in ("rope", "alibi") else gen[:, :3 + i][:, -16:]
            full = half(window)[0][:, -1].float()
            assert (logits.float() - full).abs().max() < 0.02 * full.abs().max(), i


def test_bf16_weights_lose_almost_no_val_loss(char_run, tiny_data):
    model, _, _, _ = S.load(char_run, "best", torch.device("cpu"))
    val = torch.from_numpy(Data("shakespeare_char", tiny_data).tokens("val").astype("int64"))
    n = (len(val) - 1) // 16 * 16  # the tiny split: a few hundred characters
    x, y = val[:n].view(-1, 16), val[1:n + 1].view(-1, 16)
    with torch.no_grad():
        full = model(x, y)[1].item()
        half = S.cast_for_inference(model, torch.bfloat16)(x, y)[1].item()
    assert abs(half - full) < 0.005 * full


def test_auto_dtype_is_bf16_on_a_cpu_for_one_sequence_only(char_run, trec_run, monkeypatch):
    """'auto' on a CPU stores bf16 weights to decode one sequence, fp32 for a batch of samples and
    for a classifier; an explicit dtype is kept; on CUDA bf16 wherever it is supported. Catches:
    bf16 chosen for a batch on a CPU (compute-bound there), or the number of samples not passed
    on (a single sample decoded in fp32, or a batch in bf16)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [S.inference_dtype("auto", cpu, n) for n in (1, 2, 3, None)] == [
        torch.bfloat16, torch.float32, torch.float32, torch.float32]
    for name in ("bfloat16", "float16", "float32"):
        assert S.inference_dtype(name, cpu, 1) == getattr(torch, name)
        assert S.inference_dtype(name, cpu, 4) == getattr(torch, name)
    for supported, want in [(True, torch.bfloat16), (False, torch.float32)]:
        with monkeypatch.context() as m:
            m.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
            assert S.inference_dtype("auto", cuda, 1) == S.inference_dtype("auto", cuda, 8) == want
            assert S.inference_dtype("auto", cuda) == want
    cast, real_cast = [], S.cast_for_inference
    monkeypatch.setattr(S, "cast_for_inference",
                        lambda model, dtype: cast.append(dtype) or real_cast(model, dtype))
    draw(char_run, max_new_tokens=2)
    draw(char_run, num_samples=3, max_new_tokens=2)
    draw(char_run, num_samples=3, max_new_tokens=2, dtype="bfloat16")
    common = [f"--out_dir={char_run}", "--max_new_tokens=2", "--device=cpu"]
    assert S.main(common) == 0 and S.main([*common, "--num_samples=2"]) == 0
    S.classify(trec_run, "Who wrote Hamlet ?", device="cpu")
    assert S.main([f"--out_dir={trec_run}", "--start=Who wrote Hamlet ?", "--device=cpu"]) == 0
    bf16, fp32 = torch.bfloat16, torch.float32
    assert cast == [bf16, fp32, bf16, bf16, fp32, fp32, fp32]


# ----------------------------------------------------------------------------------------------
# the vocabulary and the context

class LetterTokenizer:
    """'a' is id 0, 'b' id 1, ...: decodes any id, so an id past the vocabulary shows in the
    text."""
    kind = "char"

    def encode(self, text):
        return [ord(c) - ord("a") for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i) for i in ids)


class FixedHead(torch.nn.Module):
    """An LM head that gives every position the same logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, h):
        return self.logits.to(h.dtype).expand(*h.shape[:-1], -1)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_ids_at_and_above_the_vocabulary_are_never_sampled(num_samples):
    """A vocabulary of 8 padded to 16 rows, whose padding rows the head scores highest and id 7
    next: greedy decoding gives id 7 every time, sampling never an id >= 8. The model's config
    has no real_vocab_size here, so the vocab_size generate() is given is the only bound. Catches:
    vocab_limit not passed to the model (padding ids sampled), or off by one either way."""
    from model import Transformer, TransformerConfig
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16)
    model = Transformer(config).eval()
    logits = torch.zeros(16)
    logits[8:], logits[7] = 12.0, 4.0
    model.lm_head = FixedHead(logits)
    kw = dict(num_samples=num_samples, max_new_tokens=12, top_k=0)
    greedy = S.generate(model, LetterTokenizer(), 8, "abc", temperature=0, **kw)
    assert greedy == ["abc" + "h" * 12] * num_samples
    sampled = S.generate(model, LetterTokenizer(), 8, "abc", temperature=1.0, seed=0, **kw)
    assert all(set(t[3:]) <= set("abcdefgh") and "h" in t[3:] for t in sampled), sampled


def test_a_text_longer_than_the_context_is_classified_by_its_start(trec_run):
    """A text of more words than the context (32 tokens) gets exactly the label and probabilities
    of its first 31 words (with <cls>, 32 tokens), and those 32 tokens are read whole. Catches: the
    text not cut to block_size, cut one token too long or too short, or cut from the end (losing
    <cls> and the question's first words)."""
    model, tok, ckpt, _ = S.load(trec_run, "best", torch.device("cpu"))
    names = ckpt["data"]["meta"]["label_names"]
    words = [w for w in tok.itos[3:] if w.isalpha()][:45]
    assert len(words) == 45 and model.config.block_size == 32

    def read_whole(text):  # relative positions: the model takes any length
        with torch.no_grad():
            logits = model(torch.tensor([tok.encode(text)]))[0][0]
        return dict(zip(names, torch.softmax(logits, -1).tolist()))

    [whole] = S.classify(trec_run, " ".join(words), device="cpu")
    [start] = S.classify(trec_run, " ".join(words[:31]), device="cpu")
    assert whole["label"] == start["label"]
    assert whole["probs"] == pytest.approx(start["probs"], abs=1e-6)
    assert start["probs"] == pytest.approx(read_whole(" ".join(words[:31])), abs=1e-6)
    # the words past the context would change the answer if they were read
    assert whole["probs"] != pytest.approx(read_whole(" ".join(words)), abs=1e-4)
    assert start["probs"] != pytest.approx(read_whole(" ".join(words[:30])), abs=1e-4)


# ----------------------------------------------------------------------------------------------
# options, prompts and hints

def test_option_bounds_top_k_top_p_seed_and_dtype():
    """top_k=0 and top_p=1 (both off), the largest seed and every dtype are valid; a seed of 2**63
    is not. Catches: top_k=0 refused, the seed's bound moved, a dtype missing from the list."""
    cfg = S.parse_args(["--top_k=0", "--top_p=1", f"--seed={2**63 - 1}"])
    assert (cfg.top_k, cfg.top_p, cfg.seed) == (0, 1.0, 2**63 - 1)
    for name in ("auto", "bfloat16", "float16", "float32"):
        assert S.parse_args([f"--dtype={name}"]).dtype == name
    with pytest.raises(S.SampleError, match=re.escape(f"seed={2**63} must be in [0, 2**63)")):
        S.parse_args([f"--seed={2**63}"])


def test_missing_checkpoint_hints(tmp_path, monkeypatch):
    """The hint names the runs that exist, but not the one asked for; a trailing slash still finds
    the config that trains into the directory; the CPU recipe is suggested only without a GPU.
    Catches: the asked-for run offered as its own alternative, 'out-sst2/' not matched to
    config/sst2.py, the CPU hint given on a GPU machine or withheld on a CPU."""
    monkeypatch.chdir(tmp_path)
    for run, name in [("out-a", "ckpt_best.pt"), ("out-b", "ckpt_last.pt")]:
        (tmp_path / run).mkdir()
        (tmp_path / run / name).write_bytes(b"")
    with pytest.raises(S.CheckpointError) as e:
        S.find_checkpoint("out-a", "last")
    assert str(e.value).endswith("; or sample a run that exists: --out_dir=out-b")
    with pytest.raises(S.CheckpointError, match=re.escape("`python train.py config/sst2.py`")):
        S.find_checkpoint("out-sst2/")
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        with pytest.raises(S.CheckpointError) as e:
            S.find_checkpoint("out-shakespeare-char")
        assert "config/shakespeare.py" in str(e.value)
        assert ("config/shakespeare_cpu.py" in str(e.value)) is not cuda


def test_prompt_file_under_home_and_a_file_that_is_not_utf8(tmp_path, monkeypatch):
    """FILE:~/... reads from the home directory; a file that is not UTF-8 is a SampleError (an error
    line from main), not a traceback. Catches: ~ not expanded, UnicodeDecodeError not caught."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "p.txt").write_text("ROMAN:\n", encoding="utf-8")
    assert S.read_start("FILE:~/p.txt") == "ROMAN:\n"
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfeR\x00O\x00")
    with pytest.raises(S.SampleError, match="cannot be read as UTF-8"):
        S.read_start(f"FILE:{tmp_path / 'bin.txt'}")


def test_a_prompt_of_no_tokens_is_refused(char_run, capsys):
    """An empty prompt is a SampleError that says so, and main prints it as an error line. Catches:
    the check missing (the model then fails on an empty sequence)."""
    with pytest.raises(S.SampleError, match="encodes to no tokens"):
        draw(char_run, start="")
    assert S.main([f"--out_dir={char_run}", "--start=", "--device=cpu"]) == 1
    err = capsys.readouterr().err
    assert "encodes to no tokens" in err and "Traceback" not in err


def test_stream_decoder_passes_on_a_byte_no_later_token_completes():
    """A byte that starts no character shows as U+FFFD once the next token decodes cleanly, and the
    stream goes on. Catches: ids held back while U+FFFD is anywhere in the text (the rest of the
    sample would then wait for the end)."""
    dec = S.StreamDecoder(ByteTokenizer())
    pieces = [dec.push([0xFF]), dec.push([ord("a")]), dec.push([ord("b")]), dec.flush()]
    assert pieces == ["", "\ufffda", "b", ""]


def test_a_tiny_top_p_is_greedy(char_run, capsys):
    """top_p=1e-6 keeps only the most likely token: at temperature 1 the text is the greedy one,
    from sample() and from the command line. Catches: top_p not passed to the model, or not
    passed on by main (either samples from the whole distribution)."""
    greedy = draw(char_run, temperature=0)
    assert draw(char_run, top_p=1e-6, seed=5) == greedy
    assert S.main([f"--out_dir={char_run}", f"--start={PROMPT}", "--max_new_tokens=40",
                   "--temperature=1", "--top_k=0", "--top_p=1e-6", "--device=cpu"]) == 0
    assert capsys.readouterr().out == greedy[0] + "\n"


def test_each_streamed_piece_is_flushed_at_once(char_run):
    """One sample is flushed after every piece, so that each token shows as it arrives, not when
    the buffer fills. Catches: the flush missing."""
    events = []

    class Recorder(io.StringIO):
        def write(self, s):
            events.append("w")
            return super().write(s)

        def flush(self):
            events.append("f")
            super().flush()

    draw(char_run, max_new_tokens=20, stream=Recorder())
    assert "".join(events).count("wf") >= 20


def test_a_loaded_model_is_in_eval_mode(trec_run, tmp_path):
    """A classifier trained with layer_drop and word_dropout (which the dropout=0.0 override does
    not reach) labels a text the same way every time. Catches: the model left in training mode."""
    import checkpoint
    ckpt = checkpoint.load_checkpoint(trec_run / "ckpt_best.pt")
    ckpt["config"]["model"].update(layer_drop=0.5, word_dropout=0.5)
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "ckpt_best.pt")
    results = S.classify(tmp_path / "run", ["What is the capital of France ?"] * 8, device="cpu")
    assert all(r["probs"] == pytest.approx(results[0]["probs"], abs=1e-6) for r in results)


def test_whitespace_only_lines_of_a_file_are_skipped(trec_run, tmp_path):
    """Lines of spaces or tabs are blank lines: skipped, not texts without words. Catches: only
    empty lines skipped."""
    (tmp_path / "q.txt").write_text("Who wrote Hamlet ?\n   \n\t\nWhat is a spider ?\n")
    results = S.classify(trec_run, f"FILE:{tmp_path / 'q.txt'}", device="cpu")
    assert [r["text"] for r in results] == ["Who wrote Hamlet ?", "What is a spider ?"]


# ----------------------------------------------------------------------------------------------
# found by a mutation sweep of sample.py

def test_negative_token_counts_and_temperatures_are_refused():
    """max_new_tokens=-1 and a negative temperature are refused with their bound (0 itself is valid,
    see test_sampling_arguments_at_their_bounds). Catches: max_new_tokens' bound moved to < -1
    (-1 accepted, and generate() then asked for a negative number of tokens)."""
    for bad, text in [("--max_new_tokens=-1", "max_new_tokens=-1 must be >= 0"),
                      ("--temperature=-0.5", "temperature=-0.5 must be >= 0")]:
        with pytest.raises(S.SampleError, match=re.escape(text)):
            S.parse_args([bad])


def test_the_command_line_and_the_functions_share_their_defaults():
    """`python sample.py --out_dir=RUN` and sample(RUN) draw the same text, so every option shared
    by SampleConfig, sample() and generate() has the same default in each. Catches: a default
    (top_k, seed, temperature, ...) changed in one place only."""
    cfg = S.parse_args([])
    empty = inspect.Parameter.empty
    for func in (S.sample, S.generate):
        defaults = {k: p.default for k, p in inspect.signature(func).parameters.items()
                    if p.default is not empty and k != "stream"}
        assert defaults and all(hasattr(cfg, k) for k in defaults), func.__name__
        assert defaults == {k: getattr(cfg, k) for k in defaults}, func.__name__


def test_prompt_errors_quote_the_prompt_cut_to_40_characters(char_run):
    """An error about the prompt quotes it: whole up to 40 characters, else its first 40 and '...';
    an empty prompt shows as ''. Catches: the prompt missing from the message (shown as None), or
    cut at the wrong length."""
    exact = "ROMAN " * 6 + "ROMé"  # 40 characters, the last one not in the tiny data set
    assert len(exact) == 40
    with pytest.raises(S.SampleError) as e:
        draw(char_run, start=exact)
    assert str(e.value).startswith(f"prompt {exact!r}: ")
    longer = exact + "ROMAN"
    with pytest.raises(S.SampleError) as e:
        draw(char_run, start=longer)
    assert str(e.value).startswith(f"prompt {longer[:40] + '...'!r}: ")
    with pytest.raises(S.SampleError, match=re.escape("the prompt '' encodes to no tokens")):
        draw(char_run, start="")


def test_a_one_word_text_is_classified(trec_run):
    """A text of a single word (<cls> and one token) gets a label; only a text without any word is
    refused. Catches: the no-words check off by one (every one-word text refused)."""
    [result] = S.classify(trec_run, "Who", device="cpu")
    assert result["text"] == "Who" and result["label"] == next(iter(result["probs"]))
    assert sum(result["probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_main_reads_sys_argv_prints_help_and_names_the_checkpoint_on_stderr(char_run, monkeypatch,
                                                                             capsys):
    """main() without arguments reads sys.argv past the script name, as `python sample.py ...`
    runs it; --help prints the options and exits 0; a run names its checkpoint, step, size and
    device on stderr, leaving stdout to the text alone. Catches: the script name taken as an
    option, a failure code after --help, the checkpoint line missing."""
    monkeypatch.setattr(sys, "argv", ["sample.py", f"--out_dir={char_run}", f"--start={PROMPT}",
                                      "--max_new_tokens=5", "--temperature=0", "--device=cpu"])
    assert S.main() == 0
    out, err = capsys.readouterr()
    assert out == draw(char_run, max_new_tokens=5, temperature=0)[0] + "\n"
    model, _, ckpt, path = S.load(char_run)
    assert err == (f"{path}: step {ckpt['step']}, {model.num_params() / 1e6:.2f}M parameters, "
                   f"cpu\n")
    assert S.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--temperature" in out and "--top_k" in out
