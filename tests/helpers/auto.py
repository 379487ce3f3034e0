"""Helpers of the `gbpipe auto` tests: configs with only [data] (and a fast one-thread [model]), the CLI in this
process or in a subprocess, and reading an auto run's record back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from pipeline.cli import main
from tests.helpers.datasets import shared_file
from tests.helpers.paths import ROOT

CANCER = {"train": "sklearn:breast_cancer", "target": "target", "task": "binary", "test_size": 0.25}
FAST_MODEL = {"num_threads": 1, "num_boost_round": 300, "early_stopping_rounds": 20, "params": {"learning_rate": 0.1}}


def auto_config(tmp_path: Path, name: str = "auto_exp", data: dict | None = None, **sections) -> Path:
    """An experiment file with no [experiment] (auto names it after the file), the data and a fast [model]."""
    config = {"data": data or CANCER, "model": FAST_MODEL, **sections}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def adult_slice(tmp_path: Path, rows: int, name: str = "adult_slice") -> dict:
    """[data] of `rows` real adult training rows and a quarter as many test rows, as parquet in tmp_path."""
    adult = pd.read_parquet(shared_file("adult/adult.parquet"))
    train = adult[adult["split"] == "train"].sample(rows, random_state=0)
    test = adult[adult["split"] == "test"].sample(rows // 4, random_state=0)
    path = tmp_path / f"{name}.parquet"
    pd.concat([train, test]).to_parquet(path, index=False)
    return {"train": str(path), "split_column": "split", "target": "income", "task": "binary", "positive_label": ">50K"}


def auto_args(config: Path, *extra: str) -> list[str]:
    return ["auto", "--config", str(config), "--set", f"experiment.runs_dir={config.parent / 'runs'}", "-q", *extra]


def run_auto(config: Path, *extra: str) -> Path:
    """`gbpipe auto` in this process; returns the published run folder (what it printed)."""
    assert main(auto_args(config, *extra)) == 0
    return newest_auto_run(exp_dir(config))


def exp_dir(config: Path) -> Path:
    return config.parent / "runs" / config.stem


def newest_auto_run(folder: Path) -> Path:
    runs = [p for p in folder.iterdir() if (p / "manifest.json").is_file() and (p / "auto" / "steps.json").is_file()]
    return max(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)


def steps(run: Path) -> dict:
    return json.loads((run / "auto" / "steps.json").read_text())


def scores(run: Path) -> dict:
    return json.loads((run / "ensemble" / "scores.json").read_text())


def statuses(run: Path, kind: str) -> dict[str, str]:
    return {s["name"]: s["status"] for s in steps(run)["steps"] if s["kind"] == kind}


def start_auto(config: Path, *extra: str) -> subprocess.Popen:
    """`gbpipe auto` in a subprocess (so it can be interrupted or killed), its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *auto_args(config, *extra)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_steps(proc: subprocess.Popen, folder: Path, done: int, limit: float = 120.0) -> Path:
    """Poll the unfinished run's auto/steps.json until `done` members ran; returns the unfinished folder."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gbpipe auto ended (code {proc.returncode}) before it could be stopped: {proc.stderr.read()}")
        for record in folder.glob("*.partial/auto/steps.json"):
            try:
                logged = json.loads(record.read_text())["steps"]
            except (OSError, ValueError, KeyError):
                continue
            if sum(s["kind"] == "member" and s["status"] == "ran" for s in logged) >= done:
                return record.parent.parent
        time.sleep(0.05)
    pytest.fail(f"no unfinished auto run in {folder} reached {done} member(s) within {limit}s")
