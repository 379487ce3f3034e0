"""From config to model-ready arrays: tables, checked target, schema, matrices and saved folds.

Every stage (train, tune, importance, select, ensemble) starts from `prepare`, so all models of
an experiment see the same rows, encoding and folds.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.config import Config
from pipeline.core.progress import QUIET, Progress

# The checks, the fold cache and Prepared live in their own modules; the names are re-exported here, where every
# stage has always found them.
from .checks import (
    row_ids,
    warn_conversion,
    warn_numeric_text,
    warn_shared_ids,
    warn_uninformative,
)
from .fold_cache import check_fold_classes, experiment_folds, folds_cache_path, folds_key, time_values
from .prepared import Prepared
from .schema import (
    ConversionReport,
    drop_nested_columns,
    flat_column_names,
    infer_schema,
    select_features,
    to_matrix,
)
from .stream_prepare import guard_whole, prepare_streamed, stream_plan
from .tables import Tables, check_target, fingerprint, fit_labels, load_tables

__all__ = [
    "Prepared",
    "check_fold_classes",
    "experiment_folds",
    "experiment_tables",
    "folds_cache_path",
    "folds_key",
    "prepare",
    "row_ids",
    "text_column_names",
    "time_values",
    "warn_conversion",
    "warn_numeric_text",
    "warn_shared_ids",
    "warn_uninformative",
]


def experiment_tables(cfg: Config, progress: Progress = QUIET) -> Tables:
    """The experiment's train and test tables: with [features], the stacked point-in-time feature
    table (training cutoffs, and the test cutoff as the test table), built or read from its cache."""
    if cfg.features is not None:
        from .feature_cache import feature_tables

        return feature_tables(cfg, progress)
    return load_tables(cfg.data, cfg.cv.seed)


def prepare(cfg: Config, progress: Progress = QUIET, tables: Tables | None = None, stream: bool = False) -> Prepared:
    """Load, check and convert the experiment's data; compute or reuse its folds.

    With `stream` (the stages that can train and predict from a `StreamedMatrix`), a parquet table is read in
    batches as data.batch_rows says (stream_prepare.py); otherwise X is the whole float64 matrix."""
    if tables is None:
        plan = stream_plan(cfg) if stream else None
        if plan is not None:
            return prepare_streamed(cfg, plan, progress)
        guard_whole(cfg)
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
    warn_uninformative([X], schema, tables.train_name)
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


def text_column_names(tables: Tables) -> Tables:
    """The tables with every column name as text (tuples from groupby/agg flattened, as predict does)."""
    train = flat_column_names(tables.train, tables.train_name)
    test = flat_column_names(tables.test, tables.test_name) if tables.test is not None else None
    if train is tables.train and test is tables.test:
        return tables
    return replace(tables, train=train, test=test)
