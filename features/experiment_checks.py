"""Checks between the [features] section and the rest of an experiment's config, and the time folds'
smallest honest gap for its labels; the config calls them when it validates."""

from __future__ import annotations

import bisect
import datetime as dt
from typing import Any

from .spec import FeaturesSection, check_unique


def label_gap(features: FeaturesSection) -> int:
    """The most later training cutoffs that fall inside one cutoff's label window: the time folds' smallest
    honest gap (2-month labels at monthly cutoffs: 1; 28-day labels at weekly cutoffs: 3)."""
    # With test = "end" the last cutoff is known only from the data; the gap repeats with the calendar, so
    # three years of cutoffs give the same answer.
    days = features.cutoffs.training_days(features.label.window, until=features.cutoffs.first + dt.timedelta(days=1096))
    ends = [features.label.window.after(day) for day in days]
    return max((bisect.bisect_left(days, end) - i - 1 for i, end in enumerate(ends)), default=0)


def check_experiment(features: FeaturesSection, data: Any, cv: Any) -> None:
    """Cross-checks between [features] and the rest of the config (raise ValueError, pydantic reports it)."""
    given = [k for k in ("train", "test", "split_column", "test_size") if getattr(data, k) is not None]
    if given:
        raise ValueError(f"with [features] the tables come from features.events; remove data.{given[0]}")
    if features.label.above is None and data.task != "regression":
        raise ValueError(
            f"features.label.above is not set, so the label is a number: set data.task = 'regression' "
            f"(got {data.task!r}) or give features.label.above for a binary label"
        )
    if features.label.above is not None and data.task != "binary":
        raise ValueError(f"features.label.above makes a 0/1 label: set data.task = 'binary' (got {data.task!r})")
    check_unique(features.output_names(data.target), "features")
    kept_out = {*data.exclude, *data.keep, data.id, cv.group, cv.time} - {None}
    for column in (features.entity, features.cutoff_column, features.key_column):
        chosen = data.features is not None and column in data.features
        if chosen or (data.features is None and column not in kept_out):
            raise ValueError(
                f"column {column!r} (entity, cutoff or row key of the feature table) would be a model "
                f"feature; add it to data.exclude or data.keep (or use it as data.id, cv.group or cv.time)"
            )
