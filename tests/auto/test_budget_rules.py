"""The budget rule outside `gbpipe auto`: `tune --timeout` starts no trial whose estimated duration exceeds what is
left, and `ensemble --time-budget` skips members and combiners that would not fit, and says so."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from pipeline.cli import main
from pipeline.core.budget import Clock
from pipeline.core.run_folder import RunReader
from pipeline.tune.study import this_worker
from pipeline.tune.trials import TrialPlan, run_trials, trial_estimate
from tests.helpers.auto import adult_slice
from tests.helpers.ensemble import ensemble_config, newest_ensemble_run, read_scores
from tests.helpers.tune import study_dir, tune_config

START_UP = 2.0


def finished_trial(study: optuna.Study, seconds: float, folds: int, state: TrialState = TrialState.COMPLETE) -> None:
    trial = study.ask()
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("fold_scores", [0.5] * folds)
    study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def test_the_next_trial_is_estimated_from_the_study_and_not_started_when_it_does_not_fit():
    study = optuna.create_study(direction="maximize")
    finished_trial(study, 4.0, 5)
    finished_trial(study, 1.0, 1, TrialState.PRUNED)  # one fold of five: a whole trial would take five seconds
    assert trial_estimate(study.get_trials(), 5) == pytest.approx(4.5)
    evaluator = SimpleNamespace(prep=SimpleNamespace(folds=SimpleNamespace(pairs=lambda: [(0, k) for k in range(5)])))
    plan = TrialPlan(evaluator, SimpleNamespace(distributions={}), 10, Clock.start(3.0))
    done = run_trials(plan, study, this_worker())
    assert done.ran == 0 and "the next trial's estimated 4.5s exceeded the" in done.stopped
    assert len(study.get_trials()) == 2  # nothing was asked of the study, so no trial was started


def test_tune_timeout_stops_starting_trials_that_would_not_end_in_time(tmp_path, adult):
    timeout = 3.0
    config = tune_config(tmp_path, adult)
    started = time.perf_counter()
    assert main(["tune", "--config", str(config), "--n-trials", "500", "--timeout", str(timeout), "-q"]) == 0
    wall = time.perf_counter() - started
    summary = json.loads((study_dir(config) / "tune.json").read_text())
    assert summary["n_finished"] < 500 and "exceeded the" in summary["stopped"]
    assert summary["seconds"] <= 1.1 * timeout and wall <= 1.1 * timeout + START_UP


def test_ensemble_time_budget_skips_what_does_not_fit_and_records_it(tmp_path, capsys):
    budget = 6.0
    members = [
        {"name": "lgb", "family": "lightgbm"},
        {"name": "lgb_slow", "family": "lightgbm", "params": {"learning_rate": 0.01, "num_leaves": 127}},
        {"name": "forest", "family": "random_forest", "params": {"n_estimators": 400, "min_samples_leaf": 1}},
        {"name": "logistic", "family": "logistic"},
    ]
    data = adult_slice(tmp_path, 8000)
    config = ensemble_config(
        tmp_path, "budgeted", data, members, cv={"n_splits": 5, "seed": 7}, model={"num_boost_round": 2000}
    )
    started = time.perf_counter()
    assert main(["ensemble", "--config", str(config), "--time-budget", f"{budget}s", "-q"]) == 0
    wall = time.perf_counter() - started
    run = newest_ensemble_run(tmp_path / "runs" / "budgeted")
    scores = read_scores(run)
    skipped = {s["name"]: s for s in scores["budget"]["skipped"]}
    assert skipped and scores["budget"]["clock_dependent"] and scores["budget"]["time_budget_seconds"] == budget
    assert "lgb" in scores["members"] and not set(skipped) & set(scores["members"])
    assert all(s["reason"] for s in skipped.values())
    assert wall <= 1.1 * budget + START_UP, f"{wall:.1f}s for {budget}s; skipped {list(skipped)}"
    RunReader(run).read_json("ensemble/weights.json")
    assert main(["ensemble", "--config", str(config), "--time-budget", "soon", "-q"]) == 2
    assert "must be a positive number of seconds" in capsys.readouterr().err


def test_a_combiner_whose_refits_cannot_end_in_time_is_stopped_after_its_first_fit():
    """A combiner's estimate counts metric evaluations, which a slow meta-model outruns (a multiclass stack took
    20 s against an estimate under 1 s): the first fit's pace decides whether the per-fold refits may follow."""
    from pipeline.core.budget import TimeUp
    from pipeline.data.folds import make_folds
    from pipeline.ensemble.combiner_settings import CombinerSettings
    from pipeline.ensemble.steps import MemberPredictions, fit_candidate

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype("float64")
    oof = tuple(np.clip(y * 0.6 + rng.normal(0.2, 0.25, len(y)), 0.01, 0.99) for _ in range(3))
    prep = SimpleNamespace(y=y, folds=make_folds("stratified", 5, 1, 0, y, None, None, 0))
    preds = MemberPredictions(("a", "b", "c"), oof, None, None, None)
    settings = CombinerSettings(task="binary", metric="auc")
    scored = np.ones(len(y), dtype=bool)
    spent = Clock.start(1e-3)
    time.sleep(0.01)
    with pytest.raises(TimeUp, match=r"combiner stack stopped after 1 of 6 fits"):
        fit_candidate("stack", settings, prep, preds, scored, (), spent)
    assert fit_candidate("soft_vote", settings, prep, preds, scored, (), spent).oof_pred.shape == y.shape
    assert np.isfinite(fit_candidate("stack", settings, prep, preds, scored, (), Clock.start(600)).oof_pred).all()
