"""Bootstrap intervals of a metric, and of the difference between two models, on the same rows.

Rows are resampled with replacement; a resample is a vector of counts, and every metric is computed
from count-weighted sums (one matrix product per chunk of resamples, an O(n) pass for AUC), which
gives the same value as scoring the resampled rows with `metrics.score`, only much faster.
Paired: both models are scored on the same resamples, so their shared noise cancels in the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse

from .metrics import EPS, GREATER_IS_BETTER, score, to_labels

CHUNK_CELLS = 4_000_000  # resamples x rows per chunk: bounds memory (~32 MB of float64 counts)


def bootstrap_scores(
    metric: str, y: np.ndarray, preds: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """Scores of each prediction on `n_boot` shared resamples of the rows: shape (n_boot, len(preds))."""
    y = np.asarray(y)
    preds = [np.asarray(p, dtype="float64") for p in preds]
    if metric not in GREATER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(GREATER_IS_BETTER)}")
    n = len(y)
    chunk = max(1, min(n_boot, CHUNK_CELLS // max(n, 1)))
    scorers = [count_scorer(metric, y, pred) for pred in preds]
    out = np.empty((n_boot, len(preds)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        # Resample j has its own generator: the same rows whatever the chunking or n_boot.
        idx = np.stack([np.random.default_rng([seed, j]).integers(0, n, size=n) for j in range(start, start + b)])
        # counts[i, j]: how often row i is drawn in resample j (rows x resamples, so sums run down columns)
        counts = np.bincount((idx * b + np.arange(b)[:, None]).ravel(), minlength=n * b).reshape(n, b)
        counts = counts.astype("float64")
        for j, scorer in enumerate(scorers):
            out[start : start + b, j] = scorer(counts)
    return out


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """score(a) - score(b) on all rows, with its percentile interval over paired resamples."""
    diff = score(metric, y, pred_a) - score(metric, y, pred_b)
    boot = bootstrap_scores(metric, y, [pred_a, pred_b], n_boot, seed)
    low, high = percentile_interval(boot[:, 0] - boot[:, 1], confidence)
    return float(diff), low, high


def bootstrap_ci(
    metric: str, y: np.ndarray, pred: np.ndarray, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """The score on all rows with its percentile bootstrap interval."""
    boot = bootstrap_scores(metric, y, [pred], n_boot, seed)
    low, high = percentile_interval(boot[:, 0], confidence)
    return score(metric, y, pred), low, high


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval; resamples where the metric is undefined (NaN) are skipped."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def weighted_score(metric: str, y: np.ndarray, pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The metric of each resample, given as row counts (shape n x b), equal to scoring repeated rows."""
    return count_scorer(metric, np.asarray(y), np.asarray(pred, dtype="float64"))(counts)


def count_scorer(metric: str, y: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function of row counts (n x b) giving the metric of each resample; per-row terms precomputed."""
    if metric == "auc":
        return _auc_scorer(y, pred)
    if metric in ("rmse", "mse", "mae"):
        loss = np.abs(y - pred) if metric == "mae" else (y - pred) ** 2
        if metric == "rmse":
            return lambda counts: np.sqrt(loss @ counts / counts.sum(axis=0))
        return lambda counts: loss @ counts / counts.sum(axis=0)
    if metric == "r2":
        sq_err, y_sq = (y - pred) ** 2, y**2

        def r2(counts: np.ndarray) -> np.ndarray:
            total = counts.sum(axis=0)
            return 1 - (sq_err @ counts) / (y_sq @ counts - (y @ counts) ** 2 / total)

        return r2
    if metric == "logloss":
        row_loss = row_logloss(y, pred)
        return lambda counts: row_loss @ counts / counts.sum(axis=0)
    labels = to_labels(pred)
    if metric == "accuracy":
        hit = (labels == y).astype("float64")
        return lambda counts: hit @ counts / counts.sum(axis=0)
    if metric == "f1":
        return lambda counts: _weighted_f1(y == 1, labels == 1, counts)
    if metric == "f1_macro":
        return lambda counts: np.mean([_weighted_f1(y == k, labels == k, counts) for k in range(pred.shape[1])], axis=0)
    raise ValueError(f"unknown metric {metric!r}")


def row_logloss(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each row's log-loss (clipped as metrics.logloss), so that their mean is the metric."""
    if pred.ndim == 1:
        p = np.clip(pred, EPS, 1 - EPS)
        return -np.where(y == 1, np.log(p), np.log1p(-p))
    return -np.log(np.clip(pred[np.arange(len(y)), y.astype(int)], EPS, 1.0))


def _weighted_f1(truth: np.ndarray, predicted: np.ndarray, counts: np.ndarray) -> np.ndarray:
    tp = (truth & predicted).astype("float64") @ counts
    wrong = (truth ^ predicted).astype("float64") @ counts  # false positives + false negatives
    denom = 2 * tp + wrong
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)  # sklearn's zero_division=0


def _auc_scorer(y: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Mann-Whitney AUC with row weights; tied scores count one half, as in roc_auc_score.

    Rows are summed per distinct score by a sparse (distinct scores x rows) matrix, once per
    prediction, so each resample costs one sparse product and a cumulative sum.
    """
    _, group = np.unique(pred, return_inverse=True)
    n, n_groups = len(pred), int(group.max()) + 1
    rows = np.arange(n)
    is_pos = (y == 1).astype("float64")
    to_pos = sparse.csr_matrix((is_pos, (group, rows)), shape=(n_groups, n))
    to_neg = sparse.csr_matrix((1 - is_pos, (group, rows)), shape=(n_groups, n))

    def auc(counts: np.ndarray) -> np.ndarray:
        pos = to_pos @ counts
        neg = to_neg @ counts
        below = np.cumsum(neg, axis=0) - neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos * (below + 0.5 * neg)).sum(axis=0) / (pos.sum(axis=0) * neg.sum(axis=0))

    return auc
