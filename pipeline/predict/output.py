"""Where `gbpipe predict` writes: one CSV or parquet file, or a folder of parquet parts; either appears whole once
every row is predicted, or not at all (a temporary file or folder beside it, fsynced, then renamed)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.artifacts import SHARED_MODE, ArtifactWriteError, fsync_dir, write_error
from pipeline.core.errors import ConfigError, DataError

Write = Callable[[str, pd.DataFrame], None]  # (the input part's name, its predictions)


def is_folder_output(path: Path) -> bool:
    """An --output without a suffix is a folder of parquet parts, one per input part."""
    return path.suffix == ""


@contextlib.contextmanager
def output_writer(path: Path) -> Iterator[Write]:
    """A function that appends each part's predictions to `path`: one file, or a folder of parts."""
    if not is_folder_output(path):
        with _atomic_table_writer(path) as write:
            yield lambda part, frame: write(frame)
        return
    if path.exists():
        raise ConfigError(
            f"--output {path} already exists; predictions never replace an earlier folder: give a new folder "
            "name, or delete that one"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise write_error(path, exc) from exc
    with contextlib.ExitStack() as parts:
        writers: dict[str, Callable[[pd.DataFrame], None]] = {}

        def write(part: str, frame: pd.DataFrame) -> None:
            if part not in writers:
                writers[part] = parts.enter_context(_atomic_table_writer(staging / f"{part}.parquet"))
            writers[part](frame)

        try:
            yield write
            parts.close()
            os.chmod(staging, 0o755)
            os.replace(staging, path)
            fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(Exception):
                parts.close()
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextlib.contextmanager
def _atomic_table_writer(path: Path):
    """Yield a function that appends frames; on success the file appears whole, else not at all."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from exc
    state: dict = {"writer": None, "header": True}
    parquet = path.suffix.lower() in (".parquet", ".pq")

    def write(frame: pd.DataFrame) -> None:
        if parquet:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if state["writer"] is None:
                state["writer"] = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            state["writer"].write_table(_like_first_chunk(table, state["writer"].schema, path))
        else:
            frame.to_csv(tmp, mode="w" if state["header"] else "a", header=state["header"], index=False)
            state["header"] = False

    try:
        yield write
        if state["writer"] is not None:
            state["writer"].close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, SHARED_MODE)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        if state["writer"] is not None:
            with contextlib.suppress(Exception):
                state["writer"].close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ArtifactWriteError):
            raise write_error(path, exc) from exc
        raise


def _like_first_chunk(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """A CSV chunk may read a column with another type than the first chunk (a missing value turns integers
    into floats); a parquet file has one type per column, so later chunks take the first one's."""
    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema)
    except (ValueError, pa.ArrowNotImplementedError) as exc:  # ArrowInvalid is a ValueError
        changed = [f.name for f, g in zip(schema, table.schema, strict=True) if not f.type.equals(g.type)]
        raise DataError(
            f"columns {changed} of the input change type between chunks ({exc}), so {path} cannot "
            "hold them as one parquet column; give --chunk-size larger than the file's rows, or write "
            "CSV"
        ) from None
