"""Real runs for the report tests: trained once per session (small real data, few rounds, one thread)
and copied into each test that adds files to them, so every test starts from a pristine run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.run_folder import RunReader, publish_files
from tests.helpers.configs import write_config
from tests.helpers.datasets import shared_file
from tests.helpers.runs import train_run

_RUNS: dict[str, Path] = {}


def adult_config(base: Path) -> Path:
    """adult: 3,000 training rows and 1,000 rows of adult.test as a labelled holdout."""
    adult = pd.read_parquet(shared_file("adult/adult.parquet"))
    train = adult[adult["split"] == "train"].sample(3000, random_state=1)
    test = adult[adult["split"] == "test"].sample(1000, random_state=1)
    path = base / "adult_small.csv"
    pd.concat([train, test]).to_csv(path, index=False)
    return write_config(
        base,
        "adult",
        data={
            "train": str(path),
            "split_column": "split",
            "target": "income",
            "task": "binary",
            "positive_label": ">50K",
        },
    )


def adult_runs(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two runs of one adult experiment: num_leaves 31 (default) and 7."""
    if "adult" not in _RUNS:
        base = factory.mktemp("adult")
        config = adult_config(base)
        _RUNS["adult_config"] = config
        _RUNS["adult"] = train_run(config)
        _RUNS["adult_leaves7"] = train_run(config, "--set", "model.params.num_leaves=7")
    return _RUNS["adult"], _RUNS["adult_leaves7"]


def housing_run(factory: pytest.TempPathFactory) -> Path:
    """california_housing regression: 3,000 districts, 20% of them held out."""
    if "housing" not in _RUNS:
        base = factory.mktemp("housing")
        frame = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(3000, random_state=2)
        path = base / "housing_small.parquet"
        frame.to_parquet(path)
        config = write_config(
            base,
            "housing",
            data={"train": str(path), "test_size": 0.2, "target": "median_house_value", "task": "regression"},
        )
        _RUNS["housing"] = train_run(config)
    return _RUNS["housing"]


def wine_run(factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's wine data: multiclass (3 cultivars), a quarter held out."""
    if "wine" not in _RUNS:
        base = factory.mktemp("wine")
        config = write_config(
            base,
            "wine",
            data={"train": "sklearn:wine", "test_size": 0.25, "target": "target", "task": "multiclass"},
            model={"params": {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 5}},
        )
        _RUNS["wine"] = train_run(config)
    return _RUNS["wine"]


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run (in an experiment folder of its own) that a test may add files to."""
    target = dest / run.parent.name / run.name
    shutil.copytree(run, target)
    (target.parent / "LATEST").write_text(run.name + "\n")
    return target


def staged_adult(factory: pytest.TempPathFactory) -> Path:
    """An adult experiment with every later stage: a real Optuna study (3 trials), a run trained with its
    best parameters, real permutation and null importance of that run, and a feature-selection folder
    and a features summary in the documented formats (those stages are too slow for this suite)."""
    if "staged" not in _RUNS:
        base = factory.mktemp("staged")
        config = adult_config(base)
        assert main(["tune", "--config", str(config), "--n-trials", "3", "--workers", "1", "-q"]) == 0
        study = base / "runs" / "adult" / "tune" / "default"
        run = train_run(config, "--params", str(study / "best_params.json"))
        assert (
            main(
                [
                    "importance",
                    "--run",
                    str(run),
                    "-q",
                    "--set",
                    "importance.n_repeats=2",
                    "--set",
                    "importance.null_repeats=2",
                    "--set",
                    "importance.null_num_boost_round=30",
                    "--set",
                    "importance.n_jobs=1",
                ]
            )
            == 0
        )
        _RUNS["staged"] = run
    return _RUNS["staged"]


def add_selection(run: Path, features: list[str], nested: float) -> Path:
    """A select/<id>/ folder as `gbpipe select` writes it (selection.json, selected_features.json, manifest)."""
    manifest = RunReader(run).manifest
    columns = json.loads((run / "schema.json").read_text())["features"]["columns"]
    stability = {c: (1.0 if c in features else 0.2) for c in columns}
    final = {
        "features": features,
        "n_features": len(features),
        "dropped": {"embedded": [c for c in columns if c not in features]},
    }
    doc = {
        "experiment": "adult",
        "metric": "auc",
        "greater_is_better": True,
        "nested_oof_score": nested,
        "naive_oof_score": nested + 0.004,
        "all_features_oof_score": nested + 0.002,
        "optimism": 0.004,
        "n_features_total": len(columns),
        "final": final,
        "stability": stability,
        "stability_mean_jaccard": 0.9,
        "data_fingerprint": manifest["data_fingerprint"],
    }
    chosen = {"features": features, "n_features": len(features), "nested_oof_score": nested}
    out = run.parent / "select" / "20260101-000000-abcdef"
    files = {"selection.json": json.dumps(doc).encode(), "selected_features.json": json.dumps(chosen).encode()}
    publish_files(
        out,
        files,
        "select",
        {"experiment": "adult", "select_id": out.name, "data_fingerprint": manifest["data_fingerprint"]},
        update_latest=True,
    )
    return out
