"""The docs point at evidence that exists: every relative link in README.md, docs/ and the results
READMEs and summaries, and every committed-results path the top docs name in backticks."""
import itertools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ALL_DOCS = TOP_DOCS + sorted((ROOT / "results").rglob("*.md"))


def expand(path):
    """'a/{b,c}-x/{1,2}.json' -> the four paths it names (as a shell's brace expansion)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def missing_links(doc):
    """The relative link targets of a markdown file, [text](target), that are not on disk."""
    text = doc.read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not t.startswith(("http://", "https://", "#", "mailto:"))]
    return [t for t in targets if not (doc.parent / t.split("#")[0]).exists()]


def missing_result_paths(doc):
    """Paths under results/ named in backticks (not commands: nothing with a space or an '='),
    with brace lists and globs, that match nothing on disk."""
    text = doc.read_text(encoding="utf-8")
    named = [t.rstrip(",.") for t in re.findall(r"`([^`\n]+)`", text)
             if t.startswith("results/") and " " not in t and "=" not in t]
    return [t for t in named if not all(any(ROOT.glob(p.rstrip("/"))) if "*" in p
                                        else (ROOT / p).exists() for p in expand(t))]


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_in_the_docs_resolves(doc):
    """Bug caught: a figure or evidence file moved, renamed or never committed while a doc still
    links it (a summary's chart that was overwritten by a later run, a renamed results folder)."""
    assert missing_links(doc) == []


@pytest.mark.parametrize("doc", TOP_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_results_path_the_docs_name_exists(doc):
    """Bug caught: a published number whose evidence file, named in the text, is not committed."""
    assert missing_result_paths(doc) == []


def test_the_checks_find_what_is_missing(tmp_path):
    """The checks themselves: a missing link, a missing results path and a brace list with one
    missing member are reported; a present file, an anchor, a URL and a command are not."""
    assert expand("a/{b,c}/{1,2}.json") == ["a/b/1.json", "a/b/2.json", "a/c/1.json", "a/c/2.json"]
    (tmp_path / "there.png").write_bytes(b"")
    doc = tmp_path / "doc.md"
    doc.write_text("![x](there.png) [y](gone.png) [z](#anchor) [w](https://example.org/a)\n"
                   "`results/tests/` `results/{tests,nowhere}/` `results/no-such-dir/x.json`\n"
                   "`python ablate.py lm --out results/new-study` `results/tests/ci-*.log`\n")
    assert missing_links(doc) == ["gone.png"]
    assert missing_result_paths(doc) == ["results/{tests,nowhere}/", "results/no-such-dir/x.json"]


def mean_std(values):
    """Mean and sample standard deviation, as the docs quote them (n - 1 in the std)."""
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def read(path):
    return json.loads((ROOT / path).read_text())


def headlines():
    """Each published headline figure, recomputed from the files the docs name for it:
    (what, seeds' values, scale, decimals)."""
    wt2 = sorted((ROOT / "results/recipes/wt2long/runs").glob("wd-2.0-s*/metrics_test.json"))
    ema = "results/benchmarks/wikitext2-ema/"
    scratch_sst2 = sorted((ROOT / "results/benchmarks-2026-11-27/sst2").glob("test_seed*.json"))
    test_runs = lambda f: [r["accuracy"] for r in read(f)["test"]["runs"]]
    best_val = lambda p: min(r["loss"] for r in map(json.loads, p.read_text().splitlines())
                             if r.get("kind") == "eval" and r.get("split", "val") == "val")
    chars = sorted((ROOT / "results/shakespeare_char").glob("log*.jsonl"))
    return [
        ("Tiny Shakespeare", [best_val(p) for p in chars], 1, 4),
        ("WikiText-2, shipped recipe", [json.loads(p.read_text())["perplexity"] for p in wt2],
         1, 2),
        ("WikiText-2, 8,000 steps", [read(ema + f)["perplexity"] for f in
                                     ("test_ema0.9995.json", "test_seed1.json", "test_seed2.json")],
         1, 2),
        ("SST-2, pretrained", test_runs("results/benchmarks/sst2-pretrained-6k/results.json"), 100,
         2),
        ("TREC-6, pretrained", test_runs("results/benchmarks/trec-pretrained-6k/results.json"), 100,
         2),
        ("SST-2, from scratch", [json.loads(p.read_text())["accuracy"] for p in scratch_sst2], 100,
         2),
        ("TREC-6, from scratch", test_runs("results/recipes/trecreg/results.json"), 100, 2),
    ]


@pytest.mark.parametrize("what,values,scale,decimals", headlines(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_the_results_tables_quote_the_committed_runs(what, values, scale, decimals):
    """Bug caught: a headline number typed by hand, or left behind when a seed was added or a
    recipe changed; README's table and REPORT's section 1 must both say what the files give."""
    assert len(values) >= 2, f"{what}: fewer than 2 committed seeds"
    mean, std = mean_std([v * scale for v in values])
    quoted = f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    assert quoted in (ROOT / "README.md").read_text(), f"README does not quote {what}: {quoted}"
    report = (ROOT / "docs/REPORT.md").read_text()
    as_fraction = f"{mean / 100:.{decimals + 2}f} ± {std / 100:.{decimals + 2}f}"
    assert quoted in report or (scale == 100 and as_fraction in report), \
        f"REPORT does not quote {what}: {quoted}"
