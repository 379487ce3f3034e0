"""`gbpipe predict`: apply a run's fold models to new rows, in chunks, by column name; the rows are counted in
the run's drift reference bins on the way, and a warning names the features that drift (pipeline/drift/monitor.py)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.compute.cluster import as_sent, results_in_order
from pipeline.config import ROW_ID
from pipeline.core import names
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.metrics import to_labels
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunReader, resolve_run_dir
from pipeline.data.parts import is_parquet_table, is_parted, part_files, part_offsets
from pipeline.data.read import csv_header, unreadable_parquet
from pipeline.data.schema import ConversionReport, flat_column_names, to_matrix
from pipeline.data.stream import arrow_matrix
from pipeline.drift.monitor import DriftCheck, DriftMonitor
from pipeline.engine.fitted import FittedRun, load_fold_models
from pipeline.ensemble.model import load_ensemble

from .output import output_writer

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster


def load_run(run_dir: Path, allow_version_mismatch: bool = False) -> FittedRun:
    """Load and verify (sha256) a run's models and schema: a training run's fold models, or an ensemble
    run's selected model behind the same interface."""
    return _load(RunReader(run_dir, allow_version_mismatch))


def _load(reader: RunReader) -> FittedRun:
    if reader.has("ensemble/weights.json"):
        return load_ensemble(reader)
    return load_fold_models(reader)


@dataclass
class PredictSummary:
    rows: int = 0
    conversion: ConversionReport = field(default_factory=ConversionReport)
    drift: DriftCheck | None = None  # None: the run saved no drift reference, or its check is off


def predict_file(
    run_dir: Path,
    input_path: Path,
    output_path: Path,
    chunk_size: int = 100_000,
    progress: Progress = QUIET,
    allow_version_mismatch: bool = False,
    cluster: Cluster | None = None,
) -> PredictSummary:
    """Predict every row of a CSV or parquet file (or a folder of parts) and write id + predictions: one CSV or
    parquet file, or a folder of parquet parts named after the input's when `output_path` has no suffix. On a
    `cluster`, parquet parts are predicted as tasks there (the same numbers); the files are written here."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_output_path(output_path, input_path, run_dir)
    reader = RunReader(run_dir, allow_version_mismatch)
    run = _load(reader)
    on_cluster = cluster is not None and is_parted(input_path) and is_parquet_table(input_path)  # a part a task
    monitor = DriftMonitor.for_run(reader, run.schema)
    summary = PredictSummary()
    with output_writer(output_path) as write:
        ledger = IdLedger(input_path, lambda: (c[run.id_name] for _, c in read_parts(input_path, chunk_size)))
        if on_cluster:
            frames = frames_on_cluster(cluster, run, input_path, chunk_size, summary.conversion, monitor)
        else:
            frames = _frames_here(run, input_path, chunk_size, summary, monitor)
        for part, frame in frames:
            if run.id_name in frame.columns and not run.id_is_position:
                ledger.add(frame[run.id_name])
            write(part, frame)
            summary.rows += len(frame)
            progress.say(f"predict: {summary.rows} rows")
        # raised inside the writer, so no output replaces an earlier one
        if summary.rows == 0:
            raise DataError(f"{input_path} has no rows to predict (0 data rows); give a file with rows")
        ledger.check(run.id_name)
    _warn(summary, input_path)
    if monitor is not None:
        summary.drift = monitor.check()
        message = monitor.warning(input_path)
        if message is not None:
            warnings.warn(message, stacklevel=2)
    return summary


def _frames_here(
    run: FittedRun, input_path: Path, chunk_size: int, summary: PredictSummary, monitor: DriftMonitor | None
) -> Iterator[tuple[str, pd.DataFrame]]:
    observe = monitor.observe if monitor is not None else None
    offset = 0
    for part, chunk in read_parts(input_path, chunk_size, arrow=True):
        if len(chunk) == 0:
            continue
        yield part, predict_frame(run, chunk, str(input_path), summary.conversion, offset, observe)
        offset += len(chunk)


def frames_on_cluster(
    cluster: Cluster,
    run: FittedRun,
    input_path: Path,
    chunk_size: int,
    report: ConversionReport,
    monitor: DriftMonitor | None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each part predicted by a task on the cluster, in chunks as here (the run and the drift reference sent to every
    worker once), in part order. A task counts its rows in the reference bins; the counts add up to the in-process
    check's, since a bin count is a sum over rows."""
    files = part_files(input_path)
    offsets = part_offsets(files)
    # Tasks the scheduler can run again if a worker dies (scattered data would be lost with it).
    shared = [cluster.client.submit(as_sent, value, pure=False) for value in (run, monitor)]
    tasks = ((part, _predict_part, (*shared, str(part), offset, chunk_size)) for part, offset in zip(files, offsets))
    try:
        # Two parts per worker in flight: a part's predictions leave its worker as soon as they are written here.
        for part, (frame, part_report, counted) in results_in_order(cluster.client, tasks, 2 * cluster.n_workers):
            add_counts(report, part_report)
            report.missing_keep.extend(c for c in part_report.missing_keep if c not in report.missing_keep)
            if monitor is not None:
                monitor.counter.merge(*counted)
            if frame is not None:
                yield part.stem, frame
    finally:
        cluster.client.cancel(shared)


def _predict_part(
    run: FittedRun, monitor: DriftMonitor | None, path: str, offset: int, chunk_size: int
) -> tuple[pd.DataFrame | None, ConversionReport, tuple[list[np.ndarray], int]]:
    """Runs on a worker: one parquet part's predictions (None: no rows), chunk by chunk as predict_frame gives them
    here, with its conversion report and its rows' counts in the drift reference's bins."""
    report = ConversionReport()
    monitor = None if monitor is None else monitor.emptied()  # its own counts: the worker's copy serves every part
    observe = None if monitor is None else monitor.observe
    frames = []
    for chunk in read_chunks(Path(path), chunk_size, arrow=True):
        if len(chunk) == 0:
            continue
        frames.append(predict_frame(run, chunk, path, report, offset, observe))
        offset += len(chunk)
    counted = ([], 0) if monitor is None else (monitor.counter.counts, monitor.counter.rows)
    return (pd.concat(frames, ignore_index=True) if frames else None), report, counted


def check_output_path(output_path: Path, input_path: Path, run_dir: Path) -> None:
    """Predictions never go into a run or experiment folder (published runs are immutable; the folder
    holds LATEST and caches) nor over their input."""
    names.check_output_path(output_path, "--output", (resolve_run_dir(Path(run_dir)).parent,))
    if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
        raise ConfigError(f"--output {output_path} is the --input file; write the predictions to another file")


def predict_frame(
    run: FittedRun,
    chunk: pd.DataFrame | pa.Table,
    source: str,
    report: ConversionReport,
    offset: int = 0,
    observe: Callable[[np.ndarray, ConversionReport], None] | None = None,
) -> pd.DataFrame:
    """Predictions for one frame (or Arrow table): id, `pred` or `pred_<class>`, and `label_pred` for classifiers.
    `observe` sees the model matrix and conversion report (the drift check counts them) and must not change them."""
    _check_id_column(run, list(chunk.column_names if isinstance(chunk, pa.Table) else chunk.columns), source)
    chunk_report = ConversionReport()
    frame, X = _model_input(run, chunk, source, chunk_report)
    if run.id_is_position:
        ids = pd.Series(np.arange(offset, offset + len(frame)), name=ROW_ID)
    else:
        ids = frame[run.id_name].reset_index(drop=True)
    pred = run.predict(X)
    if observe is not None:
        observe(X, chunk_report)
    add_counts(report, chunk_report)
    out = pd.DataFrame({run.id_name: ids.to_numpy()})
    for col in run.schema.keep:
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
        elif col not in report.missing_keep:
            report.missing_keep.append(col)
    if pred.ndim == 2:
        for k, cls in enumerate(run.labels.classes):
            out[f"pred_{cls}"] = pred[:, k]
    else:
        out["pred"] = pred
    if run.task != "regression":
        out["label_pred"] = run.labels.decode(to_labels(pred))
    return out


def _check_id_column(run: FittedRun, columns: list, source: str) -> None:
    if run.id_is_position and ROW_ID in columns:
        raise DataError(
            f"{source} has a column {ROW_ID!r}, but the run was trained without data.id, so its predictions "
            f"number rows by position in a column of that name and would not match yours; retrain with "
            f"data.id = {ROW_ID!r} to key predictions by it, or rename the column"
        )
    if not run.id_is_position and run.id_name not in columns:
        raise DataError(f"{source} lacks the id column {run.id_name!r}; the run was trained with it")


def _model_input(
    run: FittedRun, chunk: pd.DataFrame | pa.Table, source: str, report: ConversionReport
) -> tuple[pd.DataFrame, np.ndarray]:
    """The chunk's frame and its model matrix. An Arrow chunk whose features are all integer and float columns
    is converted as a table read in batches is in training, straight from Arrow (data/stream.py): its frame keeps
    only the other columns (the id and data.keep). Any other chunk becomes a frame, converted by `to_matrix`."""
    if isinstance(chunk, pa.Table):
        X = arrow_matrix(run.schema, chunk, report)
        if X is not None:
            return chunk.drop_columns(list(run.schema.columns)).to_pandas(), X
        chunk = chunk.to_pandas()
    frame = flat_column_names(chunk, source)
    return frame, to_matrix(run.schema, frame, source, report)


class IdLedger:
    """The ids seen so far, kept as 64-bit hashes (8 bytes a row, where a set of the ids themselves
    takes ~80 and outgrew the chunks); a repeated hash is confirmed on the real ids before it counts."""

    def __init__(self, source: Path, read_ids: Callable[[], Iterator[pd.Series]]):
        self.source = source
        self.read_ids = read_ids  # reads the id column again, only when a hash repeats
        self.hashes: list[np.ndarray] = []

    def add(self, ids: pd.Series) -> None:
        """Refuse missing ids and ids repeated inside the chunk; remember the chunk's ids."""
        n_missing = int(ids.isna().sum())
        if n_missing:
            raise DataError(f"id column {ids.name!r} in {self.source} has {n_missing} missing values")
        text = _id_text(ids)
        repeated = pd.Series(text).duplicated().to_numpy()
        if repeated.any():
            raise DataError(
                f"id column {ids.name!r} in {self.source} has {int(repeated.sum())} duplicated values "
                f"(e.g. {sorted(set(text[repeated]))[:5]}); ids must be unique"
            )
        self.hashes.append(pd.util.hash_array(text))

    def check(self, name: str) -> None:
        """Refuse ids repeated across chunks."""
        if len(self.hashes) < 2:
            return
        every = np.concatenate(self.hashes)
        self.hashes.clear()
        every.sort()
        suspects = np.unique(every[1:][every[1:] == every[:-1]])
        if not len(suspects):
            return
        counts: dict[str, int] = {}
        for ids in self.read_ids():
            text = _id_text(ids)
            for value in text[np.isin(pd.util.hash_array(text), suspects)]:
                counts[value] = counts.get(value, 0) + 1
        repeated = {v: c for v, c in counts.items() if c > 1}
        if repeated:
            raise DataError(
                f"id column {name!r} in {self.source} has {sum(repeated.values()) - len(repeated)} "
                f"duplicated values (e.g. {sorted(repeated)[:5]}); ids must be unique"
            )


def _id_text(ids: pd.Series) -> np.ndarray:
    """Ids as text: "7" and 7 are the same id when a CSV's chunks are read with different dtypes."""
    return ids.astype(str).to_numpy(dtype=object)


def add_counts(report: ConversionReport, chunk_report: ConversionReport) -> None:
    """A chunk's conversion counts added to the whole input's."""
    for counts, chunk_counts in (
        (report.unseen_categories, chunk_report.unseen_categories),
        (report.infinite_to_nan, chunk_report.infinite_to_nan),
        (report.cast_to_numeric, chunk_report.cast_to_numeric),
    ):
        for col, n in chunk_counts.items():
            counts[col] = counts.get(col, 0) + n
    report.extra_columns = chunk_report.extra_columns


def read_parts(path: Path, chunk_size: int, arrow: bool = False) -> Iterator[tuple[str, pd.DataFrame | pa.Table]]:
    """The input in chunks of at most chunk_size rows, each with the name of the part it comes from (the file's
    stem; the parts of a folder or glob in name order)."""
    for part in part_files(path) if is_parted(path) else [path]:
        for chunk in read_chunks(part, chunk_size, arrow):
            yield part.stem, chunk


def read_chunks(path: Path, chunk_size: int, arrow: bool = False) -> Iterator[pd.DataFrame | pa.Table]:
    """Read CSV or parquet in chunks of at most chunk_size rows: pandas frames, or with `arrow` a parquet file's
    chunks as Arrow tables (`predict_frame` converts their number columns without a frame)."""
    if not path.is_file():
        raise DataError(f"input file {path} not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        # pre_buffer=False: by default pyarrow buffers every column chunk of the file up front, so
        # memory would grow with the file, not with chunk_size.
        try:
            parquet = pq.ParquetFile(path, pre_buffer=False)
            batches = parquet.iter_batches(batch_size=chunk_size)
            for batch in batches:
                yield pa.Table.from_batches([batch]) if arrow else batch.to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_parquet(path, exc) from None
        return
    if path.stat().st_size == 0:
        raise DataError(f"input file {path} is empty (0 bytes)")
    csv_header(path)
    try:
        yield from pd.read_csv(path, chunksize=chunk_size, encoding="utf-8-sig", low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"input file {path} has no columns") from None


def _warn(summary: PredictSummary, source: Path) -> None:
    conv = summary.conversion
    if conv.missing_keep:
        warnings.warn(
            f"{source} lacks {conv.missing_keep}, which the run carries into its predictions (data.keep); "
            "the predictions have the id without them",
            stacklevel=2,
        )
    if conv.extra_columns:
        warnings.warn(
            f"{source}: {len(conv.extra_columns)} columns the model does not use were dropped: "
            f"{conv.extra_columns[:10]}",
            stacklevel=2,
        )
    if conv.unseen_categories:
        warnings.warn(
            f"{source}: categories not seen in training (treated as missing), rows per column: "
            f"{conv.unseen_categories}",
            stacklevel=2,
        )
    if conv.infinite_to_nan:
        warnings.warn(f"{source}: infinite values treated as missing, per column: {conv.infinite_to_nan}", stacklevel=2)
    if conv.cast_to_numeric:
        warnings.warn(
            f"{source}: numeric columns that arrived as text were cast to numbers, values per column: "
            f"{conv.cast_to_numeric}",
            stacklevel=2,
        )
