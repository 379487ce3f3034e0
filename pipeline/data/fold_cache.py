"""The experiment's folds: computed once per data and cv settings, saved, and checked trainable, so every model
of an experiment reuses the same fold ids."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import ROW_ID, Config
from pipeline.core.artifacts import atomic_write_bytes, parquet_bytes
from pipeline.core.errors import DataError

from .folds import Folds, make_folds
from .tables import LabelEncoding


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
