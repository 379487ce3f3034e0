"""Reading one table file: CSV (checked UTF-8, unique header, right delimiter), parquet, or a bundled
scikit-learn dataset (`sklearn:<name>`), with errors that name the file and the fix."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import SKLEARN_PREFIX
from pipeline.core.errors import DataError

SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "diabetes")


def read_table(path: str | Path, sep: str = ",") -> pd.DataFrame:
    """Read a CSV or parquet file (or `sklearn:<name>`) with clear errors for bad files."""
    text = str(path)
    if text.startswith(SKLEARN_PREFIX):
        return _read_sklearn(text.removeprefix(SKLEARN_PREFIX))
    path = Path(path)
    if not path.is_file():
        raise missing_file(path)
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
    while, so the process would hold about twice the file beside the frame itself.
    """
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None
    pa.default_memory_pool().release_unused()
    return frame


def missing_file(path: Path) -> DataError:
    return DataError(f"data file {path} not found; run `make data` or fix the path in the config")


def unreadable_parquet(path: Path, exc: Exception) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(
        f"data file {path} is not a readable parquet file ({reason}); check that it was written completely, "
        "or save the table again (e.g. DataFrame.to_parquet)"
    )


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
        raise DataError(
            f"{source} has one column {frame.columns[0]!r}; the delimiter looks wrong "
            f"(expected {sep!r}); set data.csv_sep in the config"
        )


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
    return DataError(
        f"data file {path} is not UTF-8 (byte {exc.start}: {exc.reason}); "
        "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
    )


def _unique_header(header: list[str], path: Path) -> list[str]:
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(
            f"data file {path} has duplicate column names: {dupes} "
            f"({len(header) - len(set(header))} repeats); rename them so each is unique"
        )
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
