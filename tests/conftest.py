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
