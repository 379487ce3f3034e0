"""Like for like: when the data cuts the holdout's label window short, the training rows also get labels
over as many days, and the OOF predictions are scored against them beside the holdout.

Online Retail's December 2011 stops on the 9th, so its holdout labels are "spent more than 300 in
December 1-9", not in the month. Those short labels are a side table of the build, never a feature.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.build import HOLDOUT_WINDOW_LABEL, build_features
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.feature_cache import cached_features
from tests.helpers.retail import FAST, retail_config, retail_slice, retail_spec, short_labels, with_test, write_events


def test_training_rows_get_labels_over_the_days_the_holdout_has():
    events = retail_slice()  # the slice's last line is on 2011-12-09 at 12:20: 9 days of December, in part
    table = build_features(events, retail_spec(), "label")
    assert table.summary["test_label_window"]["training_label_days"] == 9
    expected = short_labels(events, table.train, 9)
    pd.testing.assert_series_equal(table.holdout_window_labels, expected)
    assert 0 < expected.sum() < table.train["label"].sum()  # fewer spend 300 in 9 days than in a month
    assert HOLDOUT_WINDOW_LABEL not in table.train.columns and HOLDOUT_WINDOW_LABEL not in table.test.columns


@pytest.mark.parametrize("test", ["2011-11-01", "2011-12-10"], ids=["complete window", "scoring cutoff"])
def test_no_short_labels_when_the_holdout_window_is_whole_or_unknown(test):
    table = build_features(retail_slice(), with_test(retail_spec(), test), "label")
    assert table.holdout_window_labels is None
    assert "training_label_days" not in table.summary["test_label_window"]


def test_the_cache_gives_back_the_short_labels(tmp_path):
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()))
    built = cached_features(load_config(config))
    reused = cached_features(load_config(config))
    assert reused.reused
    pd.testing.assert_series_equal(reused.table.holdout_window_labels, built.table.holdout_window_labels)
    pd.testing.assert_frame_equal(reused.table.train, built.table.train)
    assert HOLDOUT_WINDOW_LABEL not in reused.table.test.columns


def test_the_ensemble_scores_every_model_like_for_like(tmp_path):
    events = retail_slice()
    config = retail_config(tmp_path, write_events(tmp_path, events), {"ensemble.combiners": ["soft_vote", "greedy"]})
    assert main(["ensemble", "--config", str(config), "--set", "cv.backtest=0", *FAST]) == 0
    (run,) = (tmp_path / "runs" / "retail_1y").glob("*-ensemble")
    scores = json.loads((run / "ensemble" / "scores.json").read_text())
    oof = pd.read_parquet(run / "ensemble" / "oof.parquet")
    rows = pd.DataFrame(
        {
            "CustomerID": oof["row_key"].str.split("@").str[0].astype(float),
            "cutoff": pd.to_datetime(oof["row_key"].str.split("@").str[1]),
        }
    )
    short = short_labels(events, rows, 9)
    assert set(scores["models"]) == {c.removesuffix(".pred") for c in oof.columns if c.endswith(".pred")}
    for name, model in scores["models"].items():
        assert model["oof_at_holdout_window"] == pytest.approx(roc_auc_score(short, oof[f"{name}.pred"]), abs=1e-12)
    assert "OOF, holdout's label window" in (run / "ensemble" / "report.md").read_text()
