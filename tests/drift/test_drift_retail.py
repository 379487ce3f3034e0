"""`gbpipe drift` on a [features] experiment (a real slice of Online Retail): December 2011's test rows against
the training rows, and every cutoff against the earlier ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.run_folder import RunReader
from pipeline.drift.cutoffs import COLUMNS as CUTOFF_COLUMNS
from tests.helpers.retail import FAST, retail_config, retail_slice, write_events
from tests.helpers.runs import latest


@pytest.fixture(scope="module")
def retail_run(tmp_path_factory):
    """configs/retail_1y.toml on every line of 300 customers, without the backtest (not what is tested)."""
    tmp = tmp_path_factory.mktemp("retail_drift")
    config = retail_config(tmp, write_events(tmp, retail_slice()), {"cv.backtest": 0})
    assert main(["train", "--config", str(config), *FAST]) == 0
    run = latest(tmp / "runs" / "retail_1y")
    assert main(["drift", "--run", str(run), "-q"]) == 0
    return run


def test_december_differs_measurably_from_the_training_rows(retail_run):
    summary = json.loads((retail_run / "drift" / "summary.json").read_text())
    features = pd.read_parquet(retail_run / "drift" / "features.parquet")
    assert summary["new_rows_source"] == "test rows"
    adversarial = summary["adversarial"]
    assert adversarial["ci_low"] > 0.55, adversarial  # the classifier tells December from the training months
    assert (features["flag"] != "none").any() and features["psi"].iloc[0] >= summary["thresholds"]["psi_moderate"]
    assert summary["top_features"] == features["feature"].head(10).tolist()
    assert features["psi"].is_monotonic_decreasing and np.isfinite(features["psi"]).all()


def test_every_cutoff_after_the_first_is_compared_with_the_earlier_ones(retail_run):
    reader = RunReader(retail_run)
    assert reader.files["drift/cutoffs.parquet"]["stage"] == "drift" and reader.has("drift/plots/cutoffs.png")
    cutoffs = reader.read_parquet("drift/cutoffs.parquet")
    assert list(cutoffs.columns) == CUTOFF_COLUMNS
    summary = reader.read_json("features_summary.json")
    train_days = summary["train_cutoffs"]
    assert cutoffs["cutoff"].tolist() == [*train_days[1:], summary["test_cutoff"]]
    assert cutoffs["reference"].tolist() == ["earlier cutoffs"] * (len(train_days) - 1) + ["training rows"]
    rows = summary["rows_per_cutoff"]
    assert cutoffs["n_rows"].tolist() == [rows[day] for day in cutoffs["cutoff"]]
    for column in ("mean_psi", "max_psi"):
        assert np.isfinite(cutoffs[column]).all() and (cutoffs[column] >= 0).all(), column
    assert (cutoffs["max_psi"] >= cutoffs["mean_psi"]).all()
    test = cutoffs.iloc[-1]
    features = reader.read_parquet("drift/features.parquet")
    # the test cutoff against all training rows is the per-feature table's comparison
    assert test["top_feature"] == features["feature"].iloc[0] and test["max_psi"] == features["psi"].iloc[0]
    assert test["n_moderate"] == (features["flag"] == "moderate").sum()
    assert test["n_major"] == (features["flag"] == "major").sum()


def test_the_report_has_a_drift_section_beside_the_per_cutoff_scores(retail_run):
    from pipeline.report.build import build_report
    from pipeline.report.page import Table, Text

    report = build_report(retail_run, n_boot=200)
    section = next(s for s in report.sections if s.key == "drift")
    summary = json.loads((retail_run / "drift" / "summary.json").read_text())
    texts = " ".join(b.text for b in section.blocks if isinstance(b, Text))
    assert f"AUC {summary['adversarial']['auc']:.3f}" in texts and "PSI threshold" in texts
    tables = {b.name: b for b in section.blocks if isinstance(b, Table)}
    top = tables["drift_features"]
    names = [row[0] for row in top.rows]
    assert names[: len(summary["top_features"])] == summary["top_features"][: len(names)]
    assert "train_gain_share" in top.columns
    over_time = tables["drift_cutoffs"]
    cutoffs = pd.read_parquet(retail_run / "drift" / "cutoffs.parquet")
    assert [row[0] for row in over_time.rows] == cutoffs["cutoff"].tolist()
    scores = json.loads((retail_run / "scores.json").read_text())
    by_cutoff = scores["oof_score_by_cutoff"]
    assert [row[-1] for row in over_time.rows] == [
        *(by_cutoff[c] for c in cutoffs["cutoff"][:-1]),
        scores["holdout_score"],
    ]
    assert report.meta["section_order"].index("drift") > report.meta["section_order"].index("cv")
