"""Shared fixtures: real data slices and config files in tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GBPIPE_DATA_DIR", ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A real dataset file: data/raw (after `make data`) or the shared folder."""
    for base in (ROOT / "data" / "raw", SHARED):
        if (base / relative).is_file():
            return base / relative
    pytest.fail(f"dataset {relative} not found under data/raw or {SHARED}; run `make data`")


def write_config(tmp_path: Path, name: str = "exp", **sections) -> Path:
    """Write an experiment TOML in tmp_path with runs under tmp_path/runs and fast model defaults."""
    config = {"experiment": {"name": name, "runs_dir": str(tmp_path / "runs")}}
    config["model"] = {"num_boost_round": 200, "early_stopping_rounds": 20, "num_threads": 1,
                       "params": {"learning_rate": 0.1}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    return pd.read_parquet(shared_file("adult/adult.parquet"))


@pytest.fixture
def adult_small(tmp_path: Path, adult: pd.DataFrame) -> Path:
    """4,000 training and 1,000 test rows of adult as one CSV with a split column."""
    train = adult[adult["split"] == "train"].sample(4000, random_state=0)
    test = adult[adult["split"] == "test"].sample(1000, random_state=0)
    path = tmp_path / "adult_small.csv"
    pd.concat([train, test]).to_csv(path, index=False)
    return path
