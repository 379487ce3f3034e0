"""data.min_category_rows: categories seen in fewer training rows are grouped with missing, in training and
at predict alike, and are not reported as unseen; a category never seen in training still is."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from tests.helpers.reliability import adult_data, adult_rows, assert_message, cli, write_rel_config

COLUMN = "native-country"  # in 1,200 real adult rows: United-States and Mexico common, ~30 countries rare


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    base = tmp_path_factory.mktemp("rare")
    train, test = adult_rows()
    train.to_parquet(base / "train.parquet", index=False)
    test.to_parquet(base / "test.parquet", index=False)
    config = write_rel_config(
        base / "exp.toml",
        base / "runs",
        adult_data(base / "train.parquet", base / "test.parquet", min_category_rows=20),
    )
    return base, config, train, test


def test_rare_categories_are_grouped_with_missing(grouped, capsys):
    base, config, train, test = grouped
    code, err = cli(capsys, "train", "--config", config, "--run-id", "r1")
    assert code == 0 and not re.search(r"train\.parquet: categories not seen", err)
    # Test rows: only countries absent from the training rows count as unseen, not the rare ones.
    unseen = int((test[COLUMN].notna() & ~test[COLUMN].isin(train[COLUMN])).sum())
    assert_message(
        err, rf"test\.parquet: categories not seen in training, treated as missing: \{{'{COLUMN}': {unseen}\}}"
    )
    schema = json.loads((base / "runs" / "rel" / "r1" / "schema.json").read_text())["features"]
    counts = train[COLUMN].value_counts()
    assert set(schema["categories"][COLUMN]) == set(counts.index[counts >= 20])
    assert set(schema["rare_categories"][COLUMN]) == set(counts.index[counts < 20]) and len(counts[counts < 20]) > 5
    assert "United-States" in schema["categories"][COLUMN]


def test_a_rare_value_predicts_as_missing_and_only_unseen_ones_are_reported(grouped, capsys, tmp_path):
    base, config, train, test = grouped
    run = base / "runs" / "rel" / "r1"
    if not run.is_dir():
        assert cli(capsys, "train", "--config", config, "--run-id", "r1")[0] == 0
    rare = json.loads((run / "schema.json").read_text())["features"]["rare_categories"][COLUMN]
    rows = test.drop(columns="income").head(60).copy()
    variants = {
        "rare": rows.assign(**{COLUMN: rare[0]}),
        "missing": rows.assign(**{COLUMN: None}),
        "unseen": rows.assign(**{COLUMN: "Moon-base"}),
    }
    preds = {}
    for name, frame in variants.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        code, err = cli(
            capsys,
            "predict",
            "--run",
            run,
            "--input",
            tmp_path / f"{name}.csv",
            "--output",
            tmp_path / f"{name}_pred.csv",
        )
        assert code == 0
        if name == "unseen":
            assert_message(
                err,
                rf"categories not seen in training \(treated as missing\), rows per column: "
                rf"\{{'{COLUMN}': 60\}}",
            )
        else:
            assert "not seen in training" not in err, name
        preds[name] = pd.read_csv(tmp_path / f"{name}_pred.csv")["pred"].to_numpy()
    assert np.array_equal(preds["rare"], preds["missing"]) and np.array_equal(preds["unseen"], preds["missing"])


def test_the_default_keeps_every_category(grouped, capsys, tmp_path):
    _, _, train, _ = grouped
    train.to_parquet(tmp_path / "train.parquet", index=False)
    config = write_rel_config(tmp_path / "exp.toml", tmp_path / "runs", adult_data(tmp_path / "train.parquet"))
    assert cli(capsys, "train", "--config", config, "--run-id", "d1")[0] == 0
    schema = json.loads((tmp_path / "runs" / "rel" / "d1" / "schema.json").read_text())["features"]
    assert set(schema["categories"][COLUMN]) == set(train[COLUMN].dropna()) and schema["rare_categories"] == {}


def test_min_category_rows_below_one_is_refused(grouped, capsys, tmp_path):
    _, _, train, _ = grouped
    train.to_parquet(tmp_path / "train.parquet", index=False)
    config = write_rel_config(
        tmp_path / "exp.toml", tmp_path / "runs", adult_data(tmp_path / "train.parquet", min_category_rows=0)
    )
    code, err = cli(capsys, "train", "--config", config)
    assert code == 2
    assert_message(err, r"data.min_category_rows.*greater than or equal to 1")
    assert not (tmp_path / "runs").exists()
