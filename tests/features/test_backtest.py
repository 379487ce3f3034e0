"""The forward backtest (cv.backtest): each replayed cutoff is scored by folds trained on its past only."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.core.errors import ConfigError
from pipeline.data.prepare import prepare
from pipeline.engine.cv import run_cv
from pipeline.engine.scoring import cutoff_dates
from pipeline.engine.spec import train_spec
from pipeline.train.backtest import backtest, plan_backtest
from tests.helpers.paths import ROOT
from tests.helpers.retail import CONFIG_ERROR, FAST, only_run, retail_config, retail_slice, write_events

FAST_SETTINGS = [FAST[i + 1] for i in range(0, len(FAST) - 1, 2) if FAST[i] == "--set"]


def slice_experiment(tmp_path, *overrides: str, changes: dict | None = None):
    events = write_events(tmp_path, retail_slice())
    cfg = load_config(retail_config(tmp_path, events, changes), [*FAST_SETTINGS, *overrides])
    prep = prepare(cfg)
    spec = train_spec(cfg, prep)
    return cfg, prep, spec, run_cv(prep.X, prep.y, prep.folds, spec).oof_pred


def run_backtest(cfg, prep, spec, oof):
    return backtest(cfg, prep, spec, oof, plan_backtest(cfg, prep))


def test_rows_after_a_replayed_cutoff_do_not_change_its_forward_score(tmp_path):
    """Leakage: scrambling every row of later cutoffs (features and labels) leaves a replay unchanged."""
    cfg, prep, spec, oof = slice_experiment(tmp_path, "cv.backtest=3")
    before = run_backtest(cfg, prep, spec, oof)
    assert [r.cutoff for r in before] == ["2011-09-01", "2011-10-01", "2011-11-01"]
    cutoffs = cutoff_dates(cfg, prep)
    later = cutoffs > np.datetime64("2011-09-01")
    rng = np.random.default_rng(0)
    X, y = prep.X.copy(), prep.y.copy()
    X[later] = rng.permutation(X[later])
    y[later] = rng.permutation(y[later])
    after = run_backtest(cfg, replace(prep, X=X, y=y), spec, oof)
    assert after[0] == before[0]  # September: trained on January-August, scored on September
    assert after[1].forward_score != before[1].forward_score  # October's own rows were scrambled: the test can fail
    assert before[0].n_train == int((cutoffs < np.datetime64("2011-09-01")).sum())
    assert before[-1].n_rows == int((cutoffs == np.datetime64("2011-11-01")).sum())


def test_a_replay_trains_only_on_rows_whose_label_window_has_ended(tmp_path):
    """With 2-month labels, the rows of the month before a replayed cutoff are not known yet and stay out."""
    cfg, prep, spec, oof = slice_experiment(
        tmp_path, "cv.backtest=1", "features.label.months=2", "features.cutoffs.last=2011-10-01"
    )
    (only,) = run_backtest(cfg, prep, spec, oof)
    cutoffs = cutoff_dates(cfg, prep)
    assert only.cutoff == "2011-10-01"
    assert only.n_train == int((cutoffs <= np.datetime64("2011-08-01")).sum())


def test_scores_json_and_report_show_each_replay_beside_its_oof_score(tmp_path):
    events = write_events(tmp_path, retail_slice())
    assert main(["train", "--config", str(retail_config(tmp_path, events)), "--set", "cv.backtest=2", *FAST]) == 0
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    replays = scores["backtest"]["cutoffs"]
    assert [r["cutoff"] for r in replays] == ["2011-10-01", "2011-11-01"]
    oof = pd.read_parquet(run / "oof.parquet")
    for r in replays:  # each replay's OOF score is recomputed from the run's own OOF rows of that cutoff
        rows = oof[oof["row_key"].str.endswith("@" + r["cutoff"])]
        assert r["n_rows"] == len(rows)
        assert r["oof_score"] == pytest.approx(roc_auc_score(rows["target"], rows["pred"]), abs=1e-12)
        assert r["gap"] == pytest.approx(r["oof_score"] - r["forward_score"], abs=1e-15)
    assert scores["backtest"]["mean_gap"] == pytest.approx(np.mean([r["gap"] for r in replays]), abs=1e-15)
    assert main(["report", "--run", str(run), "-q"]) == 0
    report = (run / "report" / "report.md").read_text()
    assert "forward (trained on rows whose labels were known at the cutoff)" in report
    row = next(line for line in report.splitlines() if line.startswith("| 2011-11-01 |"))
    assert row.rstrip(" |").endswith(f"{replays[1]['forward_score']:.4f}")  # the cutoff table's forward column
    assert f"2011-11-01: OOF {replays[1]['oof_score']:.4f}, forward {replays[1]['forward_score']:.4f}" in report


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            {"cv.backtest": 3, "features.cutoffs.first": "2011-09-01"},
            r"cv.backtest = 3, but only 2 of the 3 training cutoffs have earlier cutoffs to train on",
        ),
        ({"cv.backtest": 20}, r"set cv.backtest to at most 10"),
    ],
)
def test_a_backtest_longer_than_the_history_fails_before_training(tmp_path, capsys, changes, message):
    events = write_events(tmp_path, retail_slice())
    assert main(["train", "--config", str(retail_config(tmp_path, events, changes)), *FAST]) == CONFIG_ERROR
    assert re.search(message, capsys.readouterr().err)
    exp_dir = tmp_path / "runs" / "retail_1y"
    assert not [p for p in exp_dir.iterdir() if p.name != "features" and p.name != "folds"]


def test_backtest_needs_cutoffs_and_k_fold_folds(tmp_path, capsys):
    adult = str(ROOT / "configs" / "adult.toml")
    assert main(["train", "--config", adult, "--set", "cv.backtest=2", "-q"]) == CONFIG_ERROR
    assert "cv.backtest = 2 replays training cutoffs, which only a [features] experiment has" in capsys.readouterr().err
    retail = retail_config(
        tmp_path, write_events(tmp_path, retail_slice()), {"cv.splitter": "time", "cv.time": "cutoff"}
    )
    assert main(["train", "--config", str(retail), "-q"]) == CONFIG_ERROR
    assert "which the 'time' splitter's blocks of cutoffs cannot give; set cv.backtest = 0" in capsys.readouterr().err


def test_zoned_cutoffs_replay_the_same_rows(tmp_path):
    """Cutoffs in a time zone (Europe/London) select the same past rows as naive local times."""
    replays = []
    for name, events in [
        ("naive", retail_slice()),
        ("zoned", retail_slice().assign(InvoiceDate=lambda d: d["InvoiceDate"].dt.tz_localize("Europe/London"))),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(retail_config(folder, write_events(folder, events))),
                    "--set",
                    "cv.backtest=2",
                    *FAST,
                ]
            )
            == 0
        )
        scores = json.loads((only_run(folder / "runs" / "retail_1y") / "scores.json").read_text())
        replays.append([(r["cutoff"], r["n_train"], r["n_rows"]) for r in scores["backtest"]["cutoffs"]])
    assert replays[0] == replays[1] and replays[0][0][0] == "2011-10-01"


def test_the_gap_is_oof_optimism_for_losses_too(tmp_path):
    """With rmse (lower is better), a positive gap still means the OOF score looks better than forward."""
    changes = {"data.task": "regression", "cv.splitter": "group", "model.metric": "rmse", "features.label.above": None}
    cfg, prep, spec, oof = slice_experiment(tmp_path, "cv.backtest=1", changes=changes)
    (only,) = run_backtest(cfg, prep, spec, oof)
    assert only.gap == pytest.approx(only.forward_score - only.oof_score, abs=1e-15)


def test_changing_backtest_keeps_the_fold_ids(tmp_path):
    from pipeline.data.prepare import folds_cache_path

    events = write_events(tmp_path, retail_slice())
    with_backtest = load_config(retail_config(tmp_path, events), ["cv.backtest=3"])
    without = load_config(retail_config(tmp_path, events), ["cv.backtest=0"])
    assert folds_cache_path(with_backtest, "fp") == folds_cache_path(without, "fp")


def test_a_replay_with_one_class_fails_before_training(tmp_path):
    """AUC needs both classes: in every past-only fold, and among the replayed cutoff's rows."""
    cfg, prep, _, _ = slice_experiment(tmp_path, "cv.backtest=1")
    cutoffs = cutoff_dates(cfg, prep)
    november = cutoffs == np.datetime64("2011-11-01")
    no_past_positives = np.where(november, prep.y, 0)
    with pytest.raises(ConfigError, match=r"replay of cutoff 2011-11-01 \(past rows only\): fold 0 .* no 'label' = 1"):
        plan_backtest(cfg, replace(prep, y=no_past_positives))
    no_november_positives = np.where(november, 0, prep.y)
    with pytest.raises(
        ConfigError, match=r"the \d+ rows of cutoff 2011-11-01 all have 'label' = 0, so AUC is undefined"
    ):
        plan_backtest(cfg, replace(prep, y=no_november_positives))
