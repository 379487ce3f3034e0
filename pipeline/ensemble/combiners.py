"""Combining members' predictions: voting, weighted blending (Caruana greedy, optimised weights), stacking.

Everything here works on aligned prediction arrays: `preds[m]` is member m's prediction for the same
rows (binary: P(positive), shape n; multiclass: shape n x K; regression: values). A fitted combiner
is a small frozen object whose `predict` is used both for the ensemble's own test predictions and by
`gbpipe predict`, so the two agree. Fitting never sees rows outside the ones it is given: the honest
OOF score of a combiner that learns from labels comes from `nested_oof`, which refits it per fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

from pipeline.core.bootstrap import row_logloss
from pipeline.core.metrics import is_better, score, to_labels
from pipeline.data.folds import Folds

from .combiner_settings import CombinerSettings
from .stack import MetaModel, fit_meta

# Simplest first: the recommendation prefers a lower rank among models whose scores are within noise.
COMPLEXITY = {"member": 0, "hard_vote": 1, "soft_vote": 1, "greedy": 2, "optimized": 2, "stack": 3}
FITTED_ON_LABELS = ("greedy", "optimized", "stack")
RANK_GRID = 1001


@dataclass(frozen=True)
class Combiner:
    """A fitted combiner: member weights (voting, blending) or a meta-model (stacking)."""

    kind: str
    members: tuple[str, ...]
    task: str
    weights: tuple[float, ...] = ()
    on: str = "proba"  # proba | rank | label
    rank_grids: tuple[tuple[float, ...], ...] = ()  # per member: OOF quantiles at RANK_GRID even levels
    meta: MetaModel | None = None
    raw_columns: tuple[int, ...] = ()
    n_classes: int = 1

    def predict(self, preds: Sequence[np.ndarray], raw: np.ndarray | None = None) -> np.ndarray:
        """Combine member predictions (same order as `members`); `raw` holds the stack's raw features."""
        if self.kind == "stack":
            return self.meta.predict(meta_features(self.task, preds, raw))
        if self.on == "label":
            return vote_shares(preds, np.asarray(self.weights), self.task, self.n_classes)
        if self.on == "rank":
            preds = [rank_transform(p, grid) for p, grid in zip(preds, self.rank_grids)]
        return weighted_mean(preds, np.asarray(self.weights))

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "kind": self.kind,
            "members": list(self.members),
            "task": self.task,
            "on": self.on,
            "n_classes": self.n_classes,
        }
        if self.kind != "stack":
            doc["weights"] = dict(zip(self.members, self.weights))
        if self.rank_grids:
            doc["rank_grids"] = [list(g) for g in self.rank_grids]
        if self.raw_columns:
            doc["raw_columns"] = list(self.raw_columns)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], meta: MetaModel | None = None) -> Combiner:
        members = tuple(doc["members"])
        weights = tuple(float(doc["weights"][m]) for m in members) if "weights" in doc else ()
        return cls(
            doc["kind"],
            members,
            doc["task"],
            weights,
            doc["on"],
            tuple(tuple(g) for g in doc.get("rank_grids", ())),
            meta,
            tuple(doc.get("raw_columns", ())),
            int(doc.get("n_classes", 1)),
        )


def fit_combiner(
    kind: str,
    names: Sequence[str],
    settings: CombinerSettings,
    y: np.ndarray,
    preds: Sequence[np.ndarray],
    raw: np.ndarray | None = None,
    rank_grids: tuple[tuple[float, ...], ...] = (),
) -> Combiner:
    """Fit one combiner on the rows given (all of y and preds are used)."""
    base = Combiner(kind, tuple(names), settings.task, n_classes=settings.n_classes)
    m = len(names)
    if kind in ("hard_vote", "soft_vote"):
        weights = np.asarray(settings.vote_weights or [1.0] * m, dtype="float64")
        return replace(base, weights=tuple(weights / weights.sum()), on="label" if kind == "hard_vote" else "proba")
    if kind == "stack":
        features = meta_features(settings.task, preds, raw)
        return replace(base, meta=fit_meta(settings, features, y), raw_columns=settings.raw_columns)
    on = settings.blend_on
    if on == "rank":
        preds = [rank_transform(p, grid) for p, grid in zip(preds, rank_grids)]
    if kind == "greedy":
        weights = greedy_weights(settings.metric, y, preds, settings.greedy_iterations)
    elif kind == "optimized":
        weights = optimized_weights(blend_loss(settings, on), y, preds)
    else:
        raise ValueError(f"unknown combiner {kind!r}")
    return replace(base, weights=tuple(float(w) for w in weights), on=on, rank_grids=rank_grids)


def nested_oof(
    fit: Callable[[np.ndarray], Combiner],
    folds: Folds,
    scored: np.ndarray,
    predict_rows: Callable[[Combiner, np.ndarray], np.ndarray],
    width: int,
) -> np.ndarray:
    """Honest OOF of a combiner that learns from labels: for each fold of the experiment's folds
    (repeat 0), fit on the other folds' scored rows and predict this fold's rows. A row's prediction
    therefore never depends on its own label. Rows whose fold has no training rows stay NaN."""
    n = len(scored)
    oof = np.full((n, width) if width > 1 else n, np.nan)
    for fold in range(folds.n_splits):
        train_idx, valid_idx = folds.split(0, fold)
        train_idx = train_idx[scored[train_idx]]
        valid_idx = valid_idx[scored[valid_idx]]
        if len(train_idx) == 0 or len(valid_idx) == 0:
            continue
        oof[valid_idx] = predict_rows(fit(train_idx), valid_idx)
    return oof


def weighted_mean(preds: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """sum_m w_m * pred_m, for 1-D or n x K predictions."""
    return np.tensordot(weights, np.stack(preds), axes=1)


def vote_shares(preds: Sequence[np.ndarray], weights: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """Hard voting: each member votes for its predicted class; the output is the weighted vote share
    (binary: share voting positive, so a tie counts as positive; multiclass: n x K shares)."""
    labels = np.stack([to_labels(p) for p in preds])  # members x rows
    if task == "binary":
        return weights @ labels.astype("float64")
    shares = np.zeros((labels.shape[1], n_classes))
    for w, member_labels in zip(weights, labels):
        shares[np.arange(labels.shape[1]), member_labels] += w
    return shares


def greedy_weights(metric: str, y: np.ndarray, preds: Sequence[np.ndarray], n_iterations: int) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection with replacement: start empty, add the member that
    most improves the averaged ensemble's metric, repeat; keep the best ensemble seen on the path.
    Weights are selection counts over their total (non-negative, summing to one)."""
    counts = np.zeros(len(preds))
    running = np.zeros_like(np.asarray(preds[0], dtype="float64"))
    best_score, best_counts = None, None
    for step in range(1, n_iterations + 1):
        trial = [fast_score(metric, y, (running + p) / step) for p in preds]
        pick = _best_index(metric, trial)
        counts[pick] += 1
        running = running + preds[pick]
        if best_score is None or is_better(metric, trial[pick], best_score):
            best_score, best_counts = trial[pick], counts.copy()
    return best_counts / best_counts.sum()


def fast_score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    """metrics.score, with AUC from ranks (Mann-Whitney, ties averaged, as roc_auc_score) because the
    greedy search scores thousands of candidate blends."""
    if metric != "auc":
        return score(metric, y, pred)
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    ranks = rankdata(pred)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _best_index(metric: str, values: list[float]) -> int:
    best = 0
    for i, value in enumerate(values):
        if is_better(metric, value, values[best]):
            best = i
    return best


def blend_loss(settings: CombinerSettings, on: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The smooth loss optimised weights minimise: log-loss for probabilities, squared error for ranks
    and regression (absolute error when the metric is MAE). AUC and accuracy are not smooth, so a
    proper scoring rule stands in for them."""
    if settings.task == "regression":
        if settings.metric == "mae":
            return lambda y, p: float(np.mean(np.abs(y - p)))
        return lambda y, p: float(np.mean((y - p) ** 2))
    if on == "rank":
        return lambda y, p: float(np.mean((y - p) ** 2))
    return lambda y, p: float(np.mean(row_logloss(y, p)))


def optimized_weights(
    loss: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, preds: Sequence[np.ndarray]
) -> np.ndarray:
    """Weights on the simplex (non-negative, summing to one) minimising the loss of the weighted mean."""
    stacked = np.stack(preds)
    m = len(preds)
    start = np.full(m, 1.0 / m)
    # Relative to the equal-weight blend, so the solver's tolerances mean the same for any target's scale
    # (a squared error in dollars is ~1e9 and would stop SLSQP at its first step).
    scale = loss(y, np.tensordot(start, stacked, axes=1)) or 1.0
    result = minimize(
        lambda w: loss(y, np.tensordot(w, stacked, axes=1)) / scale,
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    weights = np.clip(result.x if np.all(np.isfinite(result.x)) else start, 0.0, None)
    weights[weights < 1e-6] = 0.0  # solver dust; keeps the blend's member list readable
    return weights / weights.sum()


def rank_grid(pred: np.ndarray) -> tuple[float, ...]:
    """Quantiles of a member's OOF predictions: the fixed map from a score to its rank in [0, 1]."""
    return tuple(float(q) for q in np.quantile(pred, np.linspace(0.0, 1.0, RANK_GRID)))


def rank_transform(pred: np.ndarray, grid: Sequence[float]) -> np.ndarray:
    """A score's position among the member's OOF scores (0 = lowest, 1 = highest); new rows use the
    same map, so the test set's own distribution never changes a row's rank."""
    levels = np.linspace(0.0, 1.0, len(grid))
    # Tied quantiles (many equal scores) share the mean of their levels, so the map stays a function.
    values, inverse = np.unique(np.asarray(grid), return_inverse=True)
    mean_levels = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return np.interp(pred, values, mean_levels)


def meta_features(task: str, preds: Sequence[np.ndarray], raw: np.ndarray | None) -> np.ndarray:
    """The stack's inputs: log-odds (binary), log-probabilities (multiclass) or values (regression),
    then the chosen raw features."""
    columns = []
    for p in preds:
        if task == "binary":
            q = np.clip(p, 1e-6, 1 - 1e-6)
            columns.append(np.log(q / (1 - q))[:, None])
        elif task == "multiclass":
            columns.append(np.log(np.clip(p, 1e-6, 1.0)))
        else:
            columns.append(np.asarray(p, dtype="float64")[:, None])
    if raw is not None and raw.shape[1]:
        columns.append(raw)
    return np.hstack(columns)
