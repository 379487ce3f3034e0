"""Adversarial validation: can a classifier tell the training rows (label 0) from the new rows (label 1)?

The two sides are sampled to at most `drift.sample_rows` rows each (seeded) and trained through the engine
every stage uses (pipeline/engine/cv.py) on stratified folds; early stopping uses an inner split of each
fold's training rows, so the pooled out-of-fold AUC is honest: 0.5 when the sides cannot be told apart, 1.0
when every row gives its side away. It comes with a percentile bootstrap interval, the features the
classifier separates by (its gain, and the AUC lost on each fold's held-out rows when one column is
shuffled), and the share of training rows that look like the new rows: their out-of-fold probability of
being new is above 0.5 once both sides weigh the same (the model's odds divided by the sides' row ratio).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config.sections import DriftSection
from pipeline.core.intervals import score_interval
from pipeline.core.metrics import rank_auc
from pipeline.data.folds import Folds, make_folds
from pipeline.data.schema import FeatureSchema
from pipeline.engine.cv import CVResult, run_cv
from pipeline.engine.spec import TrainSpec, resolve_params

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

# A quick classifier: it has to find a difference, not to be the best model of it.
PARAMS = {"learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20}
NUM_BOOST_ROUND = 300
EARLY_STOPPING_ROUNDS = 20
INNER_VALID_FRACTION = 0.2


@dataclass(frozen=True)
class AdversarialResult:
    """The classifier's OOF AUC with its interval, and per feature (schema order) what it separates by."""

    auc: float
    ci_low: float
    ci_high: float
    n_splits: int
    n_train: int  # sampled rows of each side
    n_new: int
    share_train_like_new: float
    gain_share: np.ndarray
    permutation: np.ndarray  # mean AUC drop over the folds when the column is shuffled


def sample_rows(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of n row indices, drawn without replacement, in row order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def adversarial_validation(
    X_train: np.ndarray,
    X_new: np.ndarray,
    schema: FeatureSchema,
    settings: DriftSection,
    num_threads: int,
    cluster: Cluster | None = None,
) -> AdversarialResult:
    """Train the train-vs-new classifier on stratified folds and score it (see the module's docstring)."""
    rng = np.random.default_rng(settings.seed)
    train_rows = sample_rows(len(X_train), settings.sample_rows, rng)
    new_rows = sample_rows(len(X_new), settings.sample_rows, rng)
    X = np.concatenate([X_train[train_rows], X_new[new_rows]])
    y = np.concatenate([np.zeros(len(train_rows)), np.ones(len(new_rows))])
    folds = make_folds("stratified", settings.n_splits, 1, settings.seed, y)
    spec = replace(classifier_spec(schema, settings, num_threads), cluster=cluster)
    result = run_cv(X, y, folds, spec)
    interval = score_interval("auc", y, result.oof_pred, result.oof_score)
    odds_ratio = len(new_rows) / len(train_rows)
    like_new = result.oof_pred[: len(train_rows)] > odds_ratio / (1.0 + odds_ratio)
    return AdversarialResult(
        auc=float(result.oof_score),
        ci_low=interval.low,
        ci_high=interval.high,
        n_splits=settings.n_splits,
        n_train=len(train_rows),
        n_new=len(new_rows),
        share_train_like_new=float(like_new.mean()),
        gain_share=gain_shares(result, X.shape[1]),
        permutation=permutation_drops(result, X, y, folds, settings.seed, num_threads),
    )


def classifier_spec(schema: FeatureSchema, settings: DriftSection, num_threads: int) -> TrainSpec:
    return TrainSpec(
        task="binary",
        metric="auc",
        params=resolve_params("binary", "auc", PARAMS, 1, settings.seed, num_threads),
        num_boost_round=NUM_BOOST_ROUND,
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        early_stopping="inner",
        inner_valid_fraction=INNER_VALID_FRACTION,
        feature_names=tuple(schema.model_names),
        categorical=tuple(schema.categorical_indices),
        seed=settings.seed,
        fold_workers=0,
    )


def gain_shares(result: CVResult, n_features: int) -> np.ndarray:
    """Each feature's share of the classifier's total gain, averaged over the fold models."""
    gain = result.importance["gain"].to_numpy(dtype="float64").reshape(-1, n_features).mean(axis=0)
    total = gain.sum()
    return gain / total if total > 0 else np.zeros(n_features)


def permutation_drops(
    result: CVResult, X: np.ndarray, y: np.ndarray, folds: Folds, seed: int, num_threads: int
) -> np.ndarray:
    """Mean over the folds of the held-out AUC lost when one column is shuffled. A column a fold model
    never splits on cannot change its predictions: its drop is 0 without predicting."""
    drops = np.zeros((len(result.models), X.shape[1]))
    for k, (booster, fold) in enumerate(zip(result.models, result.folds)):
        _, valid = folds.split(fold.repeat, fold.fold)
        rows, labels = X[valid], y[valid]
        baseline = rank_auc(labels, result.oof_pred[valid])  # one repeat: the OOF predictions are this fold's
        used = booster.feature_importance("split", iteration=fold.best_iteration) > 0
        rng = np.random.default_rng([seed, k])
        for j in np.flatnonzero(used):
            kept = rows[:, j].copy()
            rows[:, j] = kept[rng.permutation(len(kept))]
            pred = booster.predict(rows, num_iteration=fold.best_iteration, num_threads=num_threads)
            drops[k, j] = baseline - rank_auc(labels, np.asarray(pred))
            rows[:, j] = kept
    return drops.mean(axis=0)
