"""Published runs through the CLI: train one, and find the newest folder a stage published."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pipeline.cli import main


def latest(folder: Path) -> Path:
    """The folder that `folder`/LATEST names (the newest run of an experiment, or the newest selection)."""
    return folder / (folder / "LATEST").read_text().strip()


def experiment_name(config: Path) -> str:
    return tomllib.loads(config.read_text())["experiment"]["name"]


def train_run(config: Path, *extra: str) -> Path:
    """`gbpipe train` through the CLI; returns the published run folder."""
    assert main(["train", "--config", str(config), "-q", *extra]) == 0
    return latest(config.parent / "runs" / experiment_name(config))
