"""What the datasets must contain (data/checksums.sha256 and data/tables.json): a sha256 per file and a
content digest per table, so a table rebuilt from its public source is recognised by content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.artifacts import atomic_write_bytes, json_bytes

CATALOG_DIR = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Catalog:
    """What the datasets must contain: sha256 per file, content digests per table."""

    checksums: dict[str, str]
    tables: dict[str, dict]

    def files(self, dataset: str) -> list[str]:
        return sorted(name for name in self.checksums if name.split("/", 1)[0] == dataset)

    def datasets(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.checksums})


def load_catalog(folder: Path = CATALOG_DIR) -> Catalog:
    """Read the committed checksum list and table digests."""
    checksums = {}
    for line in (folder / "checksums.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            checksums[name.strip().removeprefix("*")] = digest
    return Catalog(checksums, json.loads((folder / "tables.json").read_text()))


def catalog_of(folder: Path) -> Catalog:
    """The catalog of a reference data folder (how data/checksums.sha256 and data/tables.json are made)."""
    files = sorted(p for p in Path(folder).glob("*/*") if p.is_file())
    checksums = {p.relative_to(folder).as_posix(): sha256_hex(p.read_bytes()) for p in files}
    tables = {
        name: table_digest(pd.read_parquet(Path(folder) / name)) for name in checksums if name.endswith(".parquet")
    }
    return Catalog(checksums, tables)


def write_catalog(catalog: Catalog, folder: Path = CATALOG_DIR) -> None:
    """Write data/checksums.sha256 (sha256sum format) and data/tables.json."""
    lines = [f"{digest}  {name}" for name, digest in sorted(catalog.checksums.items())]
    atomic_write_bytes(folder / "checksums.sha256", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(folder / "tables.json", json_bytes(catalog.tables))


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} kB"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_digest(frame: pd.DataFrame) -> dict:
    """Row count and, per column in order, [name, kind, sha256 of the values] (independent of file bytes)."""
    return {"rows": len(frame), "columns": [[str(c), *column_digest(frame[c])] for c in frame.columns]}


def column_digest(column: pd.Series) -> list[str]:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        kind, data = "int", column.to_numpy("int64").astype("<i8").tobytes()
    elif pd.api.types.is_float_dtype(column):
        values = column.to_numpy("float64") + 0.0  # -0.0 -> 0.0
        kind, data = "float", np.where(np.isnan(values), np.nan, values).astype("<f8").tobytes()
    elif pd.api.types.is_datetime64_any_dtype(column):
        kind, data = "datetime", column.astype("datetime64[ns]").to_numpy().view("int64").astype("<i8").tobytes()
    else:
        text = (
            "\x01" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in column.astype(object)
        )
        kind, data = "str", "\x00".join(text).encode("utf-8")
    return [kind, hashlib.sha256(kind.encode() + b"\x00" + data).hexdigest()]
