"""Shared test setup: make the offline data mirror and tiktoken cache visible when present.

The real data sets live outside the repository (``shared/data`` inside the checkout on CI,
``../shared/data`` beside it in a development checkout). Tests that need them skip with a
reason when neither exists; no test touches the network.
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Tiny models on small CPUs: a second intra-op thread mostly waits (a 20-step run: 0.2 s with one
# thread, several seconds with two on a loaded 2-core machine).
import torch  # noqa: E402

torch.set_num_threads(1)


def _find_mirror():
    env = os.environ.get("TFS_DATA_MIRROR")
    if env:
        return Path(env)
    for cand in (ROOT / "shared" / "data", ROOT.parent / "shared" / "data"):
        if (cand / "SOURCES.md").exists():
            return cand
    return None


MIRROR = _find_mirror()
if MIRROR is not None and "TIKTOKEN_CACHE_DIR" not in os.environ:
    if (MIRROR / "tiktoken_cache").is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(MIRROR / "tiktoken_cache")


@pytest.fixture
def mirror():
    """Path of the offline data mirror, or skip the test."""
    if MIRROR is None:
        pytest.skip("offline data mirror (shared/data) not found; set TFS_DATA_MIRROR")
    return MIRROR


FIXTURES = ROOT / "tests" / "fixtures" / "prepare"
# pinned like the real sources, so an accidental edit of a fixture fails loudly
FIXTURE_SHA = {
    "tinyshakespeare/input.txt": "64e6d4f1e950f9276efe406f9237cc7afcdae97875d85b03373ae3d77f598eff",
    "trec/train_5500.label": "40b5e4ac8dcfed06ba0a48ddb2b8b22e2b99211a6813227a791edbacef2c513e",
    "trec/TREC_10.label": "eb9776046653a1c881fdaea8b696a5dee62dfc38715d6e2ceba048898fe58ac0",
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data_dir holding shakespeare_char (a few KB of Tiny Shakespeare) and trec (73 questions),
    prepared from the fixture files: fast, and independent of the offline mirror."""
    import prepare
    data_dir = tmp_path_factory.mktemp("tiny_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(prepare.MIRROR_ENV, raising=False)
        for rel, sha in FIXTURE_SHA.items():
            mp.setitem(prepare.SOURCES, rel, (prepare.SOURCES[rel][0], sha))
        prepare.prepare("shakespeare_char", source=FIXTURES / "tiny_shakespeare.txt", data_dir=data_dir, quiet=True)
        prepare.prepare("trec", source=FIXTURES, data_dir=data_dir, quiet=True)
    return data_dir


@pytest.fixture
def syncs(monkeypatch):
    """The test's fsyncs and renames, in order: ("fsync", st_ino of the file or directory synced)
    and ("replace", name renamed to). A file keeps its st_ino through the rename."""
    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_ino))
                        or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", Path(b).name))
                        or replace(a, b))
    return events
