"""Combiners on real members' OOF predictions (breast cancer, wine): voting, blending weights,
rank maps, the stack's meta-model, and the nested OOF that never uses a row's own label."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.config import validate_config
from pipeline.core.metrics import score
from pipeline.data.prepare import prepare
from pipeline.ensemble.combiners import (
    Combiner,
    CombinerSettings,
    blend_loss,
    fit_combiner,
    greedy_weights,
    meta_features,
    nested_oof,
    optimized_weights,
    rank_grid,
    rank_transform,
    vote_shares,
)
from pipeline.ensemble.members import train_member
from pipeline.ensemble.stack import MetaModel, fit_meta
from tests.helpers.ensemble import FAST_MODEL

MEMBERS = [
    {"name": "lgb", "family": "lightgbm"},
    {"name": "forest", "family": "extra_trees", "params": {"n_estimators": 40}},
    {"name": "logistic", "family": "logistic"},
]
REGRESSION_MEMBERS = [
    {"name": "lgb", "family": "lightgbm"},
    {"name": "forest", "family": "random_forest", "params": {"n_estimators": 40}},
    {"name": "ridge", "family": "ridge"},
]


def trained(tmp_path_factory, dataset: str, task: str, metric: str, members: list[dict] = MEMBERS):
    runs = tmp_path_factory.mktemp("runs")
    cfg = validate_config(
        {
            "experiment": {"name": dataset, "runs_dir": str(runs)},
            "data": {"train": f"sklearn:{dataset}", "target": "target", "task": task},
            "cv": {"n_splits": 4, "seed": 3},
            "model": {**FAST_MODEL, "metric": metric},
            "ensemble": {"members": members},
        }
    )
    prep = prepare(cfg)
    results = [train_member(cfg, prep, m) for m in cfg.ensemble.members]
    settings = CombinerSettings(task=task, metric=metric, n_classes=prep.labels.n_classes, num_threads=1)
    return prep, [r.oof_pred for r in results], settings


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    return trained(tmp_path_factory, "breast_cancer", "binary", "auc")


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    return trained(tmp_path_factory, "wine", "multiclass", "logloss")


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    return trained(tmp_path_factory, "diabetes", "regression", "rmse", REGRESSION_MEMBERS)


@pytest.mark.parametrize("data", ["cancer", "wine"])
def test_soft_vote_of_identical_members_is_that_member(data, request):
    prep, preds, settings = request.getfixturevalue(data)
    vote = fit_combiner("soft_vote", ["a", "b", "c"], settings, prep.y, [preds[0]] * 3)
    np.testing.assert_allclose(vote.predict([preds[0]] * 3), preds[0], rtol=1e-14, atol=1e-15)
    pair = fit_combiner("soft_vote", ["a", "b"], settings, prep.y, [preds[0]] * 2)
    np.testing.assert_array_equal(pair.predict([preds[0]] * 2), preds[0])  # halves and a sum: exact


@pytest.mark.parametrize(
    "data, kind, on",
    [
        ("cancer", "greedy", "proba"),
        ("cancer", "greedy", "rank"),
        ("cancer", "optimized", "proba"),
        ("cancer", "optimized", "rank"),
        ("wine", "greedy", "proba"),
        ("wine", "optimized", "proba"),
    ],
)
def test_blend_weights_are_non_negative_and_sum_to_one(data, kind, on, request):
    prep, preds, settings = request.getfixturevalue(data)
    settings = CombinerSettings(**{**settings.__dict__, "blend_on": on})
    grids = tuple(rank_grid(p) for p in preds) if on == "rank" else ()
    blend = fit_combiner(kind, ["lgb", "forest", "logistic"], settings, prep.y, preds, rank_grids=grids)
    weights = np.asarray(blend.weights)
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert blend.to_dict()["weights"].keys() == {"lgb", "forest", "logistic"}


def test_greedy_starts_from_the_best_member_and_never_ends_worse(cancer):
    prep, preds, settings = cancer
    member_scores = [score("auc", prep.y, p) for p in preds]
    first = greedy_weights("auc", prep.y, preds, n_iterations=1)
    assert first.tolist() == [1.0 if i == int(np.argmax(member_scores)) else 0.0 for i in range(3)]
    weights = greedy_weights("auc", prep.y, preds, n_iterations=30)
    assert score("auc", prep.y, np.tensordot(weights, np.stack(preds), axes=1)) >= max(member_scores)


def test_optimized_blend_is_at_least_as_good_as_every_member_on_its_loss(wine):
    """Every member is a vertex of the simplex, so the optimum's log-loss cannot be higher."""
    prep, preds, settings = wine
    blend = fit_combiner("optimized", ["lgb", "forest", "logistic"], settings, prep.y, preds)
    blended = score("logloss", prep.y, blend.predict(preds))
    assert blended <= min(score("logloss", prep.y, p) for p in preds) + 1e-9


def test_hard_vote_is_the_majority_label(wine):
    prep, preds, _ = wine
    shares = vote_shares(preds, np.full(3, 1 / 3), "multiclass", 3)
    labels = np.stack([p.argmax(axis=1) for p in preds])
    majority_exists = np.array([np.bincount(col, minlength=3).max() >= 2 for col in labels.T])
    assert majority_exists.mean() > 0.9
    for col, row in zip(labels.T[majority_exists], shares[majority_exists]):
        assert row.argmax() == np.bincount(col, minlength=3).argmax()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_rank_map_is_monotone_uniform_on_oof_and_fixed_for_new_rows(cancer):
    _, preds, _ = cancer
    grid = rank_grid(preds[0])
    ranks = rank_transform(preds[0], grid)
    order = np.argsort(preds[0], kind="stable")
    assert (np.diff(ranks[order]) >= 0).all() and 0.0 <= ranks.min() and ranks.max() <= 1.0
    assert abs(np.mean(ranks) - 0.5) < 0.02
    single = rank_transform(preds[0][:1], grid)  # one new row: its rank does not depend on other new rows
    assert single[0] == ranks[0]
    assert rank_transform(np.array([0.3]), [0.3] * 11)[0] == pytest.approx(0.5)  # all tied: the middle


def test_linear_meta_model_survives_json_and_matches_scikit_learn(wine):
    prep, preds, settings = wine
    features = meta_features("multiclass", preds, None)
    meta = fit_meta(settings, features, prep.y)
    reloaded = MetaModel.from_dict(json.loads(json.dumps(meta.to_dict())))
    scaled = (features - features.mean(axis=0)) / features.std(axis=0)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(scaled, prep.y).predict_proba(scaled)
    np.testing.assert_allclose(reloaded.predict(features), reference, atol=1e-6)
    np.testing.assert_array_equal(reloaded.predict(features), meta.predict(features))


@pytest.mark.parametrize("kind", ["greedy", "optimized", "stack", "stack_lightgbm"])
def test_nested_oof_of_a_row_never_uses_that_rows_label(cancer, kind):
    """By construction: relabel every row of one fold; that fold's nested OOF predictions stay identical,
    while the refitted combiner's predictions for the other folds do change."""
    prep, preds, settings = cancer
    if kind == "stack_lightgbm":
        kind, settings = (
            "stack",
            CombinerSettings(**{**settings.__dict__, "stack_model": "lightgbm", "stack_lgb_rounds": 30}),
        )
    scored = np.ones(len(prep.y), dtype=bool)

    def oof_with(y):
        def fit(idx):
            return fit_combiner(kind, ["lgb", "forest", "logistic"], settings, y[idx], [p[idx] for p in preds])

        return nested_oof(fit, prep.folds, scored, lambda c, idx: c.predict([p[idx] for p in preds]), 1)

    honest = oof_with(prep.y)
    fold0 = prep.folds.assignments[0] == 0
    relabelled = prep.y.copy()
    relabelled[fold0] = 1 - relabelled[fold0]
    changed = oof_with(relabelled)
    np.testing.assert_array_equal(changed[fold0], honest[fold0])
    assert not np.isnan(honest).any()
    if kind == "stack":
        assert np.abs(changed[~fold0] - honest[~fold0]).max() > 1e-3  # the labels do reach the other folds


def test_combiner_json_round_trip_predicts_the_same(cancer):
    prep, preds, settings = cancer
    settings = CombinerSettings(**{**settings.__dict__, "blend_on": "rank"})
    grids = tuple(rank_grid(p) for p in preds)
    blend = fit_combiner("greedy", ["lgb", "forest", "logistic"], settings, prep.y, preds, rank_grids=grids)
    reloaded = Combiner.from_dict(json.loads(json.dumps(blend.to_dict())))
    np.testing.assert_array_equal(reloaded.predict(preds), blend.predict(preds))


def test_optimized_weights_do_not_depend_on_the_targets_unit(diabetes):
    """Squared errors in dollars (1e9) or in units: the same blend, at least as good as every member."""
    prep, preds, settings = diabetes
    loss = blend_loss(settings, "proba")
    weights = optimized_weights(loss, prep.y, preds)
    in_dollars = optimized_weights(loss, prep.y * 1e4, [p * 1e4 for p in preds])
    np.testing.assert_allclose(in_dollars, weights, atol=1e-3)
    blended = np.tensordot(weights, np.stack(preds), axes=1)
    assert score("rmse", prep.y, blended) <= min(score("rmse", prep.y, p) for p in preds) + 1e-9
