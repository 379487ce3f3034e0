"""From config to model-ready arrays: tables, checked target, schema, matrices and saved folds.

Every stage (train, tune, importance, select, ensemble) starts from `prepare`, so all models of
an experiment see the same rows, encoding and folds.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ROW_ID, Config
from pipeline.core.artifacts import atomic_write_bytes, parquet_bytes
from pipeline.core.errors import DataError
from pipeline.core.progress import QUIET, Progress

from .folds import Folds, make_folds
from .schema import (
    ConversionReport,
    FeatureSchema,
    drop_nested_columns,
    flat_column_names,
    infer_schema,
    numeric_text_columns,
    select_features,
    to_matrix,
)
from .tables import LabelEncoding, Tables, check_target, fingerprint, fit_labels, load_tables


@dataclass(frozen=True)
class Prepared:
    """Model-ready data of one experiment."""

    X: np.ndarray
    y: np.ndarray
    ids: pd.Series
    schema: FeatureSchema
    labels: LabelEncoding
    folds: Folds
    data_fingerprint: str
    tables: Tables
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    test_ids: pd.Series | None = None

    @property
    def id_name(self) -> str:
        return str(self.ids.name)


def experiment_tables(cfg: Config, progress: Progress = QUIET) -> Tables:
    """The experiment's train and test tables: with [features], the stacked point-in-time feature
    table (training cutoffs, and the test cutoff as the test table), built or read from its cache."""
    if cfg.features is not None:
        from .feature_cache import feature_tables

        return feature_tables(cfg, progress)
    return load_tables(cfg.data, cfg.cv.seed)


def prepare(cfg: Config, progress: Progress = QUIET, tables: Tables | None = None) -> Prepared:
    """Load, check and convert the experiment's data; compute or reuse its folds."""
    tables = tables if tables is not None else experiment_tables(cfg, progress)
    tables = text_column_names(tables)
    train = drop_nested_columns(tables.train, cfg, tables.train_name)
    test = None if tables.test is None else drop_nested_columns(tables.test, cfg, tables.test_name)
    if train is not tables.train or test is not tables.test:
        tables = replace(tables, train=train, test=test)
    check_target(train, cfg, tables.train_name)
    labels = fit_labels(train[cfg.data.target], cfg)
    y = labels.encode(train[cfg.data.target], tables.train_name)
    ids = row_ids(train, cfg, tables.train_name)
    columns = select_features(train, cfg, tables.train_name)
    schema = infer_schema(train, columns, cfg)
    warn_numeric_text(train, schema, cfg, tables.train_name)
    report = ConversionReport()
    X = to_matrix(schema, train, tables.train_name, report)
    warn_conversion(report, tables.train_name)
    warn_uninformative(X, schema, tables.train_name)
    X_test = y_test = test_ids = None
    if test is not None:
        test_report = ConversionReport()
        X_test = to_matrix(schema, test, tables.test_name, test_report)
        warn_conversion(test_report, tables.test_name)
        test_ids = row_ids(test, cfg, tables.test_name)
        warn_shared_ids(ids, test_ids, cfg, tables)
        if cfg.data.target in test.columns and test[cfg.data.target].notna().all():
            y_test = labels.encode(test[cfg.data.target], tables.test_name)
    data_fp = fingerprint(train, test)
    folds = experiment_folds(cfg, train, y, data_fp, labels)
    progress.say(
        f"data: {len(train)} training rows, {len(columns)} features"
        + (f", {len(test)} test rows" if test is not None else "")
        + f"; folds: {folds.splitter}"
    )
    return Prepared(X, y, ids, schema, labels, folds, data_fp, tables, X_test, y_test, test_ids)


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


def text_column_names(tables: Tables) -> Tables:
    """The tables with every column name as text (tuples from groupby/agg flattened, as predict does)."""
    train = flat_column_names(tables.train, tables.train_name)
    test = flat_column_names(tables.test, tables.test_name) if tables.test is not None else None
    if train is tables.train and test is tables.test:
        return tables
    return replace(tables, train=train, test=test)


def warn_numeric_text(train: pd.DataFrame, schema: FeatureSchema, cfg: Config, source: str) -> None:
    """A numeric column with a few odd cells is read as text and would silently become a categorical feature."""
    for col, what in numeric_text_columns(train, schema, cfg.data.categorical or ()).items():
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


def warn_uninformative(X: np.ndarray, schema: FeatureSchema, source: str) -> None:
    """Warn about feature columns LightGBM can never split on (all missing, or one value and no missing).

    They stay in the schema, so predict inputs keep the same columns; the models ignore them.
    """
    empty, flat = [], []
    for j, col in enumerate(schema.columns):  # column by column: no temporary the size of X
        values = X[:, j]
        missing = np.isnan(values)
        if missing.all():
            empty.append(col)
        elif not missing.any() and values.min() == values.max():
            flat.append(col)
    if X.shape[0] and (empty or flat):
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


def folds_key(cfg: Config, data_fp: str) -> str:
    # backtest replays the folds, it does not shape them: changing it must reuse the same fold ids;
    # the gap enters resolved (a features experiment's default depends on its labels), time splits only
    cv = {
        **cfg.cv.model_dump(mode="json", exclude={"backtest", "gap"}),
        "splitter": cfg.splitter,
        "target": cfg.data.target,
    }
    if cfg.splitter == "time":
        cv["gap"] = cfg.time_gap
    text = json.dumps({"data": data_fp, "cv": cv}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folds_cache_path(cfg: Config, data_fp: str) -> Path:
    return Path(cfg.experiment.runs_dir) / cfg.experiment.name / "folds" / f"{folds_key(cfg, data_fp)}.parquet"


def experiment_folds(
    cfg: Config, train: pd.DataFrame, y: np.ndarray, data_fp: str, labels: LabelEncoding | None = None
) -> Folds:
    """Folds computed once per (data, cv settings) and saved, so every model reuses the same ids.

    With `labels`, each fold is checked to be trainable and scorable before it is saved.
    """
    path = folds_cache_path(cfg, data_fp)
    if path.is_file():
        folds = Folds.from_frame(pd.read_parquet(path), cfg.splitter, cfg.time_gap)
        if folds.assignments.shape[1] == len(y):
            check_fold_classes(cfg, folds, y, labels)
            return folds
    groups = _column(train, cfg.cv.group, "cv.group") if cfg.splitter in ("group", "stratified_group") else None
    times = time_values(train, cfg.cv.time) if cfg.splitter == "time" else None
    stratify_on = y if cfg.data.task != "regression" else np.zeros(len(y))
    folds = make_folds(
        cfg.splitter, cfg.cv.n_splits, cfg.cv.n_repeats, cfg.cv.seed, stratify_on, groups, times, cfg.time_gap
    )
    check_fold_classes(cfg, folds, y, labels)
    atomic_write_bytes(path, parquet_bytes(folds.to_frame(pd.Series(np.arange(len(y)), name=ROW_ID))))
    return folds


def check_fold_classes(cfg: Config, folds: Folds, y: np.ndarray, labels: LabelEncoding | None) -> None:
    """Binary: every fold's training part needs both classes, and with AUC its validation part too.
    Multiclass: a class missing from a fold's training part is allowed (its probability column stays in
    place, near zero for that fold's models) and is warned about."""
    if labels is None or cfg.data.task == "regression":
        return
    splits = {(r, k): folds.split(r, k) for r, k in folds.pairs()}
    name = {pair: f"fold {pair[1]}" + (f" of repeat {pair[0]}" if folds.n_repeats > 1 else "") for pair in splits}
    for pair, (train_idx, _) in splits.items():
        absent = [labels.classes[k] for k in range(labels.n_classes) if not (y[train_idx] == k).any()]
        if absent and cfg.data.task == "binary":
            raise DataError(
                f"{name[pair]} ({cfg.splitter} split): its {len(train_idx)} training rows have no "
                f"{cfg.data.target!r} = {absent[0]!r} rows, so its model cannot learn; use "
                "stratified or stratified_group folds, or fewer cv.n_splits"
            )
        if absent:
            warnings.warn(
                f"{name[pair]} ({cfg.splitter} split): {len(absent)} classes of {cfg.data.target!r} are "
                f"not in its {len(train_idx)} training rows: {absent}; that fold's models give them "
                "probabilities near zero",
                stacklevel=2,
            )
    for pair, (_, valid_idx) in splits.items():
        present = np.unique(y[valid_idx])
        if cfg.metric == "auc" and len(present) == 1:
            raise DataError(
                f"{name[pair]} ({cfg.splitter} split): its {len(valid_idx)} validation rows all have "
                f"{cfg.data.target!r} = {labels.classes[int(present[0])]!r}, so AUC is undefined "
                "there; use stratified or stratified_group folds, or fewer cv.n_splits"
            )


def _column(frame: pd.DataFrame, name: str | None, key: str) -> np.ndarray:
    if name not in frame.columns:
        raise DataError(
            f"{key} column {name!r} not found in the training table; columns are: {', '.join(map(str, frame.columns))}"
        )
    values = frame[name]
    n_missing = int(values.isna().sum())
    if n_missing:
        raise DataError(
            f"{key} column {name!r} of the training table has {n_missing} missing values of "
            f"{len(values)}; every row needs one: fill them or drop those rows"
        )
    return values.to_numpy()


_OFFSET = r"[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"  # a time, then Z or +hh:mm


def time_values(frame: pd.DataFrame, name: str | None) -> np.ndarray:
    """The cv.time column as sortable numbers: numbers as they are, dates as UTC nanoseconds.

    Text dates are parsed (sorting them as text would misorder mixed time zones); values with a UTC
    offset are converted to UTC; a mix of values with and without an offset is ambiguous and refused.
    """
    values = pd.Series(_column(frame, name, "cv.time"))
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values.dt.tz_convert("UTC") if values.dt.tz is not None else values
        return stamps.dt.tz_localize(None).astype("datetime64[ns]").astype("int64").to_numpy()
    text = values.astype(str)
    aware = text.str.contains(_OFFSET, regex=True)
    if aware.any() and not aware.all():
        raise DataError(
            f"cv.time column {name!r}: {int(aware.sum())} values carry a time zone and "
            f"{int((~aware).sum())} do not (e.g. {text[~aware].iloc[0]!r}); the order is ambiguous. "
            "Give every value an offset (e.g. +00:00) or none"
        )
    parsed = pd.to_datetime(text, utc=bool(aware.all()), format="ISO8601", errors="coerce")
    bad = int(parsed.isna().sum())
    if bad:
        raise DataError(
            f"cv.time column {name!r}: {bad} values of {len(text)} are not dates or numbers "
            f"(e.g. {text[parsed.isna()].iloc[:3].tolist()}); use ISO 8601 dates or numbers"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[ns]").astype("int64").to_numpy()
