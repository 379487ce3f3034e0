"""A scoring cutoff: a test cutoff just after the data's end, whose rows get predictions and no label.

The real use of a point-in-time model is scoring "as of now": the rows at the data's end, whose
future nobody knows yet. Their labels are null (not 0), the training rows are those of an ordinary
build, the run reports no holdout score, and `gbpipe predict` on the rows reproduces test_pred.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.feature_cache import cached_features
from tests.helpers.retail import (
    DATA_ERROR,
    FAST,
    only_run,
    retail_config,
    retail_slice,
    retail_spec,
    with_test,
    write_events,
)

SCORING = "2011-12-10"  # the slice's last event is on 2011-12-09 at 12:20


def test_scoring_rows_have_null_labels_and_past_only_features():
    events = retail_slice()
    scoring = build_features(events, with_test(retail_spec(), SCORING), "label")
    holdout = build_features(events, retail_spec(), "label")  # test cutoff 2011-12-01: the same training cutoffs
    pd.testing.assert_frame_equal(scoring.train, holdout.train)
    assert scoring.test["label"].isna().all()
    cutoff = pd.Timestamp(SCORING)
    past = events[(events["InvoiceDate"] < cutoff) & events["CustomerID"].notna()]
    spend = (past["Quantity"] * past["UnitPrice"]).groupby(past["CustomerID"]).sum()
    test = scoring.test.set_index("CustomerID")
    assert sorted(test.index) == sorted(spend.index)  # every customer with an event before the cutoff
    assert np.allclose(test.loc[spend.index, "total_sum_all"], spend, rtol=1e-9)
    last = past.groupby("CustomerID")["InvoiceDate"].max()
    assert np.allclose(test.loc[last.index, "days_since_last"], (cutoff - last).dt.total_seconds() / 86400)
    window = scoring.summary["test_label_window"]
    assert window["labels_known"] is False and window["coverage"] == 0.0 and not window["complete"]
    assert SCORING not in scoring.summary["positive_rate_per_cutoff"]
    assert scoring.summary["rows_per_cutoff"][SCORING] == len(scoring.test)
    assert holdout.summary["test_label_window"]["labels_known"] is True


@pytest.mark.parametrize("end_at", ["2011-12-09 12:20", "2011-11-30 23:59"])
def test_a_test_cutoff_at_the_end_is_the_day_after_the_last_event(end_at):
    """test = "end" builds exactly what the explicit date does; the date follows the data."""
    events = retail_slice()
    events = events[events["InvoiceDate"] <= pd.Timestamp(end_at)]
    day = str((pd.Timestamp(end_at) + pd.Timedelta(days=1)).date())
    at_end = build_features(events, with_test(retail_spec(), "end"), "label")
    dated = build_features(events, with_test(retail_spec(), day), "label")
    assert at_end.summary["test_cutoff"] == day and at_end.summary["train_cutoffs"][-1] == "2011-11-01"
    pd.testing.assert_frame_equal(at_end.train, dated.train)
    pd.testing.assert_frame_equal(at_end.test, dated.test)
    assert at_end.test["label"].isna().all() and len(at_end.test) > 0


def test_time_folds_get_the_same_gap_when_the_test_cutoff_is_the_end(tmp_path):
    """The time folds' gap is set when the config is read, before the data gives the end's date."""
    events = write_events(tmp_path, retail_slice())
    gaps = {}
    for test in ("end", SCORING):
        changes = {
            "features.cutoffs.test": test,
            "features.label.months": 2,
            "cv.splitter": "time",
            "cv.time": "cutoff",
            "cv.group": None,
            "cv.backtest": 0,
            "cv.n_splits": 3,
        }
        (tmp_path / test).mkdir()
        gaps[test] = load_config(retail_config(tmp_path / test, events, changes)).time_gap
    assert gaps["end"] == gaps[SCORING] == 1


def test_the_cache_gives_back_the_built_tables(tmp_path):
    """The cache stacks training and scoring rows in one file, which turns the label column to float there."""
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), {"features.cutoffs.test": SCORING})
    built = cached_features(load_config(config))
    reused = cached_features(load_config(config))
    assert not built.reused and reused.reused
    pd.testing.assert_frame_equal(reused.table.train, built.table.train)
    pd.testing.assert_frame_equal(reused.table.test, built.table.test)
    assert str(reused.table.train["label"].dtype) == "int8"


def test_train_scores_without_a_holdout_and_predict_reproduces_the_scoring_rows(tmp_path, capsys):
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), {"features.cutoffs.test": SCORING})
    assert main(["train", "--config", str(config), "--set", "cv.backtest=0", *FAST[:-1]]) == 0
    assert "a scoring cutoff, its rows get predictions and no label" in capsys.readouterr().err
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert "holdout_score" not in scores and scores["scoring_cutoff"] == SCORING
    test_pred = pd.read_parquet(run / "test_pred.parquet")
    assert scores["n_test"] == len(test_pred) > 0 and test_pred["row_key"].str.endswith(f"@{SCORING}").all()
    assert test_pred["pred"].between(0, 1).all() and test_pred["pred"].nunique() > 10
    assert main(["report", "--run", str(run), "-q"]) == 0
    report = (run / "report" / "report.md").read_text()
    assert re.search(rf"\*\*Scoring cutoff\*\*: the {len(test_pred):,} test rows are at {SCORING}", report)
    assert main(["ensemble", "--config", str(config), "--set", "cv.backtest=0", *FAST]) == 0
    (ensemble,) = (tmp_path / "runs" / "retail_1y").glob("*-ensemble")
    ensemble_scores = json.loads((ensemble / "ensemble" / "scores.json").read_text())
    assert ensemble_scores["n_test"] == len(test_pred) and "holdout_score" not in ensemble_scores
    rows = tmp_path / "scoring_rows.parquet"
    assert main(["features", "--config", str(config), "--test-rows", str(rows), "-q"]) == 0
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "p.csv"), "-q"]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert predicted["row_key"].tolist() == test_pred["row_key"].tolist()
    assert np.allclose(predicted["pred"], test_pred["pred"], rtol=1e-12)
    # data.keep carries who and when into the predictions, for the ensemble's selected model too
    assert (predicted["CustomerID"].astype(str) + "@" + predicted["cutoff"].str[:10] == predicted["row_key"]).all()
    assert (
        main(["predict", "--run", str(ensemble), "--input", str(rows), "--output", str(tmp_path / "e.csv"), "-q"]) == 0
    )
    assert pd.read_csv(tmp_path / "e.csv").columns[:3].tolist() == ["row_key", "CustomerID", "cutoff"]


# The slice ends on 2011-12-09 at 12:20; a scoring cutoff may follow it by at most 3 days.
SLACK = [("2011-12-12", 0), ("2011-12-13", DATA_ERROR), ("2012-01-01", DATA_ERROR)]


@pytest.mark.parametrize("test,code", SLACK, ids=[s[0] for s in SLACK])
def test_a_scoring_cutoff_must_follow_the_data_closely(tmp_path, capsys, test, code):
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), {"features.cutoffs.test": test})
    assert main(["features", "--config", str(config), "-q"]) == code
    if code:
        assert re.search(
            rf"test cutoff {test} is \d+ days after the data's last event .* set "
            r"features.cutoffs.test to 2011-12-12 or earlier",
            capsys.readouterr().err,
        )
        assert not (tmp_path / "runs").exists()


def test_a_run_validated_on_the_holdout_scores_the_data_end_like_one_trained_for_it(tmp_path):
    """`make score`: the training cutoffs do not depend on whether the test cutoff is December 1 (a holdout)
    or December 10 (scoring), so the run validated on December predicts the scoring rows exactly as a run
    trained with the scoring cutoff does."""
    events = write_events(tmp_path, retail_slice())
    configs = {}
    for name, test in (("holdout", "2011-12-01"), ("scoring", SCORING)):
        (tmp_path / name).mkdir()
        configs[name] = retail_config(tmp_path / name, events, {"features.cutoffs.test": test})
        assert main(["train", "--config", str(configs[name]), "--set", "cv.backtest=0", *FAST]) == 0
    holdout = configs["holdout"]
    rows = tmp_path / "rows.parquet"
    assert (
        main(
            [
                "features",
                "--config",
                str(holdout),
                "--set",
                f"features.cutoffs.test={SCORING}",
                "--test-rows",
                str(rows),
                "-q",
            ]
        )
        == 0
    )
    run = only_run(tmp_path / "holdout" / "runs" / "retail_1y")
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "p.csv"), "-q"]) == 0
    expected = pd.read_parquet(only_run(tmp_path / "scoring" / "runs" / "retail_1y") / "test_pred.parquet")
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert predicted["row_key"].tolist() == expected["row_key"].tolist()
    assert np.allclose(predicted["pred"], expected["pred"], rtol=1e-12, atol=0)
