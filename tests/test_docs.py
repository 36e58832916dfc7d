"""The docs point at evidence that exists: every relative link in README.md, docs/ and the results
READMEs and summaries, and every committed-results path the top docs name in backticks."""
import itertools
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
