"""The fast permutation engine against scikit-learn and against brute force, on real data."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from pipeline.config import load_config
from pipeline.core.metrics import rank_auc, score
from pipeline.data.prepare import prepare
from pipeline.engine.cv import run_cv
from pipeline.engine.spec import train_spec
from pipeline.importance.permutation import (
    merge_drops,
    permutation_drops,
    permutation_indices,
    plan_group,
    predict_rows,
)
from pipeline.importance.treepaths import read_model
from tests.helpers.configs import write_config
from tests.helpers.datasets import shared_file
from tests.helpers.importance import BoosterEstimator, metric_scorer

FAST = {"num_boost_round": 120, "early_stopping_rounds": 15, "num_threads": 1}


def housing_frame(tmp_path, zeros: bool) -> str:
    """2,000 California rows (NaN in total_bedrooms, a text category); optionally many exact zeros."""
    frame = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(2000, random_state=0)
    if zeros:
        rng = np.random.RandomState(0)
        for col in ("housing_median_age", "median_income"):
            frame.loc[rng.rand(len(frame)) < 0.3, col] = 0.0
        frame.loc[rng.rand(len(frame)) < 0.1, "ocean_proximity"] = None
    path = tmp_path / "housing.parquet"
    frame.to_parquet(path)
    return str(path)


CASES = {
    "regression_nan_category": lambda tmp: (
        {"train": housing_frame(tmp, False), "target": "median_house_value", "task": "regression"},
        {},
    ),
    "regression_zero_as_missing": lambda tmp: (
        {"train": housing_frame(tmp, True), "target": "median_house_value", "task": "regression"},
        {"zero_as_missing": True},
    ),
    "multiclass_logloss": lambda tmp: ({"train": "sklearn:wine", "target": "target", "task": "multiclass"}, {}),
}


def fold_model(tmp_path, case: str):
    data, params = CASES[case](tmp_path)
    config = write_config(
        tmp_path,
        case,
        data=data,
        cv={"n_splits": 3, "seed": 1},
        model={**FAST, "params": {"learning_rate": 0.1, "num_leaves": 15, **params}},
    )
    cfg = load_config(config)
    prep = prepare(cfg)
    result = run_cv(prep.X, prep.y, prep.folds, train_spec(cfg, prep))
    booster = lgb.Booster(model_str=result.models[0].model_to_string(num_iteration=result.folds[0].best_iteration))
    _, valid = prep.folds.split(0, 0)
    return cfg, prep, booster, prep.X[valid], prep.y[valid]


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_equal_sklearn_permutation_importance(tmp_path, case):
    cfg, prep, booster, Xv, yv = fold_model(tmp_path, case)
    groups = [[j] for j in range(Xv.shape[1])]
    ours = permutation_drops(booster, Xv, yv, prep.labels.task, cfg.metric, groups, n_repeats=4, seed=3)
    theirs = permutation_importance(
        BoosterEstimator(booster, prep.labels.task),
        Xv,
        yv,
        scoring=metric_scorer(cfg.metric),
        n_repeats=4,
        random_state=3,
    )
    assert ours.drops.shape == theirs.importances.shape
    # Same permutations, same model, same metric: equal up to float rounding of the metric.
    assert np.allclose(ours.drops, theirs.importances, rtol=0, atol=1e-9 * max(1.0, abs(ours.baseline_score)))
    assert np.abs(ours.drops).max() > 0
    assert ours.rows_predicted < ours.rows_total  # work was saved, yet the values are the same


@pytest.mark.parametrize("case", ["regression_nan_category", "regression_zero_as_missing"])
def test_rows_kept_as_unchanged_really_keep_their_prediction(tmp_path, case):
    """Brute force: predict every permuted row; any row whose prediction moved must be planned."""
    cfg, prep, booster, Xv, _ = fold_model(tmp_path, case)
    base = predict_rows(booster, Xv, "regression", 1)
    orders = permutation_indices(5, len(Xv), 3)
    paths = read_model(booster)
    leaves = booster.predict(Xv, pred_leaf=True).astype("int32")
    groups = [[j] for j in range(Xv.shape[1])] + [[0, 1], [2, Xv.shape[1] - 1]]
    n_moved = 0
    for columns in groups:
        plan = plan_group(Xv, columns, orders, paths, leaves, {})
        for r in range(3):
            permuted = Xv.copy()
            permuted[:, columns] = Xv[orders[r]][:, columns]
            moved = np.flatnonzero(predict_rows(booster, permuted, "regression", 1) != base)
            planned = set(plan.row[plan.repeat == r].tolist())
            assert set(moved.tolist()) <= planned, f"columns {columns}: rows changed without being predicted"
            n_moved += len(moved)
    assert n_moved > 0


def test_group_drop_equals_brute_force(tmp_path):
    cfg, prep, booster, Xv, yv = fold_model(tmp_path, "regression_nan_category")
    group = [0, 1]  # longitude and latitude together
    ours = permutation_drops(booster, Xv, yv, "regression", "rmse", [group], n_repeats=3, seed=11)
    orders = permutation_indices(11, len(Xv), 3)
    base = score("rmse", yv, predict_rows(booster, Xv, "regression", 1))
    for r in range(3):
        permuted = Xv.copy()
        permuted[:, group] = Xv[orders[r]][:, group]
        expected = score("rmse", yv, predict_rows(booster, permuted, "regression", 1)) - base
        assert ours.drops[0, r] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("case", ["regression_zero_as_missing", "multiclass_logloss"])
def test_groups_in_chunks_give_the_drops_of_one_call(tmp_path, case):
    """What a cluster's permutation tasks compute (a fold's groups in chunks, shared columns among them) merges into
    exactly the result of one call over every group, work counts included."""
    cfg, prep, booster, Xv, yv = fold_model(tmp_path, case)
    groups = [[j] for j in range(Xv.shape[1])] + [[0, 1], [1, 2, 3]]
    whole = permutation_drops(booster, Xv, yv, prep.labels.task, cfg.metric, groups, n_repeats=3, seed=2)
    parts = [
        permutation_drops(booster, Xv, yv, prep.labels.task, cfg.metric, chunk, n_repeats=3, seed=2)
        for chunk in (groups[:2], groups[2:3], groups[3:])
    ]
    merged = merge_drops(parts)
    assert merged.baseline_score == whole.baseline_score
    assert np.array_equal(merged.drops, whole.drops) and np.abs(whole.drops).max() > 0
    assert (merged.rows_predicted, merged.rows_total) == (whole.rows_predicted, whole.rows_total)


def test_rank_auc_equals_roc_auc_with_ties():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 5000)
    for pred in (rng.rand(5000), np.round(rng.rand(5000), 1), np.zeros(5000)):
        assert rank_auc(y, pred) == pytest.approx(roc_auc_score(y, pred), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        rank_auc(np.ones(10, dtype=int), rng.rand(10))
