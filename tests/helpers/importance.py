"""Helpers of the importance and selection tests: adult slices with seeded noise columns, fast configs,
the CLI's train and select, and a minimal estimator for scikit-learn's permutation_importance."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.cli import main
from pipeline.core.metrics import GREATER_IS_BETTER, score
from pipeline.importance.permutation import predict_rows
from tests.helpers.configs import write_config
from tests.helpers.datasets import shared_file
from tests.helpers.runs import experiment_name, latest

NOISE = [f"noise_{i}" for i in range(5)]
# Features every adult model of these tests relies on (the selection tests expect them kept).
INFORMATIVE = ["age", "capital-gain", "education-num", "occupation", "hours-per-week"]
FAST_MODEL = {
    "num_boost_round": 300,
    "early_stopping_rounds": 20,
    "num_threads": 1,
    "params": {"learning_rate": 0.1, "num_leaves": 15},
}
ADULT_DATA = {"target": "income", "task": "binary", "positive_label": ">50K"}


def adult_with_noise(path: Path, n_rows: int, n_noise: int, shuffle_target: bool = False) -> Path:
    """`n_rows` adult training rows plus `n_noise` seeded N(0, 1) columns, as parquet at `path`."""
    adult = pd.read_parquet(shared_file("adult/adult.parquet"))
    rows = adult[adult["split"] == "train"].drop(columns="split").sample(n_rows, random_state=0)
    rows = rows.reset_index(drop=True)
    rng = np.random.RandomState(1)
    noise = pd.DataFrame(rng.normal(size=(n_rows, n_noise)), columns=[f"noise_{i}" for i in range(n_noise)])
    frame = pd.concat([rows, noise], axis=1)
    if shuffle_target:
        frame["income"] = frame["income"].sample(frac=1.0, random_state=2).to_numpy()
    frame.to_parquet(path)
    return path


def noisy_config(
    tmp_path: Path, name: str, n_rows: int = 6000, n_noise: int = 5, shuffle_target: bool = False, **sections
) -> Path:
    """A fast 3-fold experiment on adult with noise columns, runs under tmp_path/runs."""
    data_path = adult_with_noise(tmp_path / f"{name}.parquet", n_rows, n_noise, shuffle_target)
    sections = {"cv": {"n_splits": 3, "seed": 0}, "model": FAST_MODEL, **sections}
    return write_config(tmp_path, name, data={"train": str(data_path), **ADULT_DATA}, **sections)


def run_select(config: Path, *extra: str) -> Path:
    """`gbpipe select` through the CLI; returns the selection folder."""
    assert main(["select", "--config", str(config), "-q", *extra]) == 0
    return latest(config.parent / "runs" / experiment_name(config) / "select")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def aggregated(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """fold = -1 rows of one kind, indexed by feature."""
    return table[(table["kind"] == kind) & (table["fold"] == -1)].set_index("feature")


class BoosterEstimator:
    """The smallest estimator scikit-learn's permutation_importance accepts: fit and predict."""

    def __init__(self, booster: lgb.Booster, task: str):
        self.booster, self.task = booster, task

    def fit(self, X, y):
        return self

    def predict(self, X):
        return predict_rows(self.booster, X, self.task, 1)


def metric_scorer(metric: str):
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    return lambda est, X, y: sign * score(metric, y, est.predict(X))
