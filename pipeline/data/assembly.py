"""Tables that `gbpipe data` assembles from several verified datasets: the two-year Online Retail event
table, Online Retail II's first year (2009-12-01 .. 2010-12-09) joined to UCI Online Retail
(2010-12-01 .. 2011-12-09).

The two files share nine days, 2010-12-01 .. 2010-12-09. They are taken once, from UCI Online Retail,
after checking that both files hold the same lines there (as multisets of full rows: only the order of
lines within a minute may differ); if they do not, nothing is built. Column names are Online Retail's
(`InvoiceNo`, `UnitPrice`, `CustomerID`). Beside the table, `sources.json` says which files made it,
their date ranges, the overlap, and the sha256 of the inputs and of the table, so a later
`gbpipe data` recognises the table without rebuilding it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.artifacts import json_bytes, parquet_bytes
from pipeline.core.errors import DataError

from .catalog import sha256_hex
from .conversion import RETAIL_COLUMNS, RETAIL_II_NAMES

FIRST_YEAR = "online_retail_ii/online_retail_ii_2009_2010.parquet"
SECOND_YEAR = "online_retail/online_retail.parquet"
TWO_YEARS = "online_retail_2y/online_retail_2009_2011.parquet"
SOURCES = "online_retail_2y/sources.json"


def join_years(first: pd.DataFrame, second: pd.DataFrame, names: tuple[str, str]) -> tuple[pd.DataFrame, dict]:
    """The first file's lines before the second file's first day, then all of the second file; refuses
    (DataError) when the days both files hold differ. Returns the table and its summary."""
    first = first.rename(columns=RETAIL_II_NAMES)[list(RETAIL_COLUMNS)]
    second = second.rename(columns=RETAIL_II_NAMES)[list(RETAIL_COLUMNS)]
    start = second["InvoiceDate"].min().normalize()
    end = first["InvoiceDate"].max().normalize() + pd.Timedelta(days=1)
    in_first = first[first["InvoiceDate"] >= start]
    in_second = second[second["InvoiceDate"] < end]
    differing = _unmatched(in_first, in_second)
    if differing:
        raise DataError(
            f"{names[0]} and {names[1]} disagree on the days both hold, {start:%Y-%m-%d} .. "
            f"{end - pd.Timedelta(days=1):%Y-%m-%d}: {differing} lines are in one file and not the other "
            f"({len(in_first)} and {len(in_second)} lines there); the two-year table was not built. Fetch "
            "verified copies (`gbpipe data` checks their sha256) or use one file alone"
        )
    table = pd.concat([first[first["InvoiceDate"] < start], second], ignore_index=True)
    summary = {
        "files": [_describe(names[0], first, len(first) - len(in_first)), _describe(names[1], second, len(second))],
        "overlap": {"from": f"{start:%Y-%m-%d}", "to": f"{end - pd.Timedelta(days=1):%Y-%m-%d}",
                    "lines_in_each": len(in_first), "identical": True, "taken_from": names[1]},
        "rows": len(table),
        "from": f"{table['InvoiceDate'].min():%Y-%m-%d %H:%M}",
        "to": f"{table['InvoiceDate'].max():%Y-%m-%d %H:%M}",
    }  # fmt: skip
    return table, summary


def _unmatched(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """Lines of `a` and `b` without an equal line in the other, counting repeated lines as often as they occur."""
    key = list(RETAIL_COLUMNS)
    a = a.assign(_n=a.groupby(key, dropna=False).cumcount())
    b = b.assign(_n=b.groupby(key, dropna=False).cumcount())
    merged = a.merge(b, on=[*key, "_n"], how="outer", indicator=True)
    return int((merged["_merge"] != "both").sum())


def _describe(name: str, frame: pd.DataFrame, used: int) -> dict[str, Any]:
    return {"file": name, "from": f"{frame['InvoiceDate'].min():%Y-%m-%d %H:%M}",
            "to": f"{frame['InvoiceDate'].max():%Y-%m-%d %H:%M}", "lines": len(frame), "lines_used": used}  # fmt: skip


def two_year_files(dest: Path) -> tuple[dict[str, bytes], dict[str, Any]] | None:
    """The two-year table and its sources.json, built from the two files under `dest`, with the summary;
    None when either file is missing (each year alone still works)."""
    paths = [Path(dest) / FIRST_YEAR, Path(dest) / SECOND_YEAR]
    if not all(path.is_file() for path in paths):
        return None
    first, second = (path.read_bytes() for path in paths)  # read once: parsed and hashed from the same bytes
    table, summary = join_years(pd.read_parquet(io.BytesIO(first)), pd.read_parquet(io.BytesIO(second)),
                                (FIRST_YEAR, SECOND_YEAR))  # fmt: skip
    data = parquet_bytes(table)
    summary["sha256"] = {FIRST_YEAR: sha256_hex(first), SECOND_YEAR: sha256_hex(second), TWO_YEARS: sha256_hex(data)}
    return {TWO_YEARS: data, SOURCES: json_bytes(summary)}, summary


def is_current(dest: Path) -> bool:
    """The two-year table in `dest` was built from the input files there now, and is unaltered."""
    sources, table = Path(dest) / SOURCES, Path(dest) / TWO_YEARS
    if not (sources.is_file() and table.is_file()):
        return False
    try:
        recorded = json.loads(sources.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        return False
    return all(
        (Path(dest) / name).is_file() and sha256_hex((Path(dest) / name).read_bytes()) == digest
        for name, digest in recorded.items()
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What `gbpipe data` prints about the two-year table."""
    lines = [f"  {TWO_YEARS}: {summary['rows']:,} lines, {summary['from']} .. {summary['to']}, from:"]
    for f in summary["files"]:
        lines.append(f"    {f['file']}: {f['from']} .. {f['to']}, {f['lines_used']:,} of {f['lines']:,} lines")
    overlap = summary["overlap"]
    lines.append(
        f"    overlap {overlap['from']} .. {overlap['to']}: {overlap['lines_in_each']:,} lines, identical in both "
        f"files, taken once from {overlap['taken_from']}"
    )
    return lines
