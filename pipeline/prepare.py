"""From config to model-ready arrays: tables, checked target, schema, matrices and saved folds.

Every stage (train, tune, importance, select, ensemble) starts from `prepare`, so all models of
an experiment see the same rows, encoding and folds.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import atomic_write_bytes, parquet_bytes
from .config import Config
from .data import LabelEncoding, Tables, check_target, fingerprint, fit_labels, load_tables
from .errors import DataError
from .folds import Folds, make_folds
from .progress import QUIET, Progress
from .schema import ConversionReport, FeatureSchema, infer_schema, select_features, to_matrix

ROW_ID = "row_id"


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
    """The experiment's train and test tables (the features stage plugs in here)."""
    return load_tables(cfg.data, cfg.cv.seed)


def prepare(cfg: Config, progress: Progress = QUIET, tables: Tables | None = None) -> Prepared:
    """Load, check and convert the experiment's data; compute or reuse its folds."""
    tables = tables if tables is not None else experiment_tables(cfg, progress)
    train, test = tables.train, tables.test
    check_target(train, cfg, tables.train_name)
    labels = fit_labels(train[cfg.data.target], cfg)
    y = labels.encode(train[cfg.data.target], tables.train_name)
    columns = select_features(train, cfg, tables.train_name)
    schema = infer_schema(train, columns, cfg)
    ids = row_ids(train, cfg, tables.train_name)
    report = ConversionReport()
    X = to_matrix(schema, train, tables.train_name, report)
    warn_conversion(report, tables.train_name)
    X_test = y_test = test_ids = None
    if test is not None:
        test_report = ConversionReport()
        X_test = to_matrix(schema, test, tables.test_name, test_report)
        warn_conversion(test_report, tables.test_name)
        test_ids = row_ids(test, cfg, tables.test_name)
        if cfg.data.target in test.columns and test[cfg.data.target].notna().all():
            y_test = labels.encode(test[cfg.data.target], tables.test_name)
    data_fp = fingerprint(train, test)
    folds = experiment_folds(cfg, train, y, data_fp)
    progress.say(f"data: {len(train)} training rows, {len(columns)} features"
                 + (f", {len(test)} test rows" if test is not None else "") + f"; folds: {folds.splitter}")
    return Prepared(X, y, ids, schema, labels, folds, data_fp, tables, X_test, y_test, test_ids)


def row_ids(frame: pd.DataFrame, cfg: Config, source: str) -> pd.Series:
    """The id column (checked unique), or the row position named `row_id`."""
    name = cfg.data.id
    if name is None:
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
        raise DataError(f"id column {name!r} in {source} has {n_dupes} duplicated values (e.g. {examples}); "
                        "ids must be unique")
    return ids.reset_index(drop=True).rename(name)


def warn_conversion(report: ConversionReport, source: str) -> None:
    if report.infinite_to_nan:
        warnings.warn(f"{source}: infinite values treated as missing: {report.infinite_to_nan}", stacklevel=2)
    if report.unseen_categories:
        warnings.warn(f"{source}: categories not seen in training, treated as missing: "
                      f"{report.unseen_categories}", stacklevel=2)


def folds_key(cfg: Config, data_fp: str) -> str:
    cv = {**cfg.cv.model_dump(mode="json"), "splitter": cfg.splitter, "target": cfg.data.target}
    text = json.dumps({"data": data_fp, "cv": cv}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folds_cache_path(cfg: Config, data_fp: str) -> Path:
    return Path(cfg.experiment.runs_dir) / cfg.experiment.name / "folds" / f"{folds_key(cfg, data_fp)}.parquet"


def experiment_folds(cfg: Config, train: pd.DataFrame, y: np.ndarray, data_fp: str) -> Folds:
    """Folds computed once per (data, cv settings) and saved, so every model reuses the same ids."""
    path = folds_cache_path(cfg, data_fp)
    if path.is_file():
        folds = Folds.from_frame(pd.read_parquet(path), cfg.splitter)
        if folds.assignments.shape[1] == len(y):
            return folds
    groups = _column(train, cfg.cv.group, "cv.group") if cfg.splitter in ("group", "stratified_group") else None
    times = _column(train, cfg.cv.time, "cv.time") if cfg.splitter == "time" else None
    stratify_on = y if cfg.data.task != "regression" else np.zeros(len(y))
    folds = make_folds(cfg.splitter, cfg.cv.n_splits, cfg.cv.n_repeats, cfg.cv.seed, stratify_on, groups, times)
    atomic_write_bytes(path, parquet_bytes(folds.to_frame(pd.Series(np.arange(len(y)), name=ROW_ID))))
    return folds


def _column(frame: pd.DataFrame, name: str | None, key: str) -> np.ndarray:
    if name not in frame.columns:
        raise DataError(f"{key} column {name!r} not found in the training table; "
                        f"columns are: {', '.join(map(str, frame.columns))}")
    return frame[name].to_numpy()
