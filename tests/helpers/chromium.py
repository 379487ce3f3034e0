"""Headless Chromium for the report rendering tests: find the binary (or skip) and load a page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str | None:
    """The Chromium binary, or skip (fail when GBPIPE_REQUIRE_SERVICES=1, as in CI)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("GBPIPE_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is required (GBPIPE_REQUIRE_SERVICES=1) but not installed; apt-get install chromium")
        pytest.skip("chromium not installed")
    return found


def render(page: Path, profile: Path) -> subprocess.CompletedProcess:
    """Load a page in headless Chromium with network features off; stdout holds the DOM after load."""
    binary = chromium()
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
