"""A training table read in Arrow record batches, never whole: the float64 model matrix exists one block at a
time, as LightGBM bins it (through pipeline/engine/streamed.py) and as fold models predict it.

A parquet file is read by row group (the unit parquet can seek to), and only the rows and columns asked for are
converted, by the same `to_matrix` the whole-table path uses, so every cell has the value it has there. Each batch
becomes a pandas frame with the dtypes the whole table would have (an integer column with a missing value
anywhere is float64 in every batch), so fingerprints, vocabularies and conversions agree with a whole read.
A matrix of integer and float columns only skips the frame: Arrow casts each column to float64, the cast pandas
makes, and the conversion rules (missing and infinite values) are `to_matrix`'s own.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .memory import release_memory
from .parts import part_files, same_columns
from .read import missing_file, unreadable_parquet
from .schema import ConversionReport, FeatureSchema, extra_columns, nan_infinities, to_matrix

TRANSPOSE_ROWS = 32_768  # rows of a block turned from column order to row order at a time


@dataclass(frozen=True)
class TableSource:
    """The rows of one parquet file, or of a folder of parquet parts read as one table in name order, that form a
    table (all of them, or a split's, in file order)."""

    path: Path
    name: str  # how messages name the table
    rows: np.ndarray | None = None  # sorted file positions of the table's rows; None: every row
    _cache: _GroupCache = field(default_factory=lambda: _GroupCache(), compare=False, repr=False)

    @cached_property
    def _files(self) -> list:
        import pyarrow as pa
        import pyarrow.parquet as pq

        paths = part_files(self.path) if self.path.is_dir() else [self.path]
        if not paths[0].is_file():
            raise missing_file(self.path)
        files = []
        for path in paths:
            try:
                files.append(pq.ParquetFile(path, pre_buffer=False))
            except (pa.ArrowException, OSError) as exc:
                raise unreadable_parquet(path, exc) from None
            same_columns(path, files[-1].schema_arrow.names, paths[0], files[0].schema_arrow.names)
        return files

    @property
    def _file(self):
        """The first part: its schema is every part's."""
        return self._files[0]

    @cached_property
    def _groups(self) -> list[tuple[int, int]]:
        """Every row group of the table, in order, as (part, row group of that part)."""
        return [(k, g) for k, f in enumerate(self._files) for g in range(f.metadata.num_row_groups)]

    @cached_property
    def _group_starts(self) -> np.ndarray:
        sizes = [self._files[k].metadata.row_group(g).num_rows for k, g in self._groups]
        return np.concatenate([[0], np.cumsum(sizes, dtype="int64")])

    @property
    def largest_row_group(self) -> int:
        return int(np.diff(self._group_starts).max(initial=0))

    @property
    def file_rows(self) -> int:
        return int(self._group_starts[-1])

    @property
    def n_rows(self) -> int:
        return self.file_rows if self.rows is None else len(self.rows)

    @property
    def column_names(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """File positions of the table's rows `rows` (sorted positions in the table)."""
        return np.asarray(rows) if self.rows is None else self.rows[rows]

    @cached_property
    def whole_dtypes(self) -> dict[str, object]:
        """The dtypes pandas gives the whole table where a batch may get another: an integer column with a missing
        value anywhere is float64 (or Int64, as the file's pandas metadata says) in every batch, not only in the
        batches that hold one. Found by converting one row with a null put wherever the file has some."""
        import pyarrow as pa
        import pyarrow.types as pat

        first = next(self._file.iter_batches(batch_size=1))
        leaves = {self._file.schema.column(i).path: i for i in range(len(self._file.schema))}
        arrays = []
        for column, array in zip(self._file.schema_arrow, first.columns):
            integer, boolean = pat.is_integer(column.type), pat.is_boolean(column.type)
            if (integer or boolean) and self._null_count(leaves[column.name], column.name):
                array = pa.nulls(1, type=column.type)
            arrays.append(array)
        probe = pa.Table.from_arrays(arrays, schema=self._file.schema_arrow).to_pandas()
        return {
            name: probe[name].dtype for name in probe.columns if not isinstance(probe[name].dtype, pd.CategoricalDtype)
        }

    @cached_property
    def plain_numeric(self) -> frozenset[str]:
        """The columns that are integer or float32/64 in every part of the table."""
        return frozenset.intersection(*(_plain_columns(f.schema_arrow) for f in self._files))

    @property
    def nested_columns(self) -> list[str]:
        """Columns of lists, structs or maps (from the file's schema: a batch of nulls would not show them)."""
        import pyarrow.types as pat

        # Over every part: a part whose rows hold only nulls there gives the column no nested type.
        nested = {c.name for f in self._files for c in f.schema_arrow if pat.is_nested(c.type)}
        return [name for name in self.column_names if name in nested]

    def _null_count(self, j: int, name: str) -> int:
        """Missing values of a flat column (`j`: its parquet leaf) from the row groups' statistics."""
        total = 0
        for k, g in self._groups:
            stats = self._files[k].metadata.row_group(g).column(j).statistics
            if stats is None or not stats.has_null_count:
                return sum(f.read(columns=[name]).column(0).null_count for f in self._files)
            total += stats.null_count
        return total

    def frames(
        self, columns: Sequence[str] | None, positions: np.ndarray | None = None, batch_rows: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """The table's rows at file `positions` (sorted; None: all the table's rows) as frames of at most
        `batch_rows` rows (None: a row group's), with the whole table's dtypes; `columns` None reads them all."""
        # map, not a loop: a loop's variable would hold each batch, and so its row group, while the next decodes
        return map(lambda part: self._as_whole(part.to_pandas()), self.batches(columns, positions, batch_rows))

    def batches(
        self, columns: Sequence[str] | None, positions: np.ndarray | None = None, batch_rows: int | None = None
    ) -> Iterator:
        """`frames`' rows as Arrow tables, as the file decodes them (no pandas dtypes)."""
        positions = self.rows if positions is None else positions  # None: every row of the file, as it comes
        if positions is not None and not increasing(positions):
            raise ValueError("rows of a streamed table are read in file order: give sorted, distinct positions")
        starts = self._group_starts
        cuts = None if positions is None else np.searchsorted(positions, starts)
        for g in range(len(starts) - 1):
            picked = None if cuts is None else positions[cuts[g] : cuts[g + 1]]
            n_picked = starts[g + 1] - starts[g] if picked is None else len(picked)
            if n_picked == 0:
                continue
            table = self._row_group(g, columns)
            step = batch_rows or n_picked
            whole = n_picked == table.num_rows
            for first in range(0, n_picked, step):
                yield table.slice(first, step) if whole else table.take(picked[first : first + step] - starts[g])
            table = None  # while the next group decodes, only the cache may hold this one: it lets it go first

    def _row_group(self, g: int, columns: Sequence[str] | None):
        import pyarrow as pa

        key = (g, None if columns is None else tuple(columns))
        with self._cache.lock:  # folds predicting in threads share the file
            if self._cache.key != key:
                if self._cache.table is not None:  # one decoded group in memory at a time
                    self._cache.table = None
                    pa.default_memory_pool().release_unused()  # else Arrow's allocator keeps each group freed
                part, group = self._groups[g]
                wanted = None if columns is None else list(columns)
                self._cache.table = self._files[part].read_row_group(group, columns=wanted)
                self._cache.key = key
            return self._cache.table

    def release(self) -> None:
        with self._cache.lock:
            self._cache.key = self._cache.table = None

    def _as_whole(self, frame: pd.DataFrame) -> pd.DataFrame:
        for name in frame.columns:
            dtype = self.whole_dtypes.get(name)
            if dtype is not None and frame[name].dtype != dtype:
                frame[name] = frame[name].astype(dtype)
        return frame

    def column(self, name: str) -> pd.Series:
        """One column of the table, whole (one column costs what the table's ids or target cost)."""
        parts = [f[name] for f in self.frames([name])]
        return pd.concat(parts, ignore_index=True) if parts else pd.Series([], name=name)


def increasing(rows: np.ndarray) -> bool:
    """Whether `rows` are sorted and distinct (no temporary but one byte a row)."""
    return len(rows) < 2 or bool((rows[1:] > rows[:-1]).all())


def arrow_matrix(schema: FeatureSchema, table, report: ConversionReport) -> np.ndarray | None:
    """`to_matrix` of an Arrow table without a pandas frame, when every feature is an integer or float column of
    it (None otherwise): the same values, missing and infinite values handled and counted alike."""
    if not _all_plain(schema, _plain_columns(table.schema)):
        return None
    report.extra_columns = extra_columns(schema, table.column_names)
    return _plain_matrix(table, schema.columns, report)


def _plain_columns(arrow_schema) -> frozenset[str]:
    """The integer and float32/64 columns of an Arrow schema: those convert without a pandas frame."""
    import pyarrow.types as pat

    return frozenset(
        f.name for f in arrow_schema if pat.is_integer(f.type) or pat.is_float32(f.type) or pat.is_float64(f.type)
    )


def _all_plain(schema: FeatureSchema, plain: frozenset[str]) -> bool:
    """Whether every feature is a number column among `plain` (categoricals take the frame path)."""
    return all(schema.kinds[c] != "categorical" and c in plain for c in schema.columns)


def _plain_matrix(batch, columns: Sequence[str], report: ConversionReport) -> np.ndarray:
    """The float64 block of an Arrow batch of integer and float columns: `to_matrix`'s values (nulls and
    infinities missing, the infinities counted). Each piece of rows is filled a column at a time, where the memory
    is contiguous, then turned into the block's row order: a buffer a fraction of the block, not a second block."""
    import pyarrow as pa
    import pyarrow.compute as pc

    block = np.empty((batch.num_rows, len(columns)))
    for start in range(0, batch.num_rows, TRANSPOSE_ROWS):
        piece = batch.slice(start, TRANSPOSE_ROWS)
        by_column = np.empty((len(columns), piece.num_rows))
        for j, name in enumerate(columns):
            # safe=False: a safe cast refuses integers beyond 2**53, which pandas rounds to the nearest float64
            values = pc.cast(piece.column(name), pa.float64(), safe=False).to_numpy()
            by_column[j] = nan_infinities(values, name, report)
        block[start : start + piece.num_rows] = by_column.T
    return block


class _GroupCache:
    """The last row group read, decoded: LightGBM asks for a batch at a time, and a row group holds several."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.table = None


class StreamedMatrix:
    """The model matrix of a table, read block by block: `blocks` for predictions and binning, `X[rows]` for a
    subset small enough to hold (one fold's validation rows), `X[:, j]` for a column, `take(rows)` for a subset
    that stays streamed (a fold's rows, as LightGBM subsets its Dataset)."""

    def __init__(
        self, source: TableSource, schema: FeatureSchema, batch_rows: int, positions: np.ndarray | None = None
    ):
        self.source = source
        self.schema = schema
        self.batch_rows = batch_rows
        # None: the table's rows, every one, in order; not spelled out, as that would be 8 bytes a row held
        self._positions = positions

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), len(self.schema.columns)

    def __len__(self) -> int:
        return self.source.n_rows if self._positions is None else len(self._positions)

    def file_positions(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """File positions of this matrix's rows `rows` (sorted; None: all, which is None for the whole table)."""
        if self._positions is not None:
            return self._positions if rows is None else self._positions[rows]
        return None if rows is None else self.source.positions(rows)

    def blocks(self, rows: np.ndarray | None = None, report: ConversionReport | None = None) -> Iterator[np.ndarray]:
        """float64 blocks of the rows `rows` (sorted, distinct positions in this matrix; None: all), in order."""
        positions, report = self.file_positions(rows), report if report is not None else ConversionReport()
        # map, as `TableSource.frames`: no batch of the last block is held while the next one is read
        if not self._plain:
            frames = self.source.frames(self.schema.columns, positions, self.batch_rows)
            return map(lambda frame: to_matrix(self.schema, frame, self.source.name, report), frames)
        batches = self.source.batches(self.schema.columns, positions, self.batch_rows)
        return map(lambda batch: _plain_matrix(batch, self.schema.columns, report), batches)

    @property
    def _plain(self) -> bool:
        """Whether every feature is an integer or floating-point column in the file: those convert straight from
        Arrow, each value cast to float64 as pandas casts it, without the frame (the hot path of every pass)."""
        return _all_plain(self.schema, self.source.plain_numeric)

    def take(self, rows: np.ndarray) -> StreamedMatrix:
        return StreamedMatrix(self.source, self.schema, self.batch_rows, self.file_positions(self._rows(rows)))

    def _rows(self, key) -> np.ndarray:
        """A row key (slice, mask, positions, negative ones too) as positions in this matrix."""
        rows = np.arange(*key.indices(len(self))) if isinstance(key, slice) else np.asarray(key)
        if rows.dtype == bool:
            return np.flatnonzero(rows)
        if len(rows) and rows.min() < 0:
            rows = np.where(rows < 0, rows + len(self), rows)
        return rows

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # X[:, j]: one column, every row
            return self._column(*key)
        rows = self._rows(key)
        if increasing(rows):  # a slice, or a fold's rows: already as the file is read
            unique, inverse = rows, None
        else:
            unique, inverse = np.unique(rows, return_inverse=True)  # sorted and distinct, as the file is read
        blocks = self.blocks(unique)
        first = next(blocks, None)
        if first is not None and len(first) == len(unique):  # one block: it is the answer, not copied
            return first if inverse is None else first[inverse]
        out, done = np.empty((len(unique), self.shape[1])), 0
        for block in itertools.chain([first] if first is not None else [], blocks):
            out[done : done + len(block)] = block
            done += len(block)
        return out if inverse is None else out[inverse]

    def _column(self, rows, column) -> np.ndarray:
        if not (isinstance(rows, slice) and rows == slice(None)) or not isinstance(column, int | np.integer):
            raise TypeError("a streamed matrix gives whole columns only: X[:, j]")
        name = self.schema.columns[column]
        sub = FeatureSchema((name,), {name: self.schema.kinds[name]}, self.schema.categories, None, self.schema.rare)
        parts = [block[:, 0] for block in StreamedMatrix(self.source, sub, self.batch_rows, self._positions).blocks()]
        return np.concatenate(parts) if parts else np.empty(0)

    def release(self) -> None:
        """Let go of the decoded row group kept for the next read, and of the memory the reads freed: once
        LightGBM has binned the rows, only the bins are needed."""
        self.source.release()
        release_memory()
