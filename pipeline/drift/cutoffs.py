"""Drift over time in a [features] experiment, whose training table stacks one block of rows per cutoff: each
training cutoff's rows against the rows of every earlier cutoff (bins fitted on those earlier rows, as training
would have fitted them then), and the test cutoff's rows against all training rows (the run's reference bins).
The first cutoff has nothing before it and no row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config.sections import DriftSection
from pipeline.data.feature_bins import ReferenceBins, category_counts, numeric_counts, numeric_edges
from pipeline.data.schema import FeatureSchema

from .measures import psi

EARLIER = "earlier cutoffs"
TRAINING = "training rows"
COLUMNS = ["cutoff", "n_rows", "reference", "mean_psi", "max_psi", "top_feature", "n_moderate", "n_major"]


def cutoff_days(values: pd.Series) -> np.ndarray:
    """Cutoffs as ISO dates (text), whatever type the table holds them in."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    return values.astype(str).to_numpy(dtype=object)


def cutoff_drift(
    X_train: np.ndarray,
    train_days: np.ndarray,
    schema: FeatureSchema,
    settings: DriftSection,
    test: tuple[np.ndarray, np.ndarray, dict[str, int]] | None = None,
    reference: ReferenceBins | None = None,
) -> pd.DataFrame:
    """One row per training cutoff after the first, then one per test cutoff (`test`: its matrix, days and
    unseen categories, compared in `reference`); the columns of COLUMNS."""
    order = np.argsort(train_days, kind="stable")
    days, starts, sizes = np.unique(train_days[order], return_index=True, return_counts=True)
    values = np.full((max(len(days) - 1, 0), len(schema.columns)), np.nan)
    for j, name in enumerate(schema.columns):
        column = X_train[order, j]  # one column, its rows grouped by cutoff in time order
        for i in range(1, len(days)):
            earlier, rows = column[: starts[i]], column[starts[i] : starts[i] + sizes[i]]
            values[i - 1, j] = _psi_against(earlier, rows, schema, name, settings.n_bins)
    table = [_row(days[i], sizes[i], EARLIER, values[i - 1], schema, settings) for i in range(1, len(days))]
    if test is not None and reference is not None:
        X_test, test_days, unseen = test
        counts = reference.counts(X_test, unseen)
        test_psi = np.array([psi(b.counts, c) for b, c in zip(reference.features, counts)])
        day = ", ".join(sorted(set(test_days)))  # one test cutoff in a [features] experiment
        table.append(_row(day, len(X_test), TRAINING, test_psi, schema, settings))
    return pd.DataFrame(table, columns=COLUMNS)


def _psi_against(earlier: np.ndarray, rows: np.ndarray, schema: FeatureSchema, name: str, n_bins: int) -> float:
    if schema.kinds[name] == "categorical":
        size = len(schema.categories[name])
        return psi(category_counts(earlier, size), category_counts(rows, size))
    edges = numeric_edges(earlier, n_bins)
    return psi(numeric_counts(earlier, edges), numeric_counts(rows, edges))


def _row(day: str, n_rows: int, reference: str, values: np.ndarray, schema: FeatureSchema, settings: DriftSection):
    top = int(np.nanargmax(values)) if np.isfinite(values).any() else None
    major = values >= settings.psi_major
    return (
        str(day),
        int(n_rows),
        reference,
        float(np.nanmean(values)) if top is not None else float("nan"),
        float(values[top]) if top is not None else float("nan"),
        schema.columns[top] if top is not None else "",
        int(np.count_nonzero((values >= settings.psi_moderate) & ~major)),
        int(np.count_nonzero(major)),
    )
