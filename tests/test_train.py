"""The OOF engine end to end through the CLI, on real data: invariants, reproducibility, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.artifacts import sha256_file
from pipeline.core.metrics import score
from pipeline.core.run_folder import RunReader
from tests.helpers.configs import write_config
from tests.helpers.datasets import shared_file
from tests.helpers.runs import train_run


def recomputed_oof_score(run: Path) -> float:
    """The metric recomputed from oof.parquet alone (and the saved label order)."""
    scores = json.loads((run / "scores.json").read_text())
    schema = json.loads((run / "schema.json").read_text())
    oof = pd.read_parquet(run / "oof.parquet")
    classes = schema["labels"]["classes"]
    if scores["task"] == "regression":
        return score(scores["metric"], oof["target"].to_numpy(float), oof["pred"].to_numpy())
    y = oof["target"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    pred = oof["pred"].to_numpy() if scores["task"] == "binary" else oof[[f"pred_{c}" for c in classes]].to_numpy()
    return score(scores["metric"], y, pred)


@pytest.fixture
def adult_config(tmp_path, adult_small):
    return write_config(
        tmp_path,
        "adult",
        data={"train": str(adult_small), "split_column": "split", "target": "income", "task": "binary"},
    )


def test_binary_run_invariants(adult_config):
    run = train_run(adult_config)
    scores = json.loads((run / "scores.json").read_text())
    assert {"metric", "oof_score", "fold_scores", "holdout_score"} <= scores.keys()
    assert recomputed_oof_score(run) == pytest.approx(scores["oof_score"], abs=1e-12)
    folds = pd.read_parquet(run / "folds.parquet")
    oof = pd.read_parquet(run / "oof.parquet")
    assert len(folds) == len(oof) == 4000 and sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert (folds["fold"].to_numpy() == oof["fold"].to_numpy()).all()
    assert oof["pred"].between(0, 1).all() and set(oof["label_pred"]) <= {"<=50K", ">50K"}
    assert 0.85 < scores["oof_score"] < 0.95 and len(scores["fold_scores"]) == 5
    test = pd.read_parquet(run / "test_pred.parquet")
    fold_cols = [f"fold{k}_pred" for k in range(5)]
    assert np.allclose(test[fold_cols].mean(axis=1), test["pred"], rtol=0, atol=1e-15)
    y_test = (test["target"] == ">50K").to_numpy().astype(int)
    assert score("auc", y_test, test["pred"].to_numpy()) == pytest.approx(scores["holdout_score"])
    importance = pd.read_parquet(run / "importance.parquet")
    mean_gain = importance[(importance.kind == "gain") & (importance.fold == -1)]
    assert len(mean_gain) == 14 and mean_gain["value"].max() > 0
    for name in ("models/fold_0.txt", "config.toml", "report.md"):
        RunReader(run).path(name)  # listed in the manifest, hash verified
    assert (run / "models/fold_4.txt").read_text().startswith("tree")


def test_same_config_and_seed_give_identical_files(adult_config, tmp_path):
    first = train_run(adult_config, "--run-id", "a")
    second = train_run(adult_config, "--run-id", "b")
    for name in (
        "oof.parquet",
        "test_pred.parquet",
        "folds.parquet",
        "models/fold_0.txt",
        "models/fold_3.txt",
        "importance.parquet",
        "config.toml",
        "schema.json",
        "drift_reference.json",
    ):
        assert sha256_file(first / name) == sha256_file(second / name), name


def test_existing_run_is_never_overwritten(adult_config, capsys):
    run = train_run(adult_config, "--run-id", "keep")
    before = sha256_file(run / "oof.parquet")
    assert main(["train", "--config", str(adult_config), "-q", "--run-id", "keep"]) == 2
    assert "already exists and is never overwritten" in capsys.readouterr().err
    assert sha256_file(run / "oof.parquet") == before


def test_predict_reproduces_test_pred_and_ignores_column_order(adult_config, adult_small, tmp_path):
    run = train_run(adult_config)
    rows = pd.read_csv(adult_small)
    rows = rows[rows["split"] == "test"].drop(columns=["split", "income"]).reset_index(drop=True)
    shuffled = rows[list(reversed(rows.columns))]
    rows.to_csv(tmp_path / "in.csv", index=False)
    shuffled.to_parquet(tmp_path / "in_shuffled.parquet")
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                "--input",
                str(tmp_path / "in.csv"),
                "--output",
                str(tmp_path / "out.parquet"),
                "--chunk-size",
                "300",
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                "--run",
                str(run.parent),
                "--input",
                str(tmp_path / "in_shuffled.parquet"),
                "--output",
                str(tmp_path / "out2.parquet"),
                "-q",
            ]
        )
        == 0
    )
    out = pd.read_parquet(tmp_path / "out.parquet")
    out2 = pd.read_parquet(tmp_path / "out2.parquet")
    expected = pd.read_parquet(run / "test_pred.parquet")
    assert np.array_equal(out["pred"].to_numpy(), expected["pred"].to_numpy())
    assert np.array_equal(out2["pred"].to_numpy(), expected["pred"].to_numpy())
    assert (out["label_pred"] == expected["label_pred"]).all()


def test_test_rows_of_a_plain_table_predict_to_test_pred(adult_config, tmp_path):
    """`make run`'s path without [features]: `gbpipe features --test-rows` writes the test table's rows
    (label dropped) and `gbpipe predict` on them gives the run's test predictions."""
    rows = tmp_path / "predict_input.parquet"
    assert main(["features", "--config", str(adult_config), "--test-rows", str(rows), "-q"]) == 0
    written = pd.read_parquet(rows)
    assert len(written) == 1000 and "income" not in written.columns
    run = train_run(adult_config)
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "out.csv"), "-q"]) == 0
    expected = pd.read_parquet(run / "test_pred.parquet")
    assert np.allclose(pd.read_csv(tmp_path / "out.csv")["pred"].to_numpy(), expected["pred"].to_numpy(), rtol=1e-12)


def test_test_rows_need_a_test_table(tmp_path, adult_small, capsys):
    config = write_config(tmp_path, "adult", data={"train": str(adult_small), "target": "income", "task": "binary"})
    assert main(["features", "--config", str(config), "--test-rows", str(tmp_path / "rows.parquet"), "-q"]) == 2
    assert "has no test table (data.test or data.split_column)" in capsys.readouterr().err
    assert not (tmp_path / "rows.parquet").exists()


@pytest.mark.parametrize("early_stopping", ["fold", "inner"])
def test_regression_on_california_housing(tmp_path, early_stopping):
    frame = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(4000, random_state=1)
    frame.to_parquet(tmp_path / "housing.parquet")
    config = write_config(
        tmp_path,
        "housing",
        data={
            "train": str(tmp_path / "housing.parquet"),
            "test_size": 0.2,
            "target": "median_house_value",
            "task": "regression",
        },
        model={"metric": "rmse", "early_stopping": early_stopping},
    )
    run = train_run(config)
    scores = json.loads((run / "scores.json").read_text())
    assert scores["early_stopping"] == early_stopping
    assert recomputed_oof_score(run) == pytest.approx(scores["oof_score"], rel=1e-12)
    assert 30_000 < scores["oof_score"] < 80_000 and 0.6 < scores["oof_metrics"]["r2"] < 0.95
    assert scores["holdout_score"] == pytest.approx(scores["holdout_metrics"]["rmse"])


def test_multiclass_labels_come_back_in_original_form(tmp_path):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: 7, 1: 0, 2: 3})  # class ids not 0..K-1
    frame.to_csv(tmp_path / "wine.csv", index=False)
    config = write_config(
        tmp_path,
        "wine",
        data={"train": str(tmp_path / "wine.csv"), "target": "target", "task": "multiclass"},
        model={"metric": "logloss", "params": {"learning_rate": 0.1, "min_data_in_leaf": 5}},
    )
    run = train_run(config)
    oof = pd.read_parquet(run / "oof.parquet")
    assert [c for c in oof.columns if c.startswith("pred_")] == ["pred_0", "pred_3", "pred_7"]
    assert np.allclose(oof[["pred_0", "pred_3", "pred_7"]].sum(axis=1), 1.0)
    assert set(oof["label_pred"]) <= {0, 3, 7}
    scores = json.loads((run / "scores.json").read_text())
    assert recomputed_oof_score(run) == pytest.approx(scores["oof_score"], rel=1e-12)
    assert scores["oof_metrics"]["accuracy"] > 0.9


@pytest.mark.parametrize("labels", [{"<=50K": 1, ">50K": 2}, {"<=50K": "no", ">50K": "yes"}])
def test_binary_labels_of_any_kind(tmp_path, adult_small, labels):
    frame = pd.read_csv(adult_small)
    frame["income"] = frame["income"].map(labels)
    frame.to_csv(tmp_path / "relabelled.csv", index=False)
    config = write_config(
        tmp_path,
        "relabel",
        data={"train": str(tmp_path / "relabelled.csv"), "split_column": "split", "target": "income", "task": "binary"},
    )
    run = train_run(config)
    schema = json.loads((run / "schema.json").read_text())
    assert schema["labels"]["classes"] == sorted(labels.values())
    assert json.loads((run / "scores.json").read_text())["oof_score"] > 0.85


def test_full_adult_meets_the_auc_target(tmp_path):
    """Issue 3's bar: 5-fold OOF AUC >= 0.928 on adult's training split with default parameters."""
    config = write_config(
        tmp_path,
        "adult_full",
        data={
            "train": str(shared_file("adult/adult.parquet")),
            "split_column": "split",
            "target": "income",
            "task": "binary",
        },
        model={
            "num_boost_round": 10_000,
            "early_stopping_rounds": 100,
            "num_threads": 0,
            "params": {"learning_rate": 0.05},
        },
    )
    run = train_run(config)
    scores = json.loads((run / "scores.json").read_text())
    assert scores["oof_score"] >= 0.928, scores["oof_score"]
