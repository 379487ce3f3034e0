"""The checks and warnings `prepare` makes on an experiment's tables, whole or read in batches: row ids, numbers
read as text, conversion counts, columns that carry no information, ids shared by train and test."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipeline.config import ROW_ID, Config
from pipeline.core.errors import DataError

from .schema import ConversionReport, FeatureSchema, numeric_text_columns
from .tables import Tables


def row_ids(frame: pd.DataFrame, cfg: Config, source: str) -> pd.Series:
    """The id column (checked unique), or the row position named `row_id`."""
    name = cfg.data.id
    if name is None:
        if ROW_ID in frame.columns:
            raise DataError(
                f"{source} has a column {ROW_ID!r}, the name gbpipe gives row positions when data.id is not set: "
                f"it would be trained on as a feature and replaced by positions in the predictions. Set "
                f"data.id = {ROW_ID!r} to key rows by it (its values must be unique), or rename the column"
            )
        return pd.Series(np.arange(len(frame)), name=ROW_ID)
    if name not in frame.columns:
        raise DataError(f"id column {name!r} not found in {source}; columns are: {', '.join(map(str, frame.columns))}")
    ids = frame[name]
    n_missing = int(ids.isna().sum())
    if n_missing:
        raise DataError(f"id column {name!r} in {source} has {n_missing} missing values; every row needs an id")
    n_dupes = int(ids.duplicated().sum())
    if n_dupes:
        examples = ids[ids.duplicated()].astype(str).unique()[:5].tolist()
        raise DataError(
            f"id column {name!r} in {source} has {n_dupes} duplicated values (e.g. {examples}); ids must be unique"
        )
    return ids.reset_index(drop=True).rename(name)


def warn_numeric_text(
    train: pd.DataFrame, schema: FeatureSchema, cfg: Config, source: str, text_counts: dict | None = None
) -> None:
    """A numeric column with a few odd cells is read as text and would silently become a categorical feature."""
    for col, what in numeric_text_columns(train, schema, cfg.data.categorical or (), text_counts).items():
        warnings.warn(
            f"{source}: column {col!r} is read as text and used as a categorical feature, though {what}. "
            f"Fix those values to use it as a number, or list it in data.categorical to keep it categorical",
            stacklevel=2,
        )


def warn_conversion(report: ConversionReport, source: str) -> None:
    if report.infinite_to_nan:
        warnings.warn(f"{source}: infinite values treated as missing: {report.infinite_to_nan}", stacklevel=2)
    if report.unseen_categories:
        warnings.warn(
            f"{source}: categories not seen in training, treated as missing: {report.unseen_categories}", stacklevel=2
        )
    if report.cast_to_numeric:
        warnings.warn(
            f"{source}: numeric columns that arrived as text were cast to numbers, values per column: "
            f"{report.cast_to_numeric}",
            stacklevel=2,
        )


UNINFORMATIVE_CHUNK_ROWS = 65_536


def warn_uninformative(blocks: Iterable[np.ndarray], schema: FeatureSchema, source: str) -> None:
    """Warn about feature columns LightGBM can never split on (all missing, or one value and no missing), from
    the matrix's row blocks (the whole matrix is one block).

    They stay in the schema, so predict inputs keep the same columns; the models ignore them.
    """
    n_cols = len(schema.columns)
    n_rows, missing = 0, np.zeros(n_cols, dtype="int64")
    low, high = np.full(n_cols, np.nan), np.full(n_cols, np.nan)
    for block in blocks:
        n_rows += len(block)
        for start in range(0, len(block), UNINFORMATIVE_CHUNK_ROWS):  # no temporary the size of a whole matrix
            rows = block[start : start + UNINFORMATIVE_CHUNK_ROWS]
            missing += np.count_nonzero(np.isnan(rows), axis=0)
            # fmin/fmax skip NaN (all-NaN stays NaN), along rows for every column at once
            low, high = np.fmin(low, np.fmin.reduce(rows, axis=0)), np.fmax(high, np.fmax.reduce(rows, axis=0))
    empty = [c for j, c in enumerate(schema.columns) if missing[j] == n_rows]
    flat = [c for j, c in enumerate(schema.columns) if missing[j] == 0 and low[j] == high[j]]
    if n_rows and (empty or flat):
        warnings.warn(
            f"{source}: {len(empty) + len(flat)} feature columns carry no information and are never "
            f"split on: all missing {empty}, constant {flat}; drop them or check how they were made",
            stacklevel=2,
        )


def warn_shared_ids(ids: pd.Series, test_ids: pd.Series, cfg: Config, tables: Tables) -> None:
    """Ids present in both train and test: leaked duplicate rows, unless test is a later snapshot."""
    if cfg.data.id is None:
        return
    shared = pd.Index(ids).intersection(pd.Index(test_ids))
    if len(shared):
        warnings.warn(
            f"id column {cfg.data.id!r}: {len(shared)} ids of {tables.test_name} are also in "
            f"{tables.train_name} (e.g. {shared[:5].astype(str).tolist()}); if these are the same rows, "
            "the holdout score is optimistic: remove them from one of the tables",
            stacklevel=2,
        )
