"""The docs point at evidence that exists and quote it as it is: every relative link in README.md,
docs/ and the results READMEs and summaries resolves, every committed-results path README and
docs/ name in backticks exists, and every line that quotes a headline figure gives what the
committed runs give."""
import glob
import itertools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ALL_DOCS = TOP_DOCS + sorted((ROOT / "results").rglob("*.md"))


def expand(path):
    """'a/{b,c}-x/{1,2}.json' -> the four paths it names (a shell's brace expansion), and
    'ttl_2..4.json' -> ttl_2.json, ttl_3.json, ttl_4.json (a range of numbered files)."""
    parts = re.split(r"\{([^{}]*)\}|(\d+)\.\.(\d+)", path)
    choices = []
    for i in range(0, len(parts), 4):  # text, then a brace list or a range's two ends
        choices.append([parts[i]])
        if i + 1 < len(parts):
            brace, lo, hi = parts[i + 1:i + 4]
            choices.append(brace.split(",") if brace is not None
                           else [str(k) for k in range(int(lo), int(hi) + 1)])
    return ["".join(c) for c in itertools.product(*choices)]


def missing_links(doc):
    """The relative link targets of a markdown file, [text](target), that are not on disk."""
    text = doc.read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not t.startswith(("http://", "https://", "#", "mailto:"))]
    return [t for t in targets if not (doc.parent / t.split("#")[0]).exists()]


def missing_result_paths(doc):
    """Paths of committed results named in backticks, `results/...` from the repository's root
    or `../results/...` from the doc's folder (not commands: nothing with a space or an '='),
    with brace lists, ranges and globs, that match nothing on disk."""
    text = doc.read_text(encoding="utf-8")
    named = [t.rstrip(",.") for t in re.findall(r"`([^`\n]+)`", text)
             if t.startswith(("results/", "../results/")) and " " not in t and "=" not in t]

    def found(p):
        path = (doc.parent if p.startswith("../") else ROOT) / p
        return bool(glob.glob(str(path))) if "*" in p else path.exists()
    return [t for t in named if not all(found(p) for p in expand(t))]


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
    """The checks themselves: a missing link, a missing results path, and a brace list or a range
    with one missing member are reported; a present file, an anchor, a URL and a command are
    not."""
    assert expand("a/{b,c}/{1,2}.json") == ["a/b/1.json", "a/b/2.json", "a/c/1.json", "a/c/2.json"]
    assert expand("t_{x,y}_2..4.json") == ["t_x_2.json", "t_x_3.json", "t_x_4.json", "t_y_2.json",
                                           "t_y_3.json", "t_y_4.json"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/there.png").write_bytes(b"")
    (tmp_path / "results").mkdir()
    for k in (1, 2):
        (tmp_path / f"results/ttl_{k}.json").write_text("{}")
    doc = tmp_path / "docs/doc.md"
    doc.write_text("![x](there.png) [y](gone.png) [z](#anchor) [w](https://example.org/a)\n"
                   "`results/tests/` `results/{tests,nowhere}/` `results/no-such-dir/x.json`\n"
                   "`python ablate.py lm --out results/new-study` `results/tests/ci-*.log`\n"
                   "`../results/ttl_1..2.json` `../results/ttl_1..3.json`\n"
                   "`../results/ttl_*.json`\n")
    assert missing_links(doc) == ["gone.png"]
    assert missing_result_paths(doc) == ["results/{tests,nowhere}/", "results/no-such-dir/x.json",
                                         "../results/ttl_1..3.json"]


def mean_std(values):
    """Mean and sample standard deviation, as the docs quote them (n - 1 in the std)."""
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def read(path):
    return json.loads(Path(path).read_text())


def best_val(log):
    return min(r["loss"] for r in map(json.loads, log.read_text().splitlines())
               if r.get("kind") == "eval" and r.get("split", "val") == "val")


def accuracies(results):
    return [r["accuracy"] for r in read(ROOT / results)["test"]["runs"]]


R = ROOT / "results"
# each headline figure: its seeds' values from the committed files the docs name, how it is
# quoted (decimals; "%": accuracy in percent, also quoted as a fraction in REPORT), and the lines
# that quote it, each found by how it begins
HEADLINES = {
    "Tiny Shakespeare": (
        lambda: [best_val(p) for p in sorted((R / "shakespeare_char").glob("log*.jsonl"))], 4, "",
        [("docs/REPORT.md", "| Tiny Shakespeare, characters |"),
         ("docs/PERFORMANCE.md", "| Tiny Shakespeare chars, best exact val loss, main job |")]),
    "WikiText-2, shipped recipe": (
        lambda: [read(p)["perplexity"] for p in
                 sorted((R / "recipes/wt2long/runs").glob("wd-2.0-s*/metrics_test.json"))], 2, "",
        [("README.md", "| WikiText-2, test perplexity"),
         ("docs/REPORT.md", "| WikiText-2, words | test perplexity"),
         ("docs/PERFORMANCE.md", "| WikiText-2 test perplexity, sliding window stride 64, the "
                                 "shipped config"),
         ("results/recipes/wt2long/README.md", "  - `wd=2.0`, now `config/wikitext2.py`:")]),
    "WikiText-2, 8,000 steps": (
        lambda: [read(p)["perplexity"] for p in
                 [R / "benchmarks/wikitext2-ema/test_ema0.9995.json",  # seed 1337, then the others
                  *sorted((R / "benchmarks/wikitext2-ema").glob("test_seed*.json"))]], 2, "",
        [("README.md", "| WikiText-2, the 8,000-step recipe before it"),
         ("docs/REPORT.md", "| WikiText-2, words: the 8,000-step recipe before it"),
         ("docs/PERFORMANCE.md", "| WikiText-2 test perplexity, sliding window stride 64, the "
                                 "8,000-step recipe before it")]),
    "SST-2, pretrained": (
        lambda: accuracies("results/benchmarks/sst2-pretrained-6k/results.json"), 2, "%",
        [("README.md", "| SST-2, accuracy %"),
         ("docs/REPORT.md", "| SST-2, pretrained encoder |")]),
    "TREC-6, pretrained": (
        lambda: accuracies("results/benchmarks/trec-pretrained-6k/results.json"), 2, "%",
        [("README.md", "| TREC-6, accuracy %"),
         ("docs/REPORT.md", "| TREC-6, pretrained encoder |")]),
    "SST-2, from scratch": (
        lambda: [read(p)["accuracy"] for p in
                 sorted((R / "benchmarks-2026-11-27/sst2").glob("test_seed*.json"))], 2, "%",
        [("README.md", "| SST-2, accuracy %"), ("docs/REPORT.md", "| SST-2, from scratch |")]),
    "TREC-6, from scratch": (
        lambda: accuracies("results/recipes/trecreg/results.json"), 2, "%",
        [("README.md", "| TREC-6, accuracy %"), ("docs/REPORT.md", "| TREC-6, from scratch |")]),
}


def quoted_forms(values, decimals, unit):
    """The ways a doc may write mean ± std of values: as is, or for an accuracy in percent
    (README) or as a fraction (REPORT)."""
    if unit != "%":
        mean, std = mean_std(values)
        return [f"{mean:.{decimals}f} ± {std:.{decimals}f}"]
    (mean, std), (pmean, pstd) = mean_std(values), mean_std([100 * v for v in values])
    return [f"{pmean:.{decimals}f} ± {pstd:.{decimals}f}",
            f"{mean:.{decimals + 2}f} ± {std:.{decimals + 2}f}"]


@pytest.mark.parametrize("name", HEADLINES)
def test_the_results_tables_quote_the_committed_runs(name):
    """Every line that quotes a headline figure (README's results table, REPORT section 1,
    PERFORMANCE, the recipe's README) gives the mean ± std and the number of seeds that the
    committed files give today. Bug caught: a number typed by hand, or one copy left behind
    when a seed is added or a recipe changes."""
    files, decimals, unit, places = HEADLINES[name]
    values = files()
    assert len(values) >= 2, f"{name}: fewer than 2 committed seeds"
    forms = quoted_forms(values, decimals, unit)
    for doc, start in places:
        lines = [ln for ln in (ROOT / doc).read_text().splitlines() if ln.startswith(start)]
        assert len(lines) == 1, f"{doc}: {len(lines)} lines begin {start!r}, expected 1"
        line = lines[0].replace("*", "")
        assert any(f in line for f in forms), f"{doc}: {start!r} does not quote {forms[0]}"
        n = len(values)
        assert re.search(rf"\b{n} seeds|\| {n} \||\({n} seeds", line), \
            f"{doc}: {start!r} does not say {n} seeds"
