"""Reading the folders later stages write (tune/<study>, select/<id>) and showing their JSON documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.artifacts import MANIFEST
from pipeline.core.run_folder import RunReader

from .page import Facts, Table, Text
from .runview import RunView, flatten

MAX_ROWS = 60


class StageFolder:
    """Files of a stage's own folder (tune/<study>, select/<id>), verified by its manifest when it has one."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)
        self.reader = RunReader(self.dir, allow_version_mismatch=True) if (self.dir / MANIFEST).is_file() else None

    def names(self, prefix: str = "", suffix: str = "") -> list[str]:
        if self.reader is not None:
            names = self.reader.files
        else:
            names = [p.relative_to(self.dir).as_posix() for p in self.dir.rglob("*") if p.is_file()]
        return sorted(n for n in names if n.startswith(prefix) and n.endswith(suffix))

    def bytes(self, name: str) -> bytes | None:
        if self.reader is not None:
            return self.reader.read_bytes(name) if self.reader.has(name) else None
        path = self.dir / name
        return path.read_bytes() if path.is_file() else None

    def json(self, name: str) -> Any | None:
        data = self.bytes(name)
        return json.loads(data) if data is not None else None

    def parquet(self, name: str) -> pd.DataFrame | None:
        if self.bytes(name) is None:
            return None
        return pd.read_parquet(self.reader.path(name) if self.reader is not None else self.dir / name)


def generic_blocks(name: str, doc: Any) -> list[Any]:
    """A stage's JSON document as facts (scalars) and tables (records, per-key dicts)."""
    if not isinstance(doc, dict):
        return [Text(f"`{name}`: {json.dumps(doc)[:300]}")]
    facts: dict[str, Any] = {}
    tables: list[Table] = []
    for key, value in doc.items():
        table = _as_table(f"{name}.{key}", key, value)
        if table is not None:
            tables.append(table)
        elif isinstance(value, dict):
            facts.update({f"{key}.{k}": v for k, v in flatten(value).items() if not _long(v)})
        elif isinstance(value, list):
            facts[key] = ", ".join(map(str, value[:20])) + (f" … ({len(value)} in all)" if len(value) > 20 else "")
        else:
            facts[key] = value
    blocks: list[Any] = [Facts(facts)] if facts else []
    return blocks + tables


def _long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 200


def _as_table(name: str, key: str, value: Any) -> Table | None:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for v in value for k in v))
        rows = [[_cell(v.get(c)) for c in columns] for v in value[:MAX_ROWS]]
        return Table(
            name, columns, rows, f"`{key}`" + (f" (first {MAX_ROWS} of {len(value)})" if len(value) > MAX_ROWS else "")
        )
    if isinstance(value, dict) and len(value) > 1 and all(isinstance(v, dict) for v in value.values()):
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        rows = [[str(k), *[_cell(v.get(c)) for c in columns]] for k, v in list(value.items())[:MAX_ROWS]]
        return Table(name, [key, *columns], rows, f"`{key}`")
    if isinstance(value, dict) and len(value) > 12 and all(isinstance(v, (int, float)) for v in value.values()):
        items = sorted(value.items(), key=lambda kv: -abs(kv[1]))[:MAX_ROWS]
        return Table(name, [key, "value"], [[str(k), v] for k, v in items], f"`{key}` (largest first)")
    return None


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)[:80]


def stage_dirs(view: RunView, stage: str) -> list[Path]:
    """The experiment's folders of a stage (runs/<exp>/<stage>/*), newest first."""
    root = view.dir.parent / stage
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
