"""Metrics for every task, their direction, and how LightGBM early-stops on them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-15
# The metrics each task may be scored with, and its default (the first of a config's choices).
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "logloss", "accuracy", "f1"),
    "multiclass": ("logloss", "accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "mse", "r2"),
}
DEFAULT_METRIC = {"binary": "auc", "multiclass": "logloss", "regression": "rmse"}
GREATER_IS_BETTER = {
    "auc": True,
    "logloss": False,
    "accuracy": True,
    "f1": True,
    "f1_macro": True,
    "rmse": False,
    "mae": False,
    "mse": False,
    "r2": True,
}
# LightGBM's built-in metric that early-stops exactly as ours would (same ordering of iterations).
LGB_BUILTIN = {
    ("binary", "auc"): "auc",
    ("binary", "logloss"): "binary_logloss",
    ("binary", "accuracy"): "binary_error",
    ("multiclass", "logloss"): "multi_logloss",
    ("multiclass", "accuracy"): "multi_error",
    ("regression", "rmse"): "rmse",
    ("regression", "mse"): "l2",
    ("regression", "r2"): "l2",
    ("regression", "mae"): "l1",
}


def score(metric: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    """Score predictions: probability of the positive class (binary), class probabilities
    (multiclass, shape n x K) or values (regression)."""
    from sklearn import metrics as skm  # here, not at import: the config reads METRICS without scikit-learn

    y_true = np.asarray(y_true)
    pred = np.asarray(pred, dtype="float64")
    if metric == "auc":
        return float(skm.roc_auc_score(y_true, pred))
    if metric == "logloss":
        return logloss(y_true, pred)
    if metric == "accuracy":
        return float(np.mean(y_true == to_labels(pred)))
    if metric == "f1":
        return float(skm.f1_score(y_true, to_labels(pred), zero_division=0))
    if metric == "f1_macro":
        labels = np.arange(pred.shape[1])
        return float(skm.f1_score(y_true, to_labels(pred), average="macro", labels=labels, zero_division=0))
    if metric == "rmse":
        return float(np.sqrt(np.mean((y_true - pred) ** 2)))
    if metric == "mse":
        return float(np.mean((y_true - pred) ** 2))
    if metric == "mae":
        return float(np.mean(np.abs(y_true - pred)))
    if metric == "r2":
        return float(skm.r2_score(y_true, pred))
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(GREATER_IS_BETTER)}")


def rank_auc(y: np.ndarray, pred: np.ndarray) -> float:
    """Area under the ROC curve of binary labels y (0/1) and scores pred; ties count one half."""
    order = np.argsort(pred, kind="stable")
    ranked = pred[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], len(ranked)]
    mid_rank = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # average 1-based rank of each tie block
    positive = y[order] == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes among the scored rows")
    u_stat = mid_rank[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_stat / (n_pos * n_neg))


def logloss(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Mean negative log-likelihood; binary from p(positive), multiclass from class probabilities."""
    if pred.ndim == 1:
        p = np.clip(pred, EPS, 1 - EPS)
        return float(-np.mean(np.where(y_true == 1, np.log(p), np.log1p(-p))))
    p = np.clip(pred[np.arange(len(y_true)), y_true.astype(int)], EPS, 1.0)
    return float(-np.mean(np.log(p)))


def softmax_from_raw(raw: np.ndarray) -> np.ndarray:
    """Class probabilities from raw scores via log-sum-exp, stable for large margins."""
    from scipy.special import log_softmax

    return np.exp(log_softmax(raw, axis=1))


def to_labels(pred: np.ndarray) -> np.ndarray:
    """Predicted class codes: threshold 0.5 (binary) or arg-max (multiclass)."""
    return (pred >= 0.5).astype(int) if pred.ndim == 1 else pred.argmax(axis=1)


def task_metrics(task: str) -> tuple[str, ...]:
    return METRICS[task]


def all_metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Every metric of the task, for the scores documents."""
    return {m: score(m, y, pred) for m in task_metrics(task)}


def is_better(metric: str, a: float, b: float) -> bool:
    return a > b if GREATER_IS_BETTER[metric] else a < b


def lgb_metric(task: str, metric: str) -> tuple[str, Callable | None]:
    """LightGBM `metric` parameter and, when no built-in matches, a feval computing ours."""
    builtin = LGB_BUILTIN.get((task, metric))
    if builtin is not None:
        return builtin, None

    def feval(pred: np.ndarray, data) -> tuple[str, float, bool]:
        # With a built-in objective LightGBM hands a feval what predict() returns: probabilities, one column
        # per class for multiclass; raw margins only come with a custom objective, which gbpipe never sets.
        y = data.get_label()
        return metric, score(metric, y if task == "regression" else y.astype(int), pred), GREATER_IS_BETTER[metric]

    return "None", feval
