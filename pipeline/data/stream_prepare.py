"""`prepare` for a parquet training table read in Arrow batches (data.batch_rows): the same checks, schema,
fingerprint, folds and warnings as the whole-table path, from passes over the file that hold one row group at a
time. What stays whole: the target, ids, group, time and kept columns (the rows' identity), and the vocabularies.

Pass 1 reads every column: the fingerprint, those identity columns, and the category counts. Pass 2 converts the
features block by block: conversion counts and the columns that carry no information. The model matrix itself is
a `StreamedMatrix`, converted again, block by block, whenever training or predicting reads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.progress import Progress

from .checks import row_ids, warn_conversion, warn_numeric_text, warn_shared_ids, warn_uninformative
from .fold_cache import experiment_folds
from .memory import check_fits, estimate, release_memory
from .parts import is_parted
from .prepared import Prepared
from .schema import (
    ConversionReport,
    categorical_candidates,
    category_counts,
    drop_nested_columns,
    infer_schema,
    select_features,
)
from .stream import StreamedMatrix, TableSource
from .tables import Tables, check_target, fit_labels, split_by_column

AUTO_STREAM_ROWS = 2_000_000  # "auto" reads a table in batches beyond this many rows
AUTO_BATCH_ROWS = 100_000
DEFAULT_MAX_BIN = 255  # LightGBM's


@dataclass(frozen=True)
class StreamPlan:
    """A training table to read in batches: its source, the test table's, and the batch size."""

    train: TableSource
    test: TableSource | None
    batch_rows: int


def stream_plan(cfg: Config) -> StreamPlan | None:
    """How data.batch_rows reads this experiment's training table: a plan, or None to read it whole."""
    data, wanted = cfg.data, cfg.data.batch_rows
    if wanted == "whole" or (cfg.features is None and not Path(str(data.train)).exists()):
        return None  # a missing file is reported by the whole read, as it always was
    reason = _not_streamable(cfg)
    if reason is not None:
        if wanted == "auto":
            return None
        raise ConfigError(
            f"data.batch_rows = {wanted} reads a parquet training table in batches, but {reason}; set "
            'data.batch_rows = "whole" (or "auto"), or save the table as one parquet file'
        )
    whole = TableSource(Path(data.train), str(data.train))
    if wanted == "auto" and whole.file_rows <= AUTO_STREAM_ROWS:
        return None
    batch_rows = AUTO_BATCH_ROWS if wanted == "auto" else int(wanted)
    if data.split_column is not None:
        return _split_plan(whole, cfg, batch_rows)
    test = TableSource(Path(data.test), str(data.test)) if data.test is not None else None
    return StreamPlan(whole, test, batch_rows)


def _not_streamable(cfg: Config) -> str | None:
    data = cfg.data
    if cfg.features is not None:
        return "this experiment builds its table from events ([features])"
    if data.test_size is not None:
        return "data.test_size splits the table at random, which needs it whole in memory"
    for key, path in (("data.train", data.train), ("data.test", data.test)):
        if path is None:
            continue
        if is_parted(path) or not str(path).lower().endswith((".parquet", ".pq")):
            return f"{key} {path} is not one parquet file"
    return None


def _split_plan(whole: TableSource, cfg: Config, batch_rows: int) -> StreamPlan:
    """data.split_column: the train and test rows, by file position, with the whole path's checks and names."""
    split = cfg.data.split_column
    if split not in whole.column_names:
        frame = pd.DataFrame(columns=whole.column_names)  # the whole path's error, naming the columns
    else:
        frame = pd.DataFrame({split: whole.column(split), "position": np.arange(whole.file_rows)})
    tables = split_by_column(frame, cfg.data)
    train = TableSource(whole.path, tables.train_name, tables.train["position"].to_numpy())
    test = None
    if tables.test is not None:
        test = TableSource(whole.path, tables.test_name, tables.test["position"].to_numpy())
    return StreamPlan(train, test, batch_rows)


def guard_whole(cfg: Config) -> None:
    """The memory guard before a parquet training table is read whole (other sources are not sized beforehand)."""
    path = Path(str(cfg.data.train))
    if cfg.features is None and path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
        guard_memory(cfg, TableSource(path, str(path)), None)


def guard_memory(cfg: Config, source: TableSource, batch_rows: int | None) -> None:
    """Stop (exit 3) before reading when training on this table cannot fit; `batch_rows` None: read whole."""
    n_features = max(len(source.column_names) - 1, 1)
    max_bin = int(cfg.model.params.get("max_bin", DEFAULT_MAX_BIN))
    n_rows = source.n_rows
    if batch_rows is None:  # the pandas table (about 8 bytes a cell) and the float64 matrix
        raw = n_rows * len(source.column_names) * 8 + n_rows * n_features * 8
    else:  # one decoded row group, one block of the matrix
        raw = source.largest_row_group * len(source.column_names) * 8 + batch_rows * n_features * 8
    check_fits(
        estimate(n_rows, n_features, max_bin, raw), n_rows, n_features, max_bin, source.name, batch_rows is not None
    )


@dataclass
class _Scan:
    """What pass 1 gathers from one table."""

    identity: list[pd.DataFrame]
    counts: dict[str, pd.Series]
    first: pd.DataFrame | None = None


def prepare_streamed(cfg: Config, plan: StreamPlan, progress: Progress) -> Prepared:
    """The streamed counterpart of `prepare.prepare` (which calls it): a Prepared whose X and X_test stream."""
    guard_memory(cfg, plan.train, plan.batch_rows)
    digest = hashlib.sha256()
    train = _scan(plan.train, cfg, digest, plan.batch_rows)
    columns = select_features(train.first, cfg, plan.train.name, _id_like(plan.train, train, cfg))
    schema = infer_schema(train.first, columns, cfg, train.counts)
    warn_numeric_text(train.first, schema, cfg, plan.train.name, train.counts)
    meta = pd.concat(train.identity, ignore_index=True)
    check_target(meta, cfg, plan.train.name)
    labels = fit_labels(meta[cfg.data.target], cfg)
    y = labels.encode(meta[cfg.data.target], plan.train.name)
    ids = row_ids(meta, cfg, plan.train.name)
    X = StreamedMatrix(plan.train, schema, plan.batch_rows)
    report = ConversionReport()
    warn_uninformative(X.blocks(report=report), schema, plan.train.name)
    warn_conversion(report, plan.train.name)
    X_test = y_test = test_ids = test_meta = None
    if plan.test is not None:
        test = _scan(plan.test, cfg, digest, plan.batch_rows, counted=())
        test_meta = pd.concat(test.identity, ignore_index=True)
        X_test = StreamedMatrix(plan.test, schema, plan.batch_rows)
        test_report = ConversionReport()
        for _ in X_test.blocks(report=test_report):
            pass
        warn_conversion(test_report, plan.test.name)
        test_ids = row_ids(test_meta, cfg, plan.test.name)
        if cfg.data.target in test_meta.columns and test_meta[cfg.data.target].notna().all():
            y_test = labels.encode(test_meta[cfg.data.target], plan.test.name)
    else:
        digest.update(b"<none>")
    tables = Tables(meta, test_meta, plan.train.name, plan.test.name if plan.test else None)
    if test_ids is not None:
        warn_shared_ids(ids, test_ids, cfg, tables)
    data_fp = digest.hexdigest()
    folds = experiment_folds(cfg, meta, y, data_fp, labels)
    release_memory()  # the passes' batches are gone: training starts from what prepare keeps
    progress.say(
        f"data: {len(y)} training rows, {len(columns)} features"
        + (f", {len(test_ids)} test rows" if test_ids is not None else "")
        + f", read in batches of {plan.batch_rows} rows; folds: {folds.splitter}"
    )
    return Prepared(X, y, ids, schema, labels, folds, data_fp, tables, X_test, y_test, test_ids)


def _scan(source: TableSource, cfg: Config, digest, batch_rows: int, counted: tuple[str, ...] | None = None) -> _Scan:
    """Pass 1 over a table: fingerprint (as `tables.fingerprint` hashes the whole frame), identity columns and the
    category counts of `counted` (None: every column infer_schema may make categorical)."""
    data = cfg.data
    wanted = {data.target, data.id, cfg.cv.group, cfg.cv.time, *data.keep}
    columns = [c for c in source.column_names if c != data.split_column]
    scan = _Scan([], {})
    for frame in source.frames(columns, batch_rows=batch_rows):
        if scan.first is None:
            frame = drop_nested_columns(frame, cfg, source.name)  # warned about once, left out after
            columns = list(frame.columns)
            scan.first = frame.head(0).copy()
            digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
            counted = categorical_candidates(frame, cfg) if counted is None else counted
        elif len(frame.columns) != len(columns):
            frame = frame[columns]
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        scan.identity.append(frame[[c for c in columns if c in wanted]])
        for col in counted:
            part = category_counts(frame[col])
            scan.counts[col] = part if col not in scan.counts else scan.counts[col].add(part, fill_value=0)
    if scan.first is None:
        raise ConfigError(f"{source.name} has no rows to train on")
    scan.counts = {c: v.astype("int64").sort_values(ascending=False, kind="stable") for c, v in scan.counts.items()}
    return scan


def _id_like(source: TableSource, scan: _Scan, cfg: Config) -> tuple[list[str], list[str], int]:
    """`schema.id_like_columns` over every row: text columns from their counts, integer ones read alone."""
    from .schema import MIN_ROWS_ID_LIKE

    n_rows = source.n_rows
    if n_rows < MIN_ROWS_ID_LIKE:
        return [], [], n_rows
    text = [
        c
        for c, counts in scan.counts.items()
        if len(counts) == n_rows and int(counts.sum()) == n_rows and not _is_number(scan.first[c].dtype)
    ]
    integer = []
    for col in scan.first.columns:
        dtype = scan.first[col].dtype
        if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            values = source.column(col)
            if values.notna().all() and values.nunique() == n_rows:
                integer.append(col)
    return text, integer, n_rows


def _is_number(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
