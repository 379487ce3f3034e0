"""Fixtures of the reliability tests: a published baseline run of experiment `rel`, trained once per session,
and a fresh copy of it under tmp_path for each test (helpers are in tests/helpers/reliability.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.helpers.reliability import EXPERIMENT, Project, adult_data, adult_rows, tree_hashes, write_rel_config


@pytest.fixture(scope="session")
def baseline_runs(tmp_path_factory) -> tuple[Path, Path, dict]:
    """One published run of experiment `rel` on real adult rows, trained once per session."""
    base = tmp_path_factory.mktemp("baseline")
    train, test = adult_rows()
    train.to_parquet(base / "train.parquet", index=False)
    test.to_parquet(base / "test.parquet", index=False)
    data = adult_data(base / "train.parquet", base / "test.parquet")
    config = write_rel_config(base / "exp.toml", base / "runs", data)
    assert main(["train", "--config", str(config), "-q", "--run-id", "baseline"]) == 0
    return base / "runs", base / "runs" / EXPERIMENT / "baseline", data


@pytest.fixture
def project(tmp_path, baseline_runs, monkeypatch) -> Project:
    """A fresh copy of the baseline runs folder under tmp_path (the working directory for the test)."""
    runs, baseline, data = baseline_runs
    shutil.copytree(runs, tmp_path / "runs", symlinks=True)
    monkeypatch.chdir(tmp_path)
    proj = Project(tmp_path, tmp_path / "runs", tmp_path / "runs" / EXPERIMENT / baseline.name, data)
    proj.before = tree_hashes(proj.runs_dir)
    return proj
