"""Published runs through the CLI: train one, find the newest folder a stage published, and make a copy of a run
as older gbpipe wrote it."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

from pipeline.cli import main
from pipeline.core.artifacts import manifest_bytes
from pipeline.data.feature_bins import REFERENCE_FILE


def latest(folder: Path) -> Path:
    """The folder that `folder`/LATEST names (the newest run of an experiment, or the newest selection)."""
    return folder / (folder / "LATEST").read_text().strip()


def experiment_name(config: Path) -> str:
    return tomllib.loads(config.read_text())["experiment"]["name"]


def train_run(config: Path, *extra: str) -> Path:
    """`gbpipe train` through the CLI; returns the published run folder."""
    assert main(["train", "--config", str(config), "-q", *extra]) == 0
    return latest(config.parent / "runs" / experiment_name(config))


def without_reference(run: Path, dest: Path) -> Path:
    """A copy of the run (under dest/<experiment>/) as gbpipe wrote runs before drift_reference.json existed."""
    copy = dest / run.parent.name / run.name
    shutil.copytree(run, copy)
    (copy / REFERENCE_FILE).unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"][REFERENCE_FILE]
    (copy / "manifest.json").write_bytes(manifest_bytes(manifest))
    return copy
