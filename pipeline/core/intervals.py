"""Bootstrap intervals as the report and the run comparison show them (computed by pipeline.bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bootstrap import bootstrap_scores, percentile_interval
from .metrics import GREATER_IS_BETTER

N_BOOT = 1000
LEVEL = 0.95
BOOT_SEED = 0  # one fixed seed: the report and the comparison draw the same resamples


@dataclass(frozen=True)
class Interval:
    """A score on all rows with its percentile bootstrap interval."""

    score: float
    low: float
    high: float
    level: float
    n_boot: int
    n_rows: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "score": self.score,
            "ci_low": self.low,
            "ci_high": self.high,
            "level": self.level,
            "n_boot": self.n_boot,
            "n_rows": self.n_rows,
        }


@dataclass(frozen=True)
class PairedDifference:
    """score(a) - score(b) on the same rows and resamples; `p_not_better` is the share of resamples
    in which a is not better than b (by the metric's direction)."""

    difference: float
    low: float
    high: float
    p_not_better: float
    level: float
    n_boot: int
    n_rows: int


def score_interval(
    metric: str,
    y: np.ndarray,
    pred: np.ndarray,
    score: float,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> Interval:
    """Percentile bootstrap interval around `score` (the metric on all rows)."""
    boots = bootstrap_scores(metric, y, [pred], n_boot, seed)[:, 0]
    low, high = _interval(boots, level)
    return Interval(float(score), low, high, level, n_boot, len(y))


def paired_difference(
    metric: str,
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    point: float,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> PairedDifference:
    """score(a) - score(b) (`point`, on all rows) with a paired bootstrap: both on the same resamples."""
    boots = bootstrap_scores(metric, y, [pred_a, pred_b], n_boot, seed)
    diff = boots[:, 0] - boots[:, 1]
    low, high = _interval(diff, level)
    finite = diff[np.isfinite(diff)]
    not_better = finite <= 0 if GREATER_IS_BETTER[metric] else finite >= 0
    return PairedDifference(
        float(point), low, high, float(not_better.mean()) if len(finite) else float("nan"), level, n_boot, len(y)
    )


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    return percentile_interval(values, level)
