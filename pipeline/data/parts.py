"""A table kept as many files: a folder or a glob of CSV or parquet parts (daily exports, partitions).

CSV parts are joined as text under one header and parsed once, so every column gets one type over the
whole table: parsed one file at a time, a day without cancellations would read InvoiceNo as numbers and
the next day as text. Parts are read in name order; every part must have the same columns.
"""

from __future__ import annotations

import glob
import hashlib
import io
from pathlib import Path

import pandas as pd

from pipeline.core.artifacts import sha256_file
from pipeline.core.errors import DataError

from .read import check_columns, check_delimiter, csv_header_of, read_parquet_file, read_table

KINDS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
GLOB_CHARS = frozenset("*?[")


def is_parted(path: str | Path) -> bool:
    """Whether the table is given as a folder or a glob rather than one file."""
    return bool(GLOB_CHARS & set(str(path))) or Path(path).is_dir()


def is_parquet_table(path: str | Path) -> bool:
    """One parquet file, or a folder or glob whose parts are parquet."""
    files = part_files(path) if is_parted(path) else [Path(path)]
    return all(f.suffix.lower() in (".parquet", ".pq") for f in files)


def part_offsets(files: list[Path]) -> list[int]:
    """Where each parquet part's rows start in the table the parts make, from the files' footers."""
    import pyarrow.parquet as pq

    starts, total = [], 0
    for path in files:
        starts.append(total)
        total += pq.read_metadata(path).num_rows
    return starts


def part_files(path: str | Path) -> list[Path]:
    """The parts of a folder (its CSV or parquet files) or of a glob, in name order; one kind only."""
    text = str(path)
    if Path(text).is_dir():
        files = sorted(p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in KINDS)
    else:
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
    if not files:
        raise DataError(
            f"{text} holds no table parts: give a folder of .csv/.tsv/.parquet files or a glob such "
            "as data/events/*.csv that matches some; run `make data` if the data is missing"
        )
    kinds = {KINDS.get(p.suffix.lower()) for p in files}
    if len(kinds) > 1 or None in kinds:
        odd = sorted({p.suffix for p in files})
        raise DataError(f"the parts of {text} mix file types {odd}; give parts of one type (.csv/.tsv or .parquet)")
    return files


def read_any(path: str | Path, sep: str = ",") -> pd.DataFrame:
    """One file (read_table), or the parts of a folder or glob as one table."""
    return read_parts(path, sep) if is_parted(path) else read_table(path, sep)


def read_parts(path: str | Path, sep: str = ",") -> pd.DataFrame:
    """The parts of a folder or glob as one table; DataError naming the part whose columns differ."""
    files = part_files(path)
    if KINDS[files[0].suffix.lower()] == "parquet":
        frames = [read_parquet_file(f) for f in files]
        for f, frame in zip(files[1:], frames[1:]):
            same_columns(f, list(frame.columns), files[0], list(frames[0].columns))
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = _read_csv_parts(files, "\t" if files[0].suffix.lower() == ".tsv" else sep, str(path))
    check_columns(frame, path)
    if frame.empty:
        raise DataError(f"the {len(files)} parts of {path} hold a header but 0 rows; give parts with data rows")
    return frame


def _read_csv_parts(files: list[Path], sep: str, source: str) -> pd.DataFrame:
    header: list[str] = []
    chunks = []
    for f in files:
        data = f.read_bytes()  # read once: checked (UTF-8, unique names, same header) and joined
        columns = csv_header_of(data, f, sep)
        first, _, body = data.removeprefix(b"\xef\xbb\xbf").partition(b"\n")
        if not chunks:
            header, chunks = columns, [first + b"\n"]  # one header for all the parts
        same_columns(f, columns, files[0], header)
        chunks.append(body if not body or body.endswith(b"\n") else body + b"\n")
    try:
        frame = pd.read_csv(io.BytesIO(b"".join(chunks)), sep=sep, low_memory=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"the CSV parts of {source} could not be parsed with delimiter {sep!r}: {exc}") from None
    check_delimiter(frame, f"the CSV parts of {source}", sep)
    return frame


def same_columns(part: Path, columns: list[str], first: Path, expected: list[str]) -> None:
    if columns != expected:
        missing, extra = sorted(set(expected) - set(columns)), sorted(set(columns) - set(expected))
        detail = f"lacks {missing}, has {extra} more" if missing or extra else "has them in another order"
        raise DataError(
            f"part {part} has other columns than the first part {first.name}: it {detail}; every "
            f"part must have the columns {expected}"
        )


def parts_fingerprint(path: str | Path) -> str:
    """sha256 over each part's name and content (a renamed, added or changed part changes it)."""
    digest = hashlib.sha256()
    for f in part_files(path):
        digest.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return digest.hexdigest()
