"""Masked-LM pretraining and fine-tuning from it: data.mlm_mask (BERT's corruption), the
pretraining corpus (training text only, one shared vocabulary), the mlm task in train.py, and
init_from=PATH (a classifier started from a pretrained encoder). Each docstring names the bug
it catches."""
import dataclasses
import json

import pytest
import torch

import prepare
import checkpoint
import evaluation
import train
from conftest import FIXTURE_SHA, FIXTURES
from data import MLM_SPECIALS, Data, mlm_mask
from test_train import run, tiny_args


@pytest.fixture(scope="session")
def tiny_shared(tmp_path_factory):
    """mlm_corpus and trec_shared built from the TREC fixture alone (its training questions are the
    whole pretraining corpus here), plus the plain trec set, in one data_dir."""
    data_dir = tmp_path_factory.mktemp("tiny_shared")
    trec = ["trec/train_5500.label", "trec/TREC_10.label"]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(prepare.MIRROR_ENV, raising=False)
        for rel, sha in FIXTURE_SHA.items():
            mp.setitem(prepare.SOURCES, rel, (prepare.SOURCES[rel][0], sha))
        mp.setattr(prepare, "_mlm_texts", lambda raw: [t for t, _ in prepare._trec_splits(raw)[0][0]])
        mp.setitem(prepare.DATASETS, "mlm_corpus", {**prepare.DATASETS["mlm_corpus"], "sources": trec[:1],
                                                    "build": lambda raw: prepare.build_mlm_corpus(raw, val_every=4)})
        mp.setitem(prepare.DATASETS, "trec_shared", {**prepare.DATASETS["trec_shared"], "sources": trec})
        for name in ("mlm_corpus", "trec_shared", "trec"):
            prepare.prepare(name, source=FIXTURES, data_dir=data_dir, quiet=True)
    return data_dir


MLM_RUN = ("--dataset=mlm_corpus", "--causal=false", "--max_iters=6", "--eval_interval=3", "--block_size=32")


def test_mlm_mask_follows_bert():
    """15% of the non-special tokens chosen; of those 80% <mask>, 10% a random word, 10% kept; the
    target is the original token there and -1 elsewhere. Bugs caught: a wrong rate or split, special
    tokens chosen, targets that are the corrupted token, random words drawn from the specials."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(MLM_SPECIALS, 1000, (400, 500))
    x[:, 0] = 2  # <cls> at every start, as in the corpus
    xm, y = mlm_mask(x, 3, 1000, g)
    chosen = y >= 0
    assert not chosen[:, 0].any() and (xm[:, 0] == 2).all()
    assert chosen.float().mean().item() == pytest.approx(0.15 * 499 / 500, abs=0.003)
    assert torch.equal(y[chosen], x[chosen]) and torch.equal(xm[~chosen], x[~chosen])
    masked, same = (xm == 3) & chosen, (xm == x) & chosen
    n = chosen.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.01)
    assert same.sum().item() / n == pytest.approx(0.1 + 0.1 / 996, abs=0.01)  # kept, or drawn as itself
    assert (xm[chosen] >= MLM_SPECIALS).logical_or(xm[chosen] == 3).all()
    again = mlm_mask(x, 3, 1000, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], xm) and torch.equal(again[1], y)  # a function of the seed alone


def test_mlm_mask_chooses_every_word_id_and_no_special():
    """At rate 1 every word, the first word id (MLM_SPECIALS) included, is a target, and no special
    id is. Bug caught: the specials' bound off by one (`x > MLM_SPECIALS`), so the first word of
    the vocabulary is never learned."""
    g = torch.Generator().manual_seed(0)
    x = torch.arange(10).repeat(3, 1)  # ids 0..3 special, 4..9 words
    _, y = mlm_mask(x, 3, 10, g, rate=1.0)
    assert torch.equal(y[:, MLM_SPECIALS:], x[:, MLM_SPECIALS:]) and (y[:, :MLM_SPECIALS] == -1).all()


def test_mlm_mask_draws_random_words_uniformly_from_every_word_id():
    """The chosen tokens turned into a random word draw it uniformly from the word ids
    MLM_SPECIALS .. vocab_size - 1, the first and the last included, never a special id. Input
    of one word (6) everywhere, so every other id in the output is a draw: each of the 5 others
    comes about 0.1 / 6 of the chosen times. Catches: the bounds of the draw off by one
    (`randint(MLM_SPECIALS + 1, ...)`, `randint(..., vocab_size - 1)`: the first or the last word
    of the vocabulary never drawn)."""
    g = torch.Generator().manual_seed(0)
    vocab = 10
    x = torch.full((400, 500), 6)
    xm, y = mlm_mask(x, 3, vocab, g)
    counts = torch.bincount(xm[(y >= 0) & (xm != 3)], minlength=vocab)
    assert not counts[:MLM_SPECIALS].any()
    expected = int((y >= 0).sum()) * 0.1 / (vocab - MLM_SPECIALS)  # about 500
    for word in (4, 5, 7, 8, 9):
        assert counts[word].item() == pytest.approx(expected, rel=0.2), word


def test_real_corpus_holds_no_val_or_test_text(mirror, tmp_path):
    """The pretraining texts are training text only. Bug caught: the SST-2 or TREC val carve (or a test
    file) leaking into the corpus the classifiers are pretrained on."""
    raw = prepare.fetch("mlm_corpus", mirror, tmp_path, quiet=True)
    raw.update(prepare.fetch("sst2", mirror, tmp_path, quiet=True))
    raw.update(prepare.fetch("trec", mirror, tmp_path, quiet=True))
    texts = set(prepare._mlm_texts(raw))
    (_, sst2_val, sst2_test), _, _ = prepare._sst2_splits(raw)
    (trec_train, trec_val, trec_test), _, _ = prepare._trec_splits(raw)
    assert texts.isdisjoint(t for t, _ in sst2_val + sst2_test + trec_val)
    # TREC's test file repeats 10 training questions verbatim (a property of the data set, see README)
    assert {t for t, _ in trec_test} & texts == {t for t, _ in trec_test} & {t for t, _ in trec_train}


def test_corpus_holds_out_every_hundredth_text(monkeypatch):
    """README and the data set's notes: every 100th text (the 100th, 200th, ...) is val. Bugs caught:
    another period, another phase."""
    texts = [f"common w{i % 7}" for i in range(250)]
    monkeypatch.setattr(prepare, "_mlm_texts", lambda raw: texts)
    built = prepare.build_mlm_corpus(None)
    itos = built["tokenizer"]["vocab"]
    val = " ".join(itos[i] for i in built["splits"]["val"])
    assert val == "<cls> common w1 <cls> common w3"  # texts 99 and 199
    assert len(built["splits"]["train"]) == 248 * 3 and "every 100th text is val" in built["notes"]


def test_shared_vocabulary_is_the_corpus_vocabulary(tiny_shared):
    """sst2_shared / trec_shared are tokenized with mlm_corpus's vocabulary, and it has <mask>. Bug
    caught: the classification set building its own vocabulary, so pretrained ids mean other words."""
    corpus, cls = Data("mlm_corpus", tiny_shared), Data("trec_shared", tiny_shared)
    assert corpus.meta["tokenizer"] == cls.meta["tokenizer"]
    assert corpus.tokenizer.itos[:4] == ["<pad>", "<unk>", "<cls>", "<mask>"] and corpus.mask_id == 3
    assert (corpus.pad_id, corpus.meta["unk_id"], corpus.meta["cls_id"]) == (0, 1, 2) == (
        cls.pad_id, cls.meta["unk_id"], cls.meta["cls_id"])
    own = Data("trec", tiny_shared)
    assert own.meta["tokenizer"] != cls.meta["tokenizer"]


def test_mlm_training_targets_only_masked_tokens(tiny_shared, tmp_path):
    """A training batch of the mlm task is masked windows, and the evaluation scores only masked tokens
    with the same masks every time. Bugs caught: the targets of a causal LM (next tokens) used for an
    encoder, evaluation masks drawn afresh (val loss noise), every token counted."""
    cfg, kw = train.parse_args(tiny_args(tiny_shared, tmp_path / "p", *MLM_RUN))
    data = Data("mlm_corpus", tiny_shared)
    batches = train.Batches(data, cfg, 32, torch.device("cpu"), 1)
    x, y = batches.get(0, 0, 0)
    chosen = y >= 0
    assert 0 < chosen.float().mean() < 0.3 and ((x == data.mask_id) <= chosen).all()
    result = run(tiny_shared, tmp_path / "p", *MLM_RUN)
    model = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tmp_path / "p" / "ckpt_last.pt"))
    assert model.config.mlm and not model.config.causal
    again = evaluation.evaluate(model, data, "val", cfg, torch.device("cpu"), train.nullcontext())
    assert again["loss"] == pytest.approx(result["loss"], rel=1e-6)
    n_val = len(data.tokens("val")) - 1
    assert 0.05 * n_val < again["tokens"] < 0.3 * n_val  # the masked ~15% (of 161 here), not every token
    # a stride (a causal LM's sliding window) is not for masked windows: each token once, as above.
    # Bug caught: eval_stride applied to a masked LM, scoring overlapping windows and other masks
    strided = dataclasses.replace(cfg, eval_stride=4)
    cpu = torch.device("cpu")
    assert evaluation.evaluate(model, data, "val", strided, cpu, train.nullcontext()) == again
    assert evaluation.evaluate(model, data, "val", cfg, cpu, train.nullcontext(), stride=4) == again


@pytest.mark.parametrize("masked", [0.15, 0.0])
def test_mlm_training_loss_scores_the_masked_tokens_alone(masked):
    """The training path of a masked LM (the head on the masked positions only) against the plain
    path (logits everywhere, then cross-entropy ignoring unmasked targets): the same loss and
    gradients; a batch with no masked token gives loss 0 and no error on an empty selection. Bugs
    caught: the wrong positions kept, the mean taken over every token, the empty case crashing."""
    torch.manual_seed(0)
    model = train.Transformer(train.TransformerConfig(vocab_size=40, block_size=12, n_layer=2, n_head=2,
                                                      n_embd=16, causal=False, mlm=True))
    x = torch.randint(MLM_SPECIALS, 40, (3, 12))
    y = torch.where(torch.rand(3, 12) < masked, x, -1)
    y[0, 0] = -1  # the position the selection always keeps is an unscored one here
    grads = []
    for fused in (True, False):
        model.zero_grad()
        logits, loss = model(x, y, return_logits=not fused)
        assert (logits is None) == fused
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = grads
    if not masked:  # (the plain path's mean over no targets is nan)
        assert float(fused_loss) == 0.0 and all(not g.any() for g in fused_grads)
        return
    assert plain_loss > 1.0
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert len(fused_grads) == len(plain_grads)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_classifier_starts_from_the_pretrained_encoder(tiny_shared, tmp_path, capsys):
    """init_from=PATH copies every encoder weight and takes the encoder's shape; only the classifier
    head is new, and the run says so. Bugs caught: the weights not loaded (a model from scratch), the
    shape taken from the command line, the LM head kept, a silent start."""
    run(tiny_shared, tmp_path / "p", *MLM_RUN, "--n_layer=1", "--n_embd=48", "--n_head=4")
    encoder = checkpoint.load_checkpoint(tmp_path / "p" / "ckpt_best.pt")["model"]
    shapeless = [a for a in tiny_args(tiny_shared, tmp_path / "c", "--dataset=trec_shared", "--causal=false",
                                      "--max_iters=0", "--warmup_iters=0", "--save_checkpoints=false",
                                      f"--init_from={tmp_path / 'p' / 'ckpt_best.pt'}")
                 if not a.startswith(("--n_layer", "--n_head", "--n_embd"))]
    capsys.readouterr()
    train.train(*train.parse_args(shapeless), quiet=False)
    out = capsys.readouterr().out
    step = checkpoint.load_checkpoint(tmp_path / "p" / "ckpt_best.pt")["step"]
    assert (f"initialised from {tmp_path / 'p' / 'ckpt_best.pt'} (step {step} of a mlm_corpus run)"
            in out and "head (cls_head.weight, cls_head.bias) starts from scratch" in out), out
    ckpt = checkpoint.load_checkpoint(tmp_path / "c" / "ckpt_last.pt")
    assert (ckpt["config"]["model"]["n_layer"], ckpt["config"]["model"]["n_embd"]) == (1, 48)
    state = ckpt["model"]
    assert {k for k in state if k.startswith("cls_head.")} and not any(k.startswith("lm_head.") for k in state)
    for k, v in encoder.items():
        if not k.startswith("lm_head."):
            assert torch.equal(state[k], v), k


def test_init_from_refuses_what_cannot_be_joined(tiny_shared, tmp_path):
    """Bugs caught: a classifier in another vocabulary silently started from the encoder (ids that mean
    other words), a clashing shape ignored, a language-model data set fine-tuned, a missing file."""
    run(tiny_shared, tmp_path / "p", *MLM_RUN)
    path = tmp_path / "p" / "ckpt_best.pt"
    cases = [(["--dataset=trec", f"--init_from={path}"], "vocabulary"),
             (["--dataset=trec_shared", f"--init_from={path}", "--n_layer=3"], "n_layer=2 there, 3 here"),
             (["--dataset=mlm_corpus", f"--init_from={path}"], "for classifiers"),
             (["--dataset=trec_shared", f"--init_from={tmp_path / 'nothing.pt'}"], "not 'scratch', 'resume'")]
    for extra, message in cases:
        cfg, kw = train.parse_args(tiny_args(tiny_shared, tmp_path / "c", "--causal=false", "--block_size=32",
                                             "--max_iters=2", *extra))
        with pytest.raises(train.ConfigError, match=message):
            train.train(cfg, kw, quiet=True)


def test_a_fine_tuning_study_skips_its_finished_runs_and_reruns_for_another_encoder(tiny_shared, tmp_path):
    """ablate.py with --set init_from=PATH: every run starts from that encoder; a second invocation
    skips the finished runs although their shape came from the checkpoint, and a third with another
    encoder trains them again. Bugs caught: the encoder's shape compared with the defaults (every
    finished run retrained), the encoder left out of the comparison (stale runs kept), init_from
    refused or ignored."""
    import shutil
    import ablate
    run(tiny_shared, tmp_path / "p", *MLM_RUN, "--n_layer=1", "--n_embd=48", "--n_head=4")
    first, other = tmp_path / "p" / "ckpt_best.pt", tmp_path / "other.pt"
    shutil.copy(first, other)
    kw = dict(seeds=1, quick=True, out=tmp_path / "study", variants=["lr=2e-4"], quiet=True)
    extra = {"data_dir": str(tiny_shared), "dataset": "trec_shared", "block_size": "32"}
    results = ablate.run_study("pretrained", extra={**extra, "init_from": str(first)}, **kw)
    assert results["ran"] == 1 and results["failed"] == []
    saved = (tmp_path / "study" / "runs" / "lr-2e-4-s0" / "config.json").read_text()
    assert str(first) in saved and '"n_embd": 48' in saved
    again = ablate.run_study("pretrained", extra={**extra, "init_from": str(first)}, **kw)
    assert again["ran"] == 0 and again["skipped"] == 1
    assert again["summary"] == results["summary"]
    moved = ablate.run_study("pretrained", extra={**extra, "init_from": str(other)}, **kw)
    assert moved["ran"] == 1
    # a run cut off and resumed still records the encoder it started from (config.json), so it is
    # kept for that encoder and trained again for another
    kw2 = {**kw, "out": tmp_path / "cut"}
    ablate.run_study("pretrained", extra={**extra, "init_from": str(first), "stop_after": "5"}, **kw2)
    resumed = ablate.run_study("pretrained", extra={**extra, "init_from": str(first)}, **kw2)
    assert resumed["ran"] == 1 and resumed["failed"] == []
    saved = json.loads((tmp_path / "cut" / "runs" / "lr-2e-4-s0" / "config.json").read_text())
    assert saved["train"]["init_from"] == str(first.resolve())
    assert ablate.run_study("pretrained", extra={**extra, "init_from": str(first)}, **kw2)["ran"] == 0
    assert ablate.run_study("pretrained", extra={**extra, "init_from": str(other)}, **kw2)["ran"] == 1
    with pytest.raises(ablate.StudyError, match="init_from=resume"):
        ablate.run_study("pretrained", extra={**extra, "init_from": "resume"}, **kw)
    with pytest.raises(ablate.StudyError, match="no such file"):
        ablate.run_study("pretrained", extra={**extra, "init_from": str(tmp_path / "none.pt")}, **kw)


def test_corpus_vocabulary_is_most_frequent_first(monkeypatch):
    """mlm_vocab: after <pad> <unk> <cls> <mask>, the words seen twice or more, most frequent first
    (ties in alphabetical order), as its docstring says. Catches: the words in alphabetical order
    only, or a word seen once admitted."""
    texts = ["zebra apple zebra", "mango zebra apple", "mango once"]
    monkeypatch.setattr(prepare, "_mlm_texts", lambda raw: texts)
    assert prepare.mlm_vocab(None)["vocab"] == ["<pad>", "<unk>", "<cls>", "<mask>",
                                                "zebra", "apple", "mango"]


def test_corpus_texts_leave_out_blank_wikitext_lines(monkeypatch):
    """_mlm_texts takes WikiText-2's non-blank train lines, then the SST-2 and TREC train sides.
    Catches: blank lines kept, each a text of its own ('<cls>' alone in the token stream, and the
    every-100th val choice shifted)."""
    wiki = b" \n = Title = \n \n Some words here . \n\n"
    raw = {"wikitext-2/wiki.train.tokens": wiki}
    sst2, trec = [("a fine film", 1)], [("what is it ?", 2)]
    monkeypatch.setattr(prepare, "_sst2_splits", lambda raw: ((sst2, [], []), "", {}))
    monkeypatch.setattr(prepare, "_trec_splits", lambda raw: ((trec, [], []), "", {}))
    assert prepare._mlm_texts(raw) == [" = Title = ", " Some words here . ", "a fine film",
                                       "what is it ?"]


@pytest.mark.parametrize("dataset", ["mlm_corpus", "sst2"])
def test_stop_at_loss_is_refused_where_the_loss_is_not_a_language_models(dataset):
    """stop_at_loss is a causal language model's target; a masked LM's loss (over the masked
    tokens alone) or a classifier's is not that loss. Bugs caught: the option accepted and then
    ignored (the run trains to max_iters while the user waits for a stop), or accepted and obeyed
    on another loss."""
    with pytest.raises(train.ConfigError, match=f"stop_at_loss=2.0 is a language model's target"
                                                f".*{dataset!r} is a (masked-LM|classification) "
                                                f"data set; drop it"):
        train.parse_args([f"--dataset={dataset}", "--causal=false", "--stop_at_loss=2.0"])
    train.parse_args(["--dataset=wikitext2", "--stop_at_loss=2.0"])  # a language model: fine
