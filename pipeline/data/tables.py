"""The experiment's tables: read (one file or parts), the test set split off, the target checked and encoded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, DataSection
from pipeline.core.errors import DataError

from .parts import read_any  # a table may be one file or a folder or glob of parts


@dataclass(frozen=True)
class Tables:
    """The training table and, when the experiment has one, the test table."""

    train: pd.DataFrame
    test: pd.DataFrame | None
    train_name: str
    test_name: str | None
    summary: dict[str, Any] | None = None  # what built the tables (the features stage's summary)
    # The training rows' labels over the holdout's label window when the data cuts it short (features stage).
    holdout_window_labels: pd.Series | None = None


def load_tables(data: DataSection, seed: int) -> Tables:
    """Load the training table and split off the test table as the config says."""
    train = read_any(data.train, data.csv_sep)
    if data.test is not None:
        return Tables(train, read_any(data.test, data.csv_sep), str(data.train), str(data.test))
    if data.split_column is not None:
        return split_by_column(train, data)
    if data.test_size is not None:
        from sklearn.model_selection import train_test_split

        stratify = train[data.target] if data.task != "regression" and data.target in train else None
        tr, te = train_test_split(train, test_size=data.test_size, random_state=seed, stratify=stratify)
        name = f"{data.train} (test_size={data.test_size})"
        return Tables(tr.reset_index(drop=True), te.reset_index(drop=True), name, name)
    return Tables(train, None, str(data.train), None)


def split_by_column(frame: pd.DataFrame, data: DataSection) -> Tables:
    col = data.split_column
    if col not in frame.columns:
        raise DataError(f"split column {col!r} not found in {data.train}; columns are: {', '.join(frame.columns)}")
    values = frame[col].astype(str)
    train_mask, test_mask = values == data.train_value, values == data.test_value
    if not train_mask.any():
        raise DataError(
            f"no row of {data.train} has {col} == {data.train_value!r}; values are {sorted(values.unique())[:10]}"
        )
    drop = [col]
    test = frame.loc[test_mask].drop(columns=drop).reset_index(drop=True) if test_mask.any() else None
    name = f"{data.train} [{col}=={data.test_value}]" if test is not None else None
    return Tables(
        frame.loc[train_mask].drop(columns=drop).reset_index(drop=True),
        test,
        f"{data.train} [{col}=={data.train_value}]",
        name,
    )


@dataclass(frozen=True)
class LabelEncoding:
    """Maps the target's original labels to 0..K-1 (classification) or passes numbers through."""

    task: str
    classes: tuple[Any, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def encode(self, values: pd.Series, source: str = "data") -> np.ndarray:
        if self.task == "regression":
            return values.to_numpy(dtype="float64")
        lookup = {c: i for i, c in enumerate(self.classes)}
        # Each distinct value looked up once (factorize matches values as the dict does): a table has few labels.
        inverse, uniques = pd.factorize(values, use_na_sentinel=True)
        small = np.int8 if len(self.classes) <= np.iinfo(np.int8).max else np.int32  # held whole: one byte a row
        per_unique = np.array([lookup.get(_plain(v), -1) for v in uniques] + [-1], dtype=small)
        codes = per_unique[inverse]  # the sentinel -1 (a missing label) picks the appended -1
        unknown = int((codes < 0).sum())
        if unknown:
            extra = sorted({str(v) for v, c in zip(values, codes) if c < 0})[:5]
            raise DataError(f"target in {source} has {unknown} rows with labels not seen in training: {extra}")
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[codes]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> LabelEncoding:
        return cls(obj["task"], tuple(obj["classes"]))


def _plain(value: Any) -> Any:
    """numpy scalars to Python scalars, so labels compare and serialise the same way."""
    return value.item() if hasattr(value, "item") else value


def check_target(frame: pd.DataFrame, cfg: Config, source: str) -> None:
    """Raise DataError naming the file, column and count when the target breaks a rule."""
    target, task = cfg.data.target, cfg.data.task
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} not found in {source}; columns are: {', '.join(map(str, frame.columns))}"
        )
    y = frame[target]
    n_missing = int(y.isna().sum())
    if n_missing:
        raise DataError(
            f"target column {target!r} in {source} has {n_missing} missing values of {len(y)}; "
            "drop or fill those rows before training"
        )
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        bad = int(numeric.isna().sum())
        if bad:
            raise DataError(
                f"target column {target!r} in {source} has {bad} non-numeric values; regression needs numbers"
            )
        n_inf = int(np.isinf(numeric.to_numpy(dtype="float64")).sum())
        if n_inf:
            raise DataError(f"target column {target!r} in {source} has {n_inf} infinite values; drop those rows")
        return
    _check_classes(y, cfg, source)


def _check_classes(y: pd.Series, cfg: Config, source: str) -> None:
    target, task = cfg.data.target, cfg.data.task
    if pd.api.types.is_float_dtype(y) and np.isinf(y.to_numpy(dtype="float64")).any():
        raise DataError(f"target column {target!r} in {source} has {int(np.isinf(y).sum())} infinite values")
    counts = y.value_counts()
    if len(counts) < 2:
        raise DataError(
            f"target column {target!r} in {source} has a single class {_plain(counts.index[0])!r} "
            f"({int(counts.iloc[0])} rows); a classifier needs at least two"
        )
    if task == "binary" and len(counts) > 2:
        raise DataError(
            f"target column {target!r} in {source} has {len(counts)} classes but data.task is 'binary'; "
            "set data.task = 'multiclass'"
        )
    rare = counts[counts < cfg.cv.n_splits]
    if len(rare) and cfg.splitter in ("stratified", "stratified_group"):
        shown = ", ".join(f"{_plain(k)!r}: {v} rows" for k, v in rare.items())
        raise DataError(
            f"target column {target!r} in {source} has {len(rare)} classes with fewer rows than "
            f"cv.n_splits={cfg.cv.n_splits} ({shown}); merge or drop rare classes, or lower cv.n_splits"
        )


def fit_labels(y: pd.Series, cfg: Config) -> LabelEncoding:
    """Encode labels once for the whole dataset; for binary the positive class is the larger label."""
    if cfg.data.task == "regression":
        return LabelEncoding("regression")
    classes = sorted({_plain(v) for v in y.unique()}, key=lambda v: (str(type(v)), v))
    positive = cfg.data.positive_label
    if cfg.data.task == "binary" and positive is not None:
        match = [c for c in classes if c == positive or str(c) == str(positive)]
        if not match:
            raise DataError(
                f"data.positive_label {positive!r} is not a label of {cfg.data.target!r}; labels are {classes}"
            )
        classes = [c for c in classes if c != match[0]] + [match[0]]
    return LabelEncoding(cfg.data.task, tuple(classes))


def fingerprint(*frames: pd.DataFrame | None) -> str:
    """sha256 over the content, column names and dtypes of the frames (None skipped)."""
    digest = hashlib.sha256()
    for frame in frames:
        if frame is None:
            digest.update(b"<none>")
            continue
        digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
