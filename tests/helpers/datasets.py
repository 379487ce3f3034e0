"""The real datasets the tests read: the shared data folder and the lookup of one file in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

SHARED = Path(os.environ.get("GBPIPE_DATA_DIR", ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A real dataset file: data/raw (after `make data`) or the shared folder."""
    for base in (ROOT / "data" / "raw", SHARED):
        if (base / relative).is_file():
            return base / relative
    pytest.fail(f"dataset {relative} not found under data/raw or {SHARED}; run `make data`")
