"""Per-feature drift of new rows against the training rows, on the training run's own bins
(pipeline/data/feature_bins.py): population stability index, KL divergence, missing and unseen shares, and a
Kolmogorov-Smirnov test on the raw values of numeric columns.

Smoothing: a bin empty on one side has share 0 and an infinite log ratio, so shares are smoothed before any
logarithm, additively: p = (share + SMOOTHING) / (1 + bins * SMOOTHING). Smoothed shares still sum to 1 and an
empty bin weighs like one row in ten thousand. Everything is computed from log shares, never from a ratio:

    PSI = sum (p_new - p_train) * (log p_new - log p_train)
    KL  = sum p_new * (log p_new - log p_train)          (KL(new || train), in nats)

Counts are scaled by their largest before they are summed, so no count overflows a sum. Both measures are
>= 0 exactly (Gibbs' inequality); rounding can only take the sum of nearly identical shares a few ulps below
zero, so they are clipped at 0, and identical shares give exactly 0.

KS p-values are corrected for the number of numeric features tested with Holm's step-down method (it controls
the family-wise error as Bonferroni does, and is never less powerful).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.config.sections import DriftSection
from pipeline.data.feature_bins import FeatureBins, ReferenceBins

SMOOTHING = 1e-4
KS_CORRECTION = "holm"
FLAGS = ("none", "moderate", "major")


def log_shares(counts: np.ndarray) -> np.ndarray:
    """Smoothed log shares of counts in bins (NaN when there is nothing counted)."""
    counts = np.asarray(counts, dtype="float64")
    top = counts.max(initial=0.0)
    if not (top > 0 and np.isfinite(top)):
        return np.full(len(counts), np.nan)
    scaled = counts / top
    return np.log(scaled / scaled.sum() + SMOOTHING) - np.log1p(len(counts) * SMOOTHING)


def divergences(train_counts: np.ndarray, new_counts: np.ndarray) -> tuple[float, float]:
    """(PSI, KL(new || train)) of two count vectors over the same bins."""
    log_train, log_new = log_shares(train_counts), log_shares(new_counts)
    if np.isnan(log_train).any() or np.isnan(log_new).any():
        return float("nan"), float("nan")
    gap = log_new - log_train
    new = np.exp(log_new)
    psi = float(np.sum((new - np.exp(log_train)) * gap))
    kl = float(np.sum(new * gap))
    return max(psi, 0.0), max(kl, 0.0)


def psi(train_counts: np.ndarray, new_counts: np.ndarray) -> float:
    return divergences(train_counts, new_counts)[0]


def kl_divergence(train_counts: np.ndarray, new_counts: np.ndarray) -> float:
    return divergences(train_counts, new_counts)[1]


def flag(value: float, settings: DriftSection) -> str:
    """'major', 'moderate' or 'none' by the PSI bands of the [drift] config."""
    if value >= settings.psi_major:
        return "major"
    return "moderate" if value >= settings.psi_moderate else "none"


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (NaN ones are not tests and stay NaN)."""
    p = np.asarray(p_values, dtype="float64")
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.empty(0)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def ks_tests(train: np.ndarray, new: np.ndarray, numeric: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and Holm-adjusted p-value of every column in `numeric` (raw values, missing left out);
    NaN for the other columns and for a column with no value on one side."""
    from scipy.stats import ks_2samp

    stat, p = np.full(train.shape[1], np.nan), np.full(train.shape[1], np.nan)
    for j in numeric:
        a, b = train[:, j], new[:, j]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a) and len(b):
            result = ks_2samp(a, b)
            stat[j], p[j] = float(result.statistic), float(result.pvalue)
    return stat, holm(p)


def missing_share(bins: FeatureBins, counts: np.ndarray) -> float:
    total = counts.sum()
    return float(counts[missing_bin(bins)] / total) if total else float("nan")


def unseen_share(bins: FeatureBins, counts: np.ndarray) -> float:
    """The share of rows with a category the training rows never had (NaN for a numeric feature)."""
    total = counts.sum()
    return float(counts[-1] / total) if bins.kind == "categorical" and total else float("nan")


def missing_bin(bins: FeatureBins) -> int:
    return -2 if bins.kind == "categorical" else -1


def feature_measures(reference: ReferenceBins, new_counts: list[np.ndarray]) -> pd.DataFrame:
    """feature, kind, psi, kl, missing_train, missing_new, unseen_new: one row per feature, schema order."""
    rows = []
    for bins, counts in zip(reference.features, new_counts):
        value, kl = divergences(bins.counts, counts)
        rows.append(
            (
                bins.name,
                bins.kind,
                value,
                kl,
                missing_share(bins, bins.counts),
                missing_share(bins, counts),
                unseen_share(bins, counts),
            )
        )
    columns = ["feature", "kind", "psi", "kl", "missing_train", "missing_new", "unseen_new"]
    return pd.DataFrame(rows, columns=columns)


class BinCounter:
    """Counts of rows in a reference's bins, accumulated chunk by chunk (predict's streamed chunks): the
    chunk's matrix is only read, one column at a time."""

    def __init__(self, reference: ReferenceBins):
        self.reference = reference
        self.counts = [np.zeros(len(b.counts), dtype="int64") for b in reference.features]
        self.rows = 0
        self.work = np.empty(0)  # one column's copy, reused by every column of every chunk

    def add(self, X: np.ndarray, unseen: Mapping[str, int] | None = None) -> None:
        if len(self.work) < len(X):
            self.work = np.empty(len(X))
        for total, chunk in zip(self.counts, self.reference.counts(X, unseen, self.work)):
            total += chunk
        self.rows += len(X)

    def merge(self, counts: list[np.ndarray], rows: int) -> None:
        """Add counts made elsewhere in the same bins (a cluster task's part of the rows)."""
        for total, part in zip(self.counts, counts):
            total += part
        self.rows += rows

    def measures(self) -> pd.DataFrame:
        return feature_measures(self.reference, self.counts)
