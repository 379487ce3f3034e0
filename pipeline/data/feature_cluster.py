"""The point-in-time feature table built on a Dask cluster, for an event table too large for one machine.

The client reads two columns of the events, the entity and the time, and decides what the whole table decides:
the data's end, its first event, the cutoffs (`features.build.plan_build`). Dask reads the parquet parts on the
workers, one task per file, and shuffles the events by entity so that each partition holds every event of its
entities; on each partition the Polars builder of the in-process path (`features.build.build_part`) builds the
rows of those entities under the whole table's plan. The client concatenates the parts and sorts them by cutoff
and entity, the order of the in-process build: the table is that build's, cell by cell.

Events that tie on time keep their order in the files, as the in-process build keeps it: each event carries its
row number through the shuffle and every partition is put back in that order before it is built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl

from features.build import (
    BuildPlan,
    FeatureTable,
    build_part,
    check_output_names,
    finish_build,
    plan_build,
    say_plan,
    summarize_build,
)
from features.events import event_times
from features.spec import FeaturesSection
from pipeline.core.errors import DataError
from pipeline.core.progress import QUIET, Progress

from .parts import is_parted, part_files, part_offsets, same_columns
from .read import read_parquet_file

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

PARTS_PER_WORKER = 4  # at least: a worker builds one partition at a time, so smaller ones lower its peak
ROW = "__gbpipe_event_row"  # an event's place in the files (name order, then row), kept through the shuffle


def build_on_cluster(
    cluster: Cluster, path: Path, spec: FeaturesSection, target: str, progress: Progress = QUIET
) -> FeatureTable:
    """The feature table of the parquet events at `path` (a file, or a folder or glob of parts), built by entity
    on the cluster's workers; the same table as `build_features` on the whole table."""
    import pyarrow.parquet as pq

    started, source = time.perf_counter(), str(path)
    check_output_names(spec, target)
    files = part_files(path) if is_parted(path) else [path]
    schemas = [pq.read_schema(f) for f in files]
    for part, schema in zip(files[1:], schemas[1:]):
        same_columns(part, schema.names, files[0], schemas[0].names)
    columns = schemas[0].names
    raw = _raw_names(columns, spec, source)
    # Parts that read the entity with different types (integers here, floats where a part has a missing id) would
    # hash one id two ways in the shuffle: they all get the type the whole read gives them, float64.
    entity_types = {str(schema.field(raw[0]).type) for schema in schemas}
    entity_dtype = "float64" if len(entity_types) > 1 else None
    entity_times = event_times(_read_columns(files, raw), columns, spec, source)
    kept, build_plan = plan_build(entity_times, spec, source)
    say_plan(kept, build_plan, spec, source, progress)
    n_parts = max(len(files), PARTS_PER_WORKER * cluster.n_workers)
    progress.say(f"features: {len(files)} parquet part(s) shuffled by {spec.entity} into {n_parts} partitions")
    reads = _Reads(files, part_offsets(files), raw[0], entity_dtype)
    tables = _built_parts(cluster, reads, n_parts, spec, target, source, build_plan)
    table = _in_build_order(tables, spec)
    summary = summarize_build(table, kept, spec, build_plan, target, source)
    del kept, entity_times
    return finish_build(table, summary, build_plan, target, started, progress)


def _in_build_order(tables: list[pl.DataFrame], spec: FeaturesSection) -> pl.DataFrame:
    """The parts as one table sorted by cutoff and entity, the in-process build's order, built a column at a time:
    each sorted column replaces its parts' pieces, so the table is held about once, not twice."""
    table = pl.concat(tables, how="vertical", rechunk=False)  # the parts' columns, not a copy of them
    tables.clear()
    order = table.select(pl.arg_sort_by([spec.cutoff_column, spec.entity], maintain_order=True)).to_series()
    columns = [table.drop_in_place(name).gather(order) for name in list(table.columns)]
    return pl.DataFrame(columns)


def _raw_names(columns: list[str], spec: FeaturesSection, source: str) -> list[str]:
    """The file's names of the entity and time columns (features.rename maps file names onto the spec's)."""
    renamed = {new: old for old, new in spec.rename.items() if old in columns}
    names = [renamed.get(c, c) for c in (spec.entity, spec.time)]
    missing = [c for c in names if c not in columns]
    if missing:
        raise DataError(
            f"event table {source} lacks the column(s) {missing} features.entity and features.time name; "
            f"its columns are {columns}"
        )
    return names


def _read_columns(files: list[Path], names: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(f, columns=names) for f in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@dataclass(frozen=True)
class _Reads:
    """The parquet parts, where their rows start, the entity column (its name in the files) and its type to read."""

    files: list[Path]
    offsets: list[int]
    entity: str
    entity_dtype: str | None


def _built_parts(
    cluster: Cluster,
    reads: _Reads,
    n_parts: int,
    spec: FeaturesSection,
    target: str,
    source: str,
    build_plan: BuildPlan,
) -> list[pl.DataFrame]:
    import dask
    import dask.dataframe as dd
    import pyarrow.parquet as pq
    from distributed import as_completed

    meta = pq.read_schema(reads.files[0]).empty_table().to_pandas().assign(**{ROW: pd.Series(dtype="int64")})
    if reads.entity_dtype is not None:
        meta[reads.entity] = meta[reads.entity].astype(reads.entity_dtype)
    numbered = [(str(f), offset, reads.entity, reads.entity_dtype) for f, offset in zip(reads.files, reads.offsets)]
    events = dd.from_map(_read_numbered, numbered, meta=meta, enforce_metadata=False)
    by_entity = events[events[reads.entity].notnull()].shuffle(on=reads.entity, npartitions=n_parts)
    tasks = [
        dask.delayed(_build_numbered, pure=True)(part, spec, target, source, build_plan)
        for part in by_entity.to_delayed()
    ]
    # Each part fetched as soon as it is built and let go of on its worker, which then holds one part at a time.
    futures = cluster.client.compute(tasks)
    order = {future.key: k for k, future in enumerate(futures)}
    built: list[pl.DataFrame | None] = [None] * len(futures)
    try:
        for future in as_completed(futures):
            built[order[future.key]] = future.result()
            future.release()
    finally:
        cluster.client.cancel(futures)  # a failed partition, or Ctrl-C: nothing left running
    return [table for table in built if table is not None]


def _read_numbered(part: tuple[str, int, str, str | None]) -> pd.DataFrame:
    """Runs on a worker: one part, as the in-process read gives it, with each event's row number."""
    path, offset, entity, entity_dtype = part
    frame = read_parquet_file(Path(path))
    if entity_dtype is not None:
        frame[entity] = frame[entity].astype(entity_dtype)
    frame[ROW] = range(offset, offset + len(frame))
    return frame


def _build_numbered(
    events: pd.DataFrame, spec: FeaturesSection, target: str, source: str, build_plan: BuildPlan
) -> pl.DataFrame | None:
    """Runs on a worker: one partition's rows, its events put back in file order first."""
    if events.empty:
        return None
    events = events.sort_values(ROW, kind="stable").drop(columns=ROW).reset_index(drop=True)
    return build_part(events, spec, target, source, build_plan)
