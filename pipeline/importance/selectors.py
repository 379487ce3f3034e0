"""The feature selection procedure, run on one set of training rows only.

Filters (missing, near-constant, duplicated, correlated), embedded (gain: top k or share) and the
wrapper (permutation importance or null importance on an inner CV of the same rows, refit, repeat
while the inner OOF score does not get worse). `pipeline.selection` runs it inside each outer
training fold (the honest, nested score) and once on all rows (the naive score, and the final list).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
from scipy import stats

from pipeline.config.sections import SelectSection
from pipeline.core.metrics import is_better
from pipeline.data.folds import Folds, make_folds
from pipeline.engine.cv import run_cv
from pipeline.engine.spec import TrainSpec

from .permutation import permutation_drops


@dataclass(frozen=True)
class SelectContext:
    """What the procedure needs besides the rows: settings, the engine's spec, column facts."""

    settings: SelectSection
    spec: TrainSpec  # for all columns; subsets are cut from it
    columns: tuple[str, ...]
    numeric: tuple[bool, ...]
    splitter: str
    groups: np.ndarray | None = None  # cv.group values of every row (group splitters)
    times: np.ndarray | None = None  # cv.time values of every row (time splitter)
    gap: int = 0  # the time splitter's purged times between training and validation


@dataclass(frozen=True)
class InnerFit:
    """Inner-CV fit on a column subset: OOF score and mean gain; the per-fold permutation drops and the
    null wrapper's p-values are computed the first time the wrapper asks for them. Most fits are only
    compared on their score (a refused wrapper step, the last accepted one), so their permutations
    would be work thrown away; each fold's shuffles are seeded by the fold, so when they run does not
    change them."""

    columns: tuple[int, ...]
    score: float
    score_se: float  # standard error of the mean inner fold score (the automatic tolerance)
    gain: np.ndarray  # (n_columns,) mean over inner folds
    importance: Callable[[], tuple[np.ndarray, np.ndarray | None]] = field(repr=False, compare=False)

    @cached_property
    def _measured(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.importance()

    @property
    def drops(self) -> np.ndarray:
        """(n_columns, inner folds, repeats) drops of the inner OOF score when a column is permuted."""
        return self._measured[0]

    @property
    def null_p(self) -> np.ndarray | None:
        """Null wrapper: empirical p-value of each column's gain (None for the other wrappers)."""
        return self._measured[1]


@dataclass(frozen=True)
class Selection:
    """Outcome of the procedure on one set of rows."""

    columns: tuple[int, ...]
    inner_score: float
    dropped: dict[str, list[int]] = field(default_factory=dict)
    rounds: tuple[dict[str, Any], ...] = ()


def select_columns(
    X: np.ndarray, y: np.ndarray, rows: np.ndarray, ctx: SelectContext, folds: Folds | None = None
) -> Selection:
    """Run filters, embedded and wrapper selection using only `rows` (their features and target).

    The inner CV uses `folds` (over `rows`) when given, else folds drawn on `rows` alone.
    """
    s = ctx.settings
    Xr, yr = X[rows], y[rows]
    folds = folds if folds is not None else inner_folds(yr, rows, ctx)
    kept, dropped = unsupervised_filters(Xr, s)
    fit = inner_fit(Xr, yr, kept, folds, ctx)
    rounds = [_round("filters", fit, [])]
    if s.max_correlation is not None:
        kept, gone = correlation_filter(Xr, fit, ctx.numeric, s.max_correlation)
        fit = _refit_if(Xr, yr, kept, folds, ctx, fit, gone, dropped, "correlated", rounds)
    if s.top_k is not None or s.min_gain_share is not None:
        kept, gone = embedded_filter(fit, s.top_k, s.min_gain_share, s.min_features)
        fit = _refit_if(Xr, yr, kept, folds, ctx, fit, gone, dropped, "embedded", rounds)
    if s.wrapper != "none":
        fit = wrapper(Xr, yr, fit, folds, ctx, dropped, rounds)
    return Selection(fit.columns, fit.score, dropped, tuple(rounds))


def _refit_if(Xr, yr, kept, folds, ctx, fit, gone, dropped, reason, rounds) -> InnerFit:
    if not gone:
        return fit
    dropped[reason] = gone
    new = inner_fit(Xr, yr, tuple(kept), folds, ctx)
    rounds.append(_round(reason, new, gone))
    return new


def _round(step: str, fit: InnerFit, gone: list[int], accepted: bool = True) -> dict[str, Any]:
    return {
        "step": step,
        "n_features": len(fit.columns),
        "inner_score": fit.score,
        "dropped": list(gone),
        "accepted": accepted,
    }


def inner_folds(yr: np.ndarray, rows: np.ndarray, ctx: SelectContext) -> Folds:
    """Folds over the given rows only, with the experiment's splitter kind."""
    task = ctx.spec.task
    stratify = yr if task != "regression" else np.zeros(len(yr))
    groups = ctx.groups[rows] if ctx.groups is not None else None
    times = ctx.times[rows] if ctx.times is not None else None
    return make_folds(ctx.splitter, ctx.settings.inner_splits, 1, ctx.settings.seed, stratify, groups, times, ctx.gap)


def unsupervised_filters(Xr: np.ndarray, s: SelectSection) -> tuple[tuple[int, ...], dict[str, list[int]]]:
    """Columns with too many missing values, one dominant value, or a duplicate earlier column."""
    dropped: dict[str, list[int]] = {"missing": [], "constant": [], "duplicate": []}
    seen: dict[bytes, list[int]] = {}
    kept = []
    for j in range(Xr.shape[1]):
        col = Xr[:, j]
        missing = np.isnan(col)
        if missing.mean() > s.max_missing:
            dropped["missing"].append(j)
            continue
        _, counts = np.unique(np.where(missing, np.inf, col), return_counts=True)
        if counts.max() / len(col) >= s.max_dominant:
            dropped["constant"].append(j)
            continue
        if s.drop_duplicates:
            key = np.where(missing, np.inf, col).tobytes()
            if key in seen:
                dropped["duplicate"].append(j)
                continue
            seen[key] = [j]
        kept.append(j)
    return tuple(kept), {k: v for k, v in dropped.items() if v}


def correlation_filter(
    Xr: np.ndarray, fit: InnerFit, numeric: tuple[bool, ...], threshold: float
) -> tuple[tuple[int, ...], list[int]]:
    """Of numeric columns correlated above `threshold` (|Pearson|, missing as the column mean),
    keep the one with more gain."""
    cols = [c for c in fit.columns if numeric[c]]
    if len(cols) < 2:
        return fit.columns, []
    block = Xr[:, cols]
    block = np.where(np.isnan(block), np.nanmean(block, axis=0), block)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(np.nan_to_num(np.corrcoef(block, rowvar=False)))
    gain = dict(zip(fit.columns, fit.gain))
    order = sorted(range(len(cols)), key=lambda i: -gain[cols[i]])
    kept_local: list[int] = []
    gone = []
    for i in order:
        if any(corr[i, k] > threshold for k in kept_local):
            gone.append(cols[i])
        else:
            kept_local.append(i)
    return tuple(c for c in fit.columns if c not in gone), sorted(gone)


def embedded_filter(
    fit: InnerFit, top_k: int | None, min_share: float | None, min_features: int
) -> tuple[tuple[int, ...], list[int]]:
    """Keep the top k columns by gain and/or those with at least `min_share` of the total gain."""
    order = np.argsort(-fit.gain, kind="stable")
    keep = np.ones(len(fit.columns), dtype=bool)
    if top_k is not None:
        keep[order[top_k:]] = False
    if min_share is not None:
        keep &= fit.gain / max(fit.gain.sum(), 1e-300) >= min_share
    keep[order[:min_features]] = True
    return tuple(c for c, k in zip(fit.columns, keep) if k), [c for c, k in zip(fit.columns, keep) if not k]


def wrapper(
    Xr, yr, fit: InnerFit, folds: Folds, ctx: SelectContext, dropped: dict[str, list[int]], rounds: list[dict[str, Any]]
) -> InnerFit:
    """Drop the columns whose importance is not above zero (or their null) and refit, while the
    inner OOF score does not get worse than the best so far minus the tolerance (default: one
    standard error of the inner fold scores, the one-standard-error rule). When dropping them all
    is worse, the weaker half is tried, then its weaker half, until one step holds or none is left."""
    s = ctx.settings
    best = fit
    for _ in range(s.max_rounds):
        weak = weak_columns(fit, s)
        accepted = None
        while weak and accepted is None:
            keep = [c for c in fit.columns if c not in weak]
            if len(keep) < s.min_features:
                weak = weak[: len(fit.columns) - s.min_features]
                continue
            new = inner_fit(Xr, yr, tuple(keep), folds, ctx)
            tolerance = best.score_se if s.tolerance is None else s.tolerance
            worse = is_better(ctx.spec.metric, best.score, _shift(ctx.spec.metric, new.score, tolerance))
            rounds.append(_round("wrapper", new, weak, accepted=not worse))
            if worse:
                weak = weak[: len(weak) // 2]
            else:
                accepted = new
        if accepted is None:
            break
        dropped.setdefault("wrapper", []).extend(weak)
        fit = accepted
        if is_better(ctx.spec.metric, fit.score, best.score):
            best = fit
    return fit


def _shift(metric: str, value: float, tolerance: float) -> float:
    """The score credited `tolerance` in the good direction."""
    from pipeline.core.metrics import GREATER_IS_BETTER

    return value + tolerance if GREATER_IS_BETTER[metric] else value - tolerance


def weak_columns(fit: InnerFit, s: SelectSection) -> list[int]:
    """Columns the wrapper would drop this round, weakest (lowest mean importance) first.

    The interval uses the inner folds' mean drops: the repeats of one fold share its baseline
    score, so they are not independent (see pipeline.importance.with_aggregates).
    """
    fold_means = fit.drops.mean(axis=2)  # (columns, inner folds)
    mean = fold_means.mean(axis=1)
    if s.wrapper == "null" and fit.null_p is not None:
        weak = fit.null_p > s.alpha
    elif s.keep_rule == "mean":
        weak = mean <= 0
    else:
        k = fold_means.shape[1]
        half = stats.t.ppf(0.5 + s.confidence / 2, max(k - 1, 1)) * fold_means.std(axis=1, ddof=1) / math.sqrt(k)
        weak = mean - half <= 0
    order = [int(i) for i in np.argsort(mean, kind="stable")]
    out = [fit.columns[i] for i in order if weak[i]]
    if s.rfe_step is not None:
        extra = [fit.columns[i] for i in order if not weak[i]]
        out += extra[: math.ceil(s.rfe_step * len(fit.columns))]
    return out


def subset_spec(spec: TrainSpec, columns: tuple[int, ...]) -> TrainSpec:
    """The engine's spec for a subset of the columns (names and categorical indices re-mapped)."""
    cats = set(spec.categorical)
    return replace(
        spec,
        feature_names=tuple(spec.feature_names[c] for c in columns),
        categorical=tuple(i for i, c in enumerate(columns) if c in cats),
    )


def inner_fit(Xr: np.ndarray, yr: np.ndarray, columns: tuple[int, ...], folds: Folds, ctx: SelectContext) -> InnerFit:
    """Inner CV on the rows with these columns; permutation drops on each inner validation fold on demand."""
    columns = tuple(columns)
    Xs = np.ascontiguousarray(Xr[:, columns])
    spec = subset_spec(ctx.spec, columns)
    result = run_cv(Xs, yr, folds, spec)
    gain = result.importance.groupby("feature", sort=False)["gain"].mean().to_numpy(dtype="float64")
    fold_scores = np.asarray(result.fold_scores)
    score_se = float(fold_scores.std(ddof=1) / math.sqrt(len(fold_scores))) if len(fold_scores) > 1 else 0.0

    def importance() -> tuple[np.ndarray, np.ndarray | None]:
        s = ctx.settings
        null_p = null_p_values(Xs, yr, folds, spec, result, gain, s) if s.wrapper == "null" else None
        return _permutation_drops(Xs, yr, folds, spec, result, s), null_p

    return InnerFit(columns, result.oof_score, score_se, gain, importance)


def _permutation_drops(Xs: np.ndarray, yr: np.ndarray, folds: Folds, spec: TrainSpec, result, s: SelectSection):
    """(columns, inner folds, repeats): each inner fold model's drops on its own validation rows."""
    drops = []
    for (r, k), booster, fold in zip(folds.pairs(), result.models, result.folds):
        _, valid = folds.split(r, k)
        trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=fold.best_iteration))
        perm = permutation_drops(
            trimmed,
            Xs[valid],
            yr[valid],
            spec.task,
            spec.metric,
            [[j] for j in range(Xs.shape[1])],
            s.n_repeats,
            s.seed + k,
            int(spec.params.get("num_threads", 1)),
        )
        drops.append(perm.drops)
    return np.stack(drops, axis=1)


def null_p_values(Xs, yr, folds: Folds, spec: TrainSpec, result, gain: np.ndarray, s: SelectSection) -> np.ndarray:
    """Empirical p-value of each column's gain against refits on a shuffled target."""
    rounds = max(1, min(result.best_iterations))
    real = np.mean([b.feature_importance("gain", iteration=rounds) for b in result.models], axis=0)
    null_spec = replace(spec, num_boost_round=rounds, early_stopping_rounds=None)
    rng = np.random.RandomState(s.seed + 7)
    beats = np.zeros(len(real))
    for _ in range(s.null_repeats):
        null = run_cv(Xs, yr[rng.permutation(len(yr))], folds, null_spec)
        null_gain = null.importance.groupby("feature", sort=False)["gain"].mean().to_numpy(dtype="float64")
        beats += null_gain >= real
    return (1 + beats) / (s.null_repeats + 1)
