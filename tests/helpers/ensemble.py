"""Helpers of the ensemble tests: fast configs on real data, and reading an ensemble run back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import main
from tests.helpers.configs import write_config

FAST_MODEL = {
    "num_boost_round": 150,
    "early_stopping_rounds": 20,
    "num_threads": 1,
    "params": {"learning_rate": 0.1, "num_leaves": 15},
}


def ensemble_config(
    tmp_path: Path,
    name: str,
    data: dict,
    members: list[dict],
    cv: dict | None = None,
    model: dict | None = None,
    **ensemble,
) -> Path:
    """An experiment TOML in tmp_path with an [ensemble] section and fast settings (one thread)."""
    section = {"members": members, "bootstrap_n": 200, **ensemble}
    return write_config(
        tmp_path,
        name,
        data=data,
        cv=cv or {"n_splits": 3, "seed": 7},
        model={**FAST_MODEL, **(model or {})},
        ensemble=section,
    )


def run_ensemble(config: Path, *extra: str) -> Path:
    """`gbpipe ensemble` through the CLI; returns the published run folder."""
    assert main(["ensemble", "--config", str(config), "-q", *extra]) == 0
    exp_dir = next(p for p in (config.parent / "runs").iterdir() if p.is_dir())
    return newest_ensemble_run(exp_dir)


def newest_ensemble_run(exp_dir: Path) -> Path:
    """Ensemble runs do not move LATEST (it names the newest training run): the newest published one."""
    runs = [
        p.parent.parent for p in exp_dir.glob("*/ensemble/scores.json") if (p.parent.parent / "manifest.json").is_file()
    ]
    return max(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)


def read_scores(run: Path) -> dict:
    return json.loads((run / "ensemble" / "scores.json").read_text())


def pred_columns(frame: pd.DataFrame, prefix: str, classes: list) -> np.ndarray:
    """`<prefix>pred` or `<prefix>pred_<class>` columns as an array (n or n x K)."""
    if f"{prefix}pred" in frame.columns:
        return frame[f"{prefix}pred"].to_numpy(dtype="float64")
    return frame[[f"{prefix}pred_{c}" for c in classes]].to_numpy(dtype="float64")
