"""Reading tables, splitting off the test set, and checking and encoding the target."""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Config, DataSection
from .errors import DataError

SKLEARN_PREFIX = "sklearn:"
SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "diabetes")


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


def read_table(path: str | Path, sep: str = ",") -> pd.DataFrame:
    """Read a CSV or parquet file (or `sklearn:<name>`) with clear errors for bad files."""
    text = str(path)
    if text.startswith(SKLEARN_PREFIX):
        return _read_sklearn(text.removeprefix(SKLEARN_PREFIX))
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found; run `make data` or fix the path in the config")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
        frame = read_parquet_file(path)
    elif any(suffixes.endswith(s) for s in (".csv", ".csv.gz", ".tsv", ".txt")):
        frame = _read_csv(path, sep="\t" if suffixes.endswith(".tsv") else sep)
    else:
        raise DataError(f"data file {path} has an unknown type {path.suffix!r}; use .csv, .tsv or .parquet")
    check_columns(frame, path)
    if frame.empty:
        raise DataError(f"data file {path} has a header but 0 rows; give a file with data rows")
    return frame


def read_parquet_file(path: Path) -> pd.DataFrame:
    """A parquet file as a frame, without pyarrow keeping a second copy of the file in its memory pool.

    By default pyarrow pre-buffers every column chunk and its pool keeps the freed memory for a
    while: measured on a 1 GB file, the process held ~2 GB more than the frame itself.
    """
    import pyarrow as pa

    frame = pd.read_parquet(path, pre_buffer=False)
    pa.default_memory_pool().release_unused()
    return frame


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty (0 bytes); give a CSV with a header and rows")
    csv_header(path, sep)  # raises on duplicate names or bytes that are not UTF-8
    try:
        # utf-8-sig drops a byte-order mark that would otherwise stick to the first column name.
        frame = pd.read_csv(path, sep=sep, encoding="utf-8-sig", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} has no columns; give a CSV with a header and rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"data file {path} could not be parsed as CSV with delimiter {sep!r}: {exc}") from None
    check_delimiter(frame, f"data file {path}", sep)
    return frame


def check_delimiter(frame: pd.DataFrame, source: Any, sep: str) -> None:
    """One column whose name holds another delimiter: the file was split on the wrong one."""
    if len(frame.columns) == 1 and any(d in str(frame.columns[0]) for d in ";\t|," if d != sep):
        raise DataError(f"{source} has one column {frame.columns[0]!r}; the delimiter looks wrong "
                        f"(expected {sep!r}); set data.csv_sep in the config")


def csv_header(path: Path, sep: str = ",") -> list[str]:
    """The raw header of a CSV file (pandas would rename repeated names to `a.1`), checked unique."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
            for _ in handle:  # decode the whole file now, so a bad byte is reported here with its file
                pass
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    return _unique_header(header, path)


def csv_header_of(data: bytes, path: Path, sep: str = ",") -> list[str]:
    """`csv_header` of a file's bytes already read (decoded whole, so a bad byte is reported with its file)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    return _unique_header(next(csv.reader(io.StringIO(text), delimiter=sep), []), path)


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"data file {path} is not UTF-8 (byte {exc.start}: {exc.reason}); "
                     "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`")


def _unique_header(header: list[str], path: Path) -> list[str]:
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"data file {path} has duplicate column names: {dupes} "
                        f"({len(header) - len(set(header))} repeats); rename them so each is unique")
    return header


def _read_sklearn(name: str) -> pd.DataFrame:
    from sklearn import datasets

    if name not in SKLEARN_DATASETS:
        raise DataError(f"unknown bundled dataset sklearn:{name}; choose one of {', '.join(SKLEARN_DATASETS)}")
    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def check_columns(frame: pd.DataFrame, source: Any) -> None:
    """Column names must be unique strings."""
    dupes = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dupes:
        raise DataError(f"data file {source} has duplicate column names: {dupes}; rename them so each is unique")


def load_tables(data: DataSection, seed: int) -> Tables:
    """Load the training table and split off the test table as the config says."""
    from .parts import read_any  # a table may be one file or a folder or glob of parts

    train = read_any(data.train, data.csv_sep)
    if data.test is not None:
        return Tables(train, read_any(data.test, data.csv_sep), str(data.train), str(data.test))
    if data.split_column is not None:
        return _split_by_column(train, data)
    if data.test_size is not None:
        from sklearn.model_selection import train_test_split

        stratify = train[data.target] if data.task != "regression" and data.target in train else None
        tr, te = train_test_split(train, test_size=data.test_size, random_state=seed, stratify=stratify)
        name = f"{data.train} (test_size={data.test_size})"
        return Tables(tr.reset_index(drop=True), te.reset_index(drop=True), name, name)
    return Tables(train, None, str(data.train), None)


def _split_by_column(frame: pd.DataFrame, data: DataSection) -> Tables:
    col = data.split_column
    if col not in frame.columns:
        raise DataError(f"split column {col!r} not found in {data.train}; columns are: {', '.join(frame.columns)}")
    values = frame[col].astype(str)
    train_mask, test_mask = values == data.train_value, values == data.test_value
    if not train_mask.any():
        raise DataError(f"no row of {data.train} has {col} == {data.train_value!r}; values are "
                        f"{sorted(values.unique())[:10]}")
    drop = [col]
    test = frame.loc[test_mask].drop(columns=drop).reset_index(drop=True) if test_mask.any() else None
    name = f"{data.train} [{col}=={data.test_value}]" if test is not None else None
    return Tables(frame.loc[train_mask].drop(columns=drop).reset_index(drop=True), test,
                  f"{data.train} [{col}=={data.train_value}]", name)


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
        codes = values.map(lambda v: lookup.get(_plain(v), -1)).to_numpy(dtype="int64")
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
        raise DataError(f"target column {target!r} not found in {source}; columns are: {', '.join(map(str, frame.columns))}")
    y = frame[target]
    n_missing = int(y.isna().sum())
    if n_missing:
        raise DataError(f"target column {target!r} in {source} has {n_missing} missing values of {len(y)}; "
                        "drop or fill those rows before training")
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        bad = int(numeric.isna().sum())
        if bad:
            raise DataError(f"target column {target!r} in {source} has {bad} non-numeric values; regression needs numbers")
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
        raise DataError(f"target column {target!r} in {source} has a single class {_plain(counts.index[0])!r} "
                        f"({int(counts.iloc[0])} rows); a classifier needs at least two")
    if task == "binary" and len(counts) > 2:
        raise DataError(f"target column {target!r} in {source} has {len(counts)} classes but data.task is 'binary'; "
                        "set data.task = 'multiclass'")
    rare = counts[counts < cfg.cv.n_splits]
    if len(rare) and cfg.splitter in ("stratified", "stratified_group"):
        shown = ", ".join(f"{_plain(k)!r}: {v} rows" for k, v in rare.items())
        raise DataError(f"target column {target!r} in {source} has {len(rare)} classes with fewer rows than "
                        f"cv.n_splits={cfg.cv.n_splits} ({shown}); merge or drop rare classes, or lower cv.n_splits")


def fit_labels(y: pd.Series, cfg: Config) -> LabelEncoding:
    """Encode labels once for the whole dataset; for binary the positive class is the larger label."""
    if cfg.data.task == "regression":
        return LabelEncoding("regression")
    classes = sorted({_plain(v) for v in y.unique()}, key=lambda v: (str(type(v)), v))
    positive = cfg.data.positive_label
    if cfg.data.task == "binary" and positive is not None:
        match = [c for c in classes if c == positive or str(c) == str(positive)]
        if not match:
            raise DataError(f"data.positive_label {positive!r} is not a label of {cfg.data.target!r}; labels are {classes}")
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
