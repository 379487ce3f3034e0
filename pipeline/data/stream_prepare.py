"""`prepare` for a parquet training table read in Arrow batches (data.batch_rows): the same checks, schema,
fingerprint, folds and warnings as the whole-table path, from passes over the file that hold one row group at a
time. What stays whole: the target, ids, group, time and kept columns (the rows' identity), and the vocabularies.

Pass 1 reads every column: the fingerprint, those identity columns, and the category counts. Pass 2 converts the
features block by block: conversion counts and the columns that carry no information. The model matrix itself is
a `StreamedMatrix`, converted again, block by block, whenever training or predicting reads it.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ROW_ID, Config
from pipeline.core.cores import available_cores, fold_worker_count
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.progress import Progress

from .checks import row_ids, warn_conversion, warn_numeric_text, warn_shared_ids, warn_uninformative
from .fold_cache import experiment_folds
from .memory import MemoryEstimate, check_fits
from .parts import is_parquet_table, is_parted
from .prepared import Prepared
from .schema import (
    MIN_ROWS_ID_LIKE,
    ConversionReport,
    categorical_candidates,
    drop_nested_columns,
    infer_schema,
    is_number_dtype,
    select_features,
    vocabulary_counts,
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
            'data.batch_rows = "whole" (or "auto"), or save the table as parquet (one file or a folder of parts)'
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
        if not ((Path(path).is_dir() or not is_parted(path)) and is_parquet_table(path)):  # no glob: a folder
            return f"{key} {path} is neither one parquet file nor a folder of parquet parts"
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
    n_columns = len(source.column_names)
    n_features = max(n_columns - 1, 1)
    n_rows = source.n_rows
    if batch_rows is None:  # the pandas table (about 8 bytes a cell) and the float64 matrix
        raw = n_rows * n_columns * 8 + n_rows * n_features * 8
    else:  # one decoded row group (8 bytes a cell at most), one block of the matrix
        raw = source.largest_row_group * n_columns * 8 + batch_rows * n_features * 8
    threads = min(cfg.model.num_threads or available_cores(), available_cores())
    workers = fold_worker_count(threads, cfg.model.fold_workers, cfg.cv.n_splits, batch_rows is not None)
    max_bin = int(cfg.model.params.get("max_bin", DEFAULT_MAX_BIN))
    check_fits(MemoryEstimate(n_rows, n_features, max_bin, workers, raw, batch_rows is not None), source.name)


def prepare_streamed(cfg: Config, plan: StreamPlan, progress: Progress) -> Prepared:
    """The streamed counterpart of `prepare.prepare` (which calls it): a Prepared whose X and X_test stream."""
    guard_memory(cfg, plan.train, plan.batch_rows)
    digest = hashlib.sha256()
    train = _scan(plan.train, cfg, digest, plan.batch_rows)
    columns = select_features(train.first, cfg, plan.train.name, _id_like(plan.train, train, cfg))
    schema = infer_schema(train.first, columns, cfg, train.counts)
    warn_numeric_text(train.first, schema, cfg, plan.train.name, train.counts)
    meta = train.identity_frame(cfg, plan.train.name)
    labels = fit_labels(meta[cfg.data.target], cfg)
    y = labels.encode(meta[cfg.data.target], plan.train.name)
    ids = row_ids(meta, cfg, plan.train.name)
    X = StreamedMatrix(plan.train, schema, plan.batch_rows)
    report = ConversionReport()
    warn_uninformative(X.blocks(report=report), schema, plan.train.name)
    warn_conversion(report, plan.train.name)
    X_test = y_test = test_ids = test_meta = None
    if plan.test is not None:
        test = _scan(plan.test, cfg, digest, plan.batch_rows, counted=False)
        test_meta = test.take_identity()
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
    for matrix in (X, X_test):
        if matrix is not None:
            matrix.release()  # the passes' row groups are gone: training starts from what prepare keeps
    progress.say(
        f"data: {len(y)} training rows, {len(columns)} features"
        + (f", {len(test_ids)} test rows" if test_ids is not None else "")
        + f", read in batches of {plan.batch_rows} rows; folds: {folds.splitter}"
    )
    return Prepared(X, y, ids, schema, labels, folds, data_fp, tables, X_test, y_test, test_ids)


@dataclass
class _Scan:
    """What pass 1 gathers from one table: its first batch (columns and dtypes), the identity columns' batches,
    and each feature candidate's category counts."""

    first: pd.DataFrame
    identity: list[pd.DataFrame]
    counts: dict[str, pd.Series]

    def identity_frame(self, cfg: Config, source: str) -> pd.DataFrame:
        """The identity columns, whole; a target or id the table lacks is refused naming all its columns."""
        if cfg.data.target not in self.first.columns:
            check_target(self.first, cfg, source)
        if cfg.data.id is not None and cfg.data.id not in self.first.columns:
            row_ids(self.first, cfg, source)
        meta = self.take_identity()
        check_target(meta, cfg, source)
        return meta

    def take_identity(self) -> pd.DataFrame:
        """The identity columns' batches as one frame. The batches are let go here, not when the scan is: the
        memory the passes freed is handed back before `prepare` returns, and theirs must be part of it."""
        meta = pd.concat(self.identity, ignore_index=True)
        self.identity.clear()
        return meta


def _scan(source: TableSource, cfg: Config, digest, batch_rows: int, counted: bool = True) -> _Scan:
    """Pass 1 over a table: fingerprint (as `tables.fingerprint` hashes the whole frame), identity columns and, when
    `counted`, the category counts of every column that may become a categorical feature."""
    data = cfg.data
    identity = {data.target, data.id, cfg.cv.group, cfg.cv.time, ROW_ID, *data.keep}
    columns = [c for c in source.column_names if c != data.split_column]
    batches = source.frames(columns, batch_rows=batch_rows)
    first = next(batches, None)
    if first is None:
        raise DataError(f"data file {source.path} has a header but 0 rows; give a file with data rows")
    first = drop_nested_columns(first, cfg, source.name, source.nested_columns)
    columns = list(first.columns)
    digest.update(repr([(str(c), str(t)) for c, t in first.dtypes.items()]).encode())
    candidates = categorical_candidates(first, _feature_candidates(columns, cfg), cfg) if counted else []
    scan, parts = _Scan(first.head(0).copy(), [], {}), {c: [] for c in candidates}
    for frame in itertools.chain([first], batches):
        frame = frame if len(frame.columns) == len(columns) else frame[columns]
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        scan.identity.append(frame[[c for c in columns if c in identity]])
        for col in candidates:
            parts[col].append(vocabulary_counts(frame[col]))
    for col, counts in parts.items():  # one sum at the end: adding batch by batch would copy the vocabulary each time
        total = pd.concat(counts).groupby(level=0, sort=False).sum().astype("int64")
        scan.counts[col] = total.sort_values(ascending=False, kind="stable")
    return scan


def _feature_candidates(columns: list[str], cfg: Config) -> list[str]:
    """The columns select_features may keep: data.features, else all but the target, id, group, time and the rest."""
    data = cfg.data
    if data.features is not None:
        return [c for c in data.features if c in columns]
    dropped = {data.target, data.id, cfg.cv.group, cfg.cv.time, *data.exclude, *data.keep}
    return [c for c in columns if c not in dropped]


def _id_like(source: TableSource, scan: _Scan, cfg: Config) -> tuple[list[str], list[str], int]:
    """`schema.id_like_columns` over every row: text columns from their counts, integer ones read alone."""
    n_rows = source.n_rows
    if n_rows < MIN_ROWS_ID_LIKE or cfg.data.features is not None:
        return [], [], n_rows
    text = [
        c
        for c, counts in scan.counts.items()
        if len(counts) == n_rows and int(counts.sum()) == n_rows and not is_number_dtype(scan.first[c].dtype)
    ]
    integer = []
    for col in _feature_candidates(list(scan.first.columns), cfg):
        dtype = scan.first[col].dtype
        if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            values = source.column(col)
            if values.notna().all() and values.nunique() == n_rows:
                integer.append(col)
    return text, integer, n_rows
