"""The features stage in the pipeline: cache, summary, Online Retail II names, and `gbpipe train` on retail."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.feature_cache import cached_features
from tests.helpers.datasets import shared_file
from tests.helpers.paths import ROOT
from tests.helpers.retail import (
    FAST,
    RETAIL,
    day_spec,
    known_labels_per_fold,
    only_run,
    retail_config,
    retail_events,
    retail_slice,
    retail_spec,
    short_labels,
    stacked,
    two_year_slice,
    write_events,
)


def test_train_on_retail_builds_features_and_scores_the_december_holdout(tmp_path, capsys):
    """The shipped config end to end on the real data, with three training cutoffs and fast settings."""
    config = retail_config(tmp_path, shared_file(RETAIL))
    args = ["train", "--config", str(config), "--set", "features.cutoffs.first=2011-08-01", *FAST]
    assert main(args) == 0
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["splitter"] == "stratified_group"
    assert scores["n_holdout"] == 4331  # the README's December 2011 customers
    assert 0.75 < scores["oof_score"] < 0.95 and 0.78 < scores["holdout_score"] < 0.95
    summary = json.loads((run / "features_summary.json").read_text())
    assert summary["train_cutoffs"] == ["2011-08-01", "2011-09-01", "2011-10-01", "2011-11-01"]
    assert summary["rows_per_cutoff"]["2011-12-01"] == 4331
    assert summary["positive_rate_per_cutoff"]["2011-12-01"] == pytest.approx(327 / 4331, abs=1e-6)
    assert summary["excluded_lines_without_entity"] == 135_080
    window = summary["test_label_window"]  # December 2011 stops on the 9th: 8.53 of the label window's 31 days
    assert window["coverage"] == pytest.approx((8 + (12 * 60 + 50) / 1440) / 31, abs=1e-4) and not window["complete"]
    assert scores["holdout_label_window"] == window
    assert [r["cutoff"] for r in scores["backtest"]["cutoffs"]] == ["2011-09-01", "2011-10-01", "2011-11-01"]
    test_pred = pd.read_parquet(run / "test_pred.parquet")
    assert test_pred["row_key"].str.endswith("@2011-12-01").all()
    oof = pd.read_parquet(run / "oof.parquet")  # the per-cutoff OOF AUC, recomputed from the run's own rows
    recomputed = {
        c: roc_auc_score(g["target"], g["pred"]) for c, g in oof.groupby(oof["row_key"].str.split("@").str[1])
    }
    assert scores["oof_score_by_cutoff"] == pytest.approx(recomputed, abs=1e-12)
    like_for_like = scores["oof_at_holdout_window"]  # the OOF rows against December's 9 days, recomputed
    rows = pd.DataFrame(
        {
            "CustomerID": oof["row_key"].str.split("@").str[0].astype(float),
            "cutoff": pd.to_datetime(oof["row_key"].str.split("@").str[1]),
        }
    )
    short = short_labels(retail_events(), rows, 9)
    assert like_for_like["days"] == 9
    assert like_for_like["oof_score"] == pytest.approx(roc_auc_score(short, oof["pred"]), abs=1e-12)
    by_cutoff = {str(c.date()): roc_auc_score(short[g.index], oof["pred"][g.index]) for c, g in rows.groupby("cutoff")}
    assert like_for_like["by_cutoff"] == pytest.approx(by_cutoff, abs=1e-12)
    assert main(["report", "--run", str(run), "-q"]) == 0
    report = (run / "report" / "report.md").read_text()
    assert "OOF; holdout at the test cutoff" in report and f"{recomputed['2011-09-01']:.4f}" in report
    assert "**Like for like**: scored against labels over the first 9 days" in report
    assert f"the OOF auc is {like_for_like['oof_score']:.4f}" in report and f"{by_cutoff['2011-10-01']:.4f}" in report
    assert "The holdout's label window is cut short" in report and "Forward backtest" in report
    (cache,) = (tmp_path / "runs" / "retail_1y" / "features").iterdir()
    assert {p.name for p in cache.iterdir()} == {"features.parquet", "summary.json", "manifest.json"}
    capsys.readouterr()
    rows = tmp_path / "predict_input.parquet"  # what `make run` predicts: December's rows, label dropped
    assert (
        main(
            [
                "features",
                "--config",
                str(config),
                "--set",
                "features.cutoffs.first=2011-08-01",
                "--test-rows",
                str(rows),
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert out.out.strip() == str(cache) and "reusing" in out.err
    assert len(pd.read_parquet(rows)) == 4331 and "label" not in pd.read_parquet(rows).columns
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "dec.csv"), "-q"]) == 0
    predicted = pd.read_csv(tmp_path / "dec.csv")
    assert predicted["row_key"].tolist() == test_pred["row_key"].tolist()
    assert np.allclose(predicted["pred"], test_pred["pred"], rtol=1e-12)


def test_the_shipped_two_year_config_trains_and_reports_the_season(tmp_path, capsys):
    """configs/retail.toml as `make run` ships it, on every line of 250 customers of the two years: 23
    training cutoffs with year-ago features, the December 2011 holdout, the backtest, and the report's
    sentence on how the model sees the season."""
    config = retail_config(tmp_path, write_events(tmp_path, two_year_slice()), config="retail")
    assert main(["train", "--config", str(config), *FAST]) == 0
    run = only_run(tmp_path / "runs" / "retail")
    scores = json.loads((run / "scores.json").read_text())
    summary = json.loads((run / "features_summary.json").read_text())
    assert len(summary["train_cutoffs"]) == 23 and summary["train_cutoffs"][0] == "2010-01-01"
    assert len(scores["oof_score_by_cutoff"]) >= 20 and "holdout_score" in scores
    assert [r["cutoff"] for r in scores["backtest"]["cutoffs"]] == ["2011-09-01", "2011-10-01", "2011-11-01"]
    oof = pd.read_parquet(run / "oof.parquet")
    assert scores["oof_score"] == pytest.approx(roc_auc_score(oof["target"], oof["pred"]), abs=1e-12)
    schema = json.loads((run / "schema.json").read_text())
    assert {"total_sum_next1m_year_ago", "total_sum_3m_year_ago_yoy_ratio", "total_sum_lag12"} <= set(
        schema["features"]["columns"]
    )
    assert main(["report", "--run", str(run), "-q"]) == 0
    report = (run / "report" / "report.md").read_text()
    december = summary["rows_per_cutoff"]["2010-12-01"]
    assert (
        f"**The season**: 2010-12-01, the test cutoff one year earlier, is a training cutoff with a full label "
        f"window ({december:,} rows" in report.replace("\n", " ")
    )
    assert "features.year_ago: total (sum)" in report


def test_the_time_splitter_cuts_by_cutoff(tmp_path):
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()))
    args = [
        "train",
        "--config",
        str(config),
        "--set",
        "cv.splitter=time",
        "--set",
        "cv.time=cutoff",
        "--set",
        "cv.backtest=0",
        *FAST,
    ]
    assert main(args) == 0
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["splitter"] == "time" and "holdout_score" in scores
    folds = pd.read_parquet(run / "folds.parquet")
    cutoffs = folds["row_key"].str.split("@").str[1]
    # each training cutoff sits in one fold, and later cutoffs in later folds
    by_cutoff = folds.groupby(cutoffs)["fold"].agg(["min", "max"])
    assert (by_cutoff["min"] == by_cutoff["max"]).all() and by_cutoff["min"].is_monotonic_increasing


def test_time_folds_leave_out_the_cutoffs_whose_labels_reach_the_validated_ones(tmp_path):
    """2-month labels: each time fold trains only on cutoffs whose label window ended by its first validated one."""
    changes = {
        "cv.splitter": "time",
        "cv.time": "cutoff",
        "cv.backtest": 0,
        "features.label.months": 2,
        "features.cutoffs.last": "2011-09-01",
    }
    assert (
        main(
            ["train", "--config", str(retail_config(tmp_path, write_events(tmp_path, retail_slice()), changes)), *FAST]
        )
        == 0
    )
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["time_gap"] == 1 and "gap 1" in (run / "report.md").read_text()
    for first_validated, known in known_labels_per_fold(run, scores, pd.DateOffset(months=2)):
        assert (known.max() + pd.DateOffset(months=1)) < first_validated  # one cutoff left out


def test_a_regression_label_trains_a_regressor(tmp_path):
    changes = {"data.task": "regression", "cv.splitter": "group", "model.metric": "rmse", "features.label.above": None}
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), changes)
    assert main(["train", "--config", str(config), *FAST]) == 0
    scores = json.loads((only_run(tmp_path / "runs" / "retail_1y") / "scores.json").read_text())
    assert scores["metric"] == "rmse" and np.isfinite(scores["holdout_score"])


def test_the_cache_is_keyed_by_spec_and_data_and_verified(tmp_path):
    events = write_events(tmp_path, retail_slice())
    cfg = load_config(retail_config(tmp_path, events))
    first = cached_features(cfg)
    assert not first.reused and (first.folder / "manifest.json").is_file()
    again = cached_features(cfg)
    assert again.reused and again.folder == first.folder
    pd.testing.assert_frame_equal(again.table.train, first.table.train)
    other = cached_features(load_config(retail_config(tmp_path, events), ["features.windows=[1, 6]"]))
    assert other.folder != first.folder and not other.reused
    table = first.folder / "features.parquet"
    table.write_bytes(table.read_bytes()[:-100])  # a truncated cache file is never used
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = cached_features(cfg)
    assert not rebuilt.reused and any("cannot be used" in str(w.message) for w in caught)
    pd.testing.assert_frame_equal(rebuilt.table.train, first.table.train, rtol=1e-9)


def test_the_summary_counts_rows_labels_missing_values_and_excluded_lines(tmp_path):
    cfg = load_config(retail_config(tmp_path, write_events(tmp_path, retail_slice())))
    built = cached_features(cfg).table
    table, summary = pd.concat([built.train, built.test]), built.summary
    assert summary["excluded_lines_without_entity"] == 1500
    assert summary["event_lines"] == len(retail_slice())
    days = table["cutoff"].dt.strftime("%Y-%m-%d")
    assert summary["rows_per_cutoff"] == table.groupby(days).size().to_dict()
    rates = table.groupby(days)["label"].mean()
    assert summary["positive_rate_per_cutoff"] == pytest.approx(rates.to_dict(), abs=1e-6)
    nan_share = table[retail_spec().feature_names()].isna().mean()
    assert summary["nan_share_per_feature"] == pytest.approx(nan_share.to_dict(), abs=1e-6)
    assert summary["test_cutoff"] == "2011-12-01" and summary["fingerprint"] in summary["folder"]


def test_a_test_cutoff_inside_the_data_has_a_complete_label_window(tmp_path):
    """November 2011 is all in the data: its window counts as complete and the report says nothing of it."""
    changes = {"features.cutoffs.test": "2011-11-01"}
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), changes)
    assert main(["train", "--config", str(config), *FAST]) == 0
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["holdout_label_window"]["coverage"] == 1.0 and scores["holdout_label_window"]["complete"]
    assert main(["report", "--run", str(run), "-q"]) == 0
    assert "label window is cut short" not in (run / "report" / "report.md").read_text()


def test_online_retail_ii_names_give_the_same_table():
    renamed = retail_slice().rename(columns={"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"})
    from features.build import build_features

    built = build_features(renamed, retail_spec(), "label")
    assert built.summary["renamed_columns"] == {
        "Invoice": "InvoiceNo",
        "Price": "UnitPrice",
        "Customer ID": "CustomerID",
    }
    pd.testing.assert_frame_equal(
        pd.concat([built.train, built.test], ignore_index=True), stacked(retail_slice(), retail_spec()), rtol=1e-9
    )


@pytest.mark.parametrize("windows", ["months", "days"])
def test_times_in_one_time_zone_give_the_same_windows(windows):
    """Zoned times are cut at midnight of the zone: the same lines fall in each window as with naive local times,
    windows of days across a daylight-saving change too (only recency in days moves by the hour)."""
    from features.build import build_features

    spec = retail_spec() if windows == "months" else day_spec()
    zoned = retail_slice().assign(InvoiceDate=lambda d: d["InvoiceDate"].dt.tz_localize("Europe/London"))
    built = build_features(zoned, spec, "label")
    table = pd.concat([built.train, built.test], ignore_index=True)
    naive = stacked(retail_slice(), spec)
    assert str(table["cutoff"].dt.tz) == "Europe/London"
    assert (table["cutoff"].dt.tz_localize(None) == naive["cutoff"]).all()
    same = naive.columns.drop(["cutoff", "days_since_first", "days_since_last"])
    pd.testing.assert_frame_equal(table[same], naive[same], rtol=1e-9)
    np.testing.assert_allclose(table["days_since_last"], naive["days_since_last"], atol=1 / 24 + 1e-9)


def test_features_on_an_experiment_without_a_spec_builds_nothing(capsys):
    assert main(["features", "--config", str(ROOT / "configs" / "adult.toml")]) == 0
    assert "no [features] section" in capsys.readouterr().err


@pytest.mark.parametrize("given,expected", [(None, "dirty_decay_ms:0,muzzy_decay_ms:0"), ("narenas:2", "narenas:2")])
def test_polars_allocator_returns_freed_pages_unless_the_user_chose(given, expected):
    """The CLI sets it first thing, before Polars loads (importing a package sets nothing); a value the user
    set is kept. Polars puts its own defaults in front when it loads; jemalloc takes the last value."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if given is not None:
        env["_RJEM_MALLOC_CONF"] = given
    code = (
        "import os; from pipeline.cli import main; main(['runs', '--help']); import polars; "
        "print(os.environ['_RJEM_MALLOC_CONF'])"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    value = done.stdout.strip().splitlines()[-1]
    assert value.split(",")[-len(expected.split(",")) :] == expected.split(",")
    assert ("dirty_decay_ms:0" in value) == (given is None)


def test_features_prints_its_summary_unless_quiet(tmp_path, capsys):
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()))
    assert main(["features", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    (cache,) = (tmp_path / "runs" / "retail_1y" / "features").iterdir()
    summary = json.loads((cache / "summary.json").read_text())
    for day, rows in summary["rows_per_cutoff"].items():
        role = "test" if day == "2011-12-01" else "train"
        rate = f"{summary['positive_rate_per_cutoff'][day]:.2%}"
        assert f"{day:<12}{role:<7}{rows:>8,}  {rate}" in err, day
    assert "(label window 27% covered: the data ends at 2011-12-09" in err
    worst = max(summary["nan_share_per_feature"], key=summary["nan_share_per_feature"].get)
    assert f"most missing: {worst} " in err
    assert main(["features", "--config", str(config), "-q"]) == 0
    assert capsys.readouterr().err == ""
