"""Folds trained across a Dask cluster's workers with `lightgbm.dask` (data-parallel: the table is read in batches,
too large to send whole to each worker).

The table's rows are cut into one contiguous block per worker; each worker reads its block from the parquet file
(or folder of parts) itself, converted by the same schema as every other read, and keeps it for the run's folds: the
table is split across the workers, never copied to each. A fold trains on the blocks' rows of its training set, and
LightGBM's data-parallel learner builds each tree from every worker's histograms.

LightGBM's Dask interface has no early stopping (LightGBM issues #3712, #2302, #6197), and its per-round
validation scores are each worker's own share of the validation rows (#4101), not the fold's. A fold therefore
trains to model.num_boost_round; then the client, which holds the fold's validation rows (a fold's share of the
table, as permutation importance holds them), scores the model at every round up to MAX_GRID rounds, or at MAX_GRID
evenly spaced rounds and then at every round around the best of them, and keeps the model at the round with the
best validation score (the first, on a tie): the rows early stopping would watch, over every round instead of until
patience runs out. The test rows are predicted by streaming them from the file, a block at a time.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from pipeline.compute.cluster import quiet_native_logs
from pipeline.core.metrics import GREATER_IS_BETTER, score
from pipeline.data.folds import Folds
from pipeline.data.schema import FeatureSchema
from pipeline.data.stream import StreamedMatrix, TableSource

from .fold import FoldOutput, FoldResult, check_deadline, inner_split, predict, predict_matrix
from .spec import TrainSpec

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

MAX_GRID = 200  # rounds scored in the first pass: each costs one prediction of the rows that choose
BEST_ITERATION_RULE = (
    "data-parallel (lightgbm.dask, which has no early stopping): each fold trained to model.num_boost_round, then "
    f"scored at every round (at most {MAX_GRID} evenly spaced rounds, then every round around the best of them) on "
    "the rows early stopping would watch (the fold's validation rows, or its inner split); the model is kept at the "
    "round with the best score"
)
_NETWORK_LINES = re.compile(
    r"^\[(machines|local_listen_port|machine_list_filename|time_out|num_machines): .*\]\n", re.M
)
# LightGBM parameters the Dask estimators set from their own arguments (or from the labels).
_SET_BY_ESTIMATOR = ("num_iterations", "num_class", "num_threads", "objective")


def train_rows_on_cluster(
    cluster: Cluster,
    X: StreamedMatrix,
    y: np.ndarray,
    folds: Folds,
    pairs: list[tuple[int, int]],
    spec: TrainSpec,
    X_test: StreamedMatrix | np.ndarray | None,
) -> Iterator[FoldOutput]:
    """Train the `pairs` folds one after another, each across every worker; yields each fold's output."""
    blocks = _blocks_on_workers(cluster, X)
    for pair in pairs:
        started = time.perf_counter()
        train_idx, valid_idx = folds.split(*pair)
        fit_idx, stop_idx = train_idx, valid_idx  # the rows trained on, and those that choose the best round
        if spec.early_stopping == "inner" and spec.early_stopping_rounds:
            fit_idx, stop_idx = inner_split(train_idx, y, spec, *pair)
        X_fit, y_fit = _fold_rows(cluster, blocks, y, _mask(len(y), fit_idx))
        booster = _fit(cluster, X_fit, y_fit, spec)
        del X_fit, y_fit
        check_deadline(spec.deadline, booster.current_iteration())
        best = booster.current_iteration()  # without early stopping, every round is kept, as in-process
        if spec.early_stopping_rounds:
            best = best_round(booster, X[stop_idx], y[stop_idx], spec)  # the stopping rows, held meanwhile
        valid_pred = predict_matrix(booster, X, valid_idx, spec.task, best)
        result = FoldResult(
            *pair,
            len(fit_idx),
            len(valid_idx),
            best,
            score(spec.metric, y[valid_idx], valid_pred),
            time.perf_counter() - started,
        )
        test_pred = None if X_test is None else predict_matrix(booster, X_test, None, spec.task, best)
        yield FoldOutput(result, booster, valid_pred, test_pred)


@dataclass(frozen=True)
class _Block:
    """Rows start:stop of the table, read and held by one worker."""

    start: int
    stop: int
    worker: str
    rows: Any  # a persisted dask array


def _blocks_on_workers(cluster: Cluster, X: StreamedMatrix) -> list[_Block]:
    """The matrix as one block of rows per worker, each read and kept by its worker."""
    import dask
    import dask.array as da

    client, source = cluster.client, X.source
    bounds = np.linspace(0, len(X), cluster.n_workers + 1).astype(int)
    # Block k on the k-th worker by address, so that each worker holds one block: the table is split, not copied.
    # (Repeated runs still differ in the last bits: lightgbm.dask ranks the machines in its own order.)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    blocks = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b == a:
            continue
        positions = X.file_positions(np.arange(a, b))
        read = dask.delayed(_read_block, pure=True)(str(source.path), source.name, X.schema, X.batch_rows, positions)
        rows = da.from_delayed(read, shape=(b - a, X.shape[1]), dtype="float64")
        worker = workers[k % len(workers)]
        # Another worker may take the block when this one dies: the block is read again from the file.
        rows = client.persist(rows, workers=[worker], allow_other_workers=True)
        blocks.append(_Block(int(a), int(b), worker, rows))
    return blocks


def _fold_rows(cluster: Cluster, blocks: list[_Block], y: np.ndarray, mask: np.ndarray):
    """A fold's training rows and labels, each block's share computed and kept on that block's worker."""
    import dask.array as da

    client, parts, labels = cluster.client, [], []
    for block in blocks:
        keep = mask[block.start : block.stop]
        parts.append(client.persist(block.rows[keep], workers=[block.worker], allow_other_workers=True))
        label = da.from_array(y[block.start : block.stop][keep])
        labels.append(client.persist(label, workers=[block.worker], allow_other_workers=True))
    return da.concatenate(parts), da.concatenate(labels)


def _read_block(path: str, name: str, schema: FeatureSchema, batch_rows: int, positions: np.ndarray) -> np.ndarray:
    """Runs on a worker: its rows of the table as the model matrix, read a batch at a time."""
    quiet_native_logs()  # in the thread lightgbm.dask trains in next
    matrix = StreamedMatrix(TableSource(Path(path), name), schema, batch_rows, positions)
    rows = matrix[:]
    matrix.release()
    return rows


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _fit(cluster: Cluster, X_train, y_train, spec: TrainSpec) -> lgb.Booster:
    """One fold across the workers, to the round cap."""
    import lightgbm.dask as lgb_dask

    estimator = lgb_dask.DaskLGBMRegressor if spec.task == "regression" else lgb_dask.DaskLGBMClassifier
    model = estimator(client=cluster.client, **_estimator_params(spec))
    previous, quiet = lgb.basic._LOGGER, logging.getLogger("gbpipe.lightgbm.dask")
    quiet.setLevel(logging.ERROR)
    # Its notes (ports found) are not gbpipe's progress, and its one warning says that num_threads is set per worker,
    # as intended here.
    lgb.register_logger(quiet)
    try:
        model.fit(
            X_train,
            y_train,
            feature_name=list(spec.feature_names) or "auto",
            categorical_feature=list(spec.categorical) or "auto",
        )
    finally:
        lgb.register_logger(previous)
    # The network settings name this run's machines and ports: not the model's, and not worth keeping.
    return lgb.Booster(model_str=_NETWORK_LINES.sub("", model.booster_.model_to_string()))


def best_round(booster: lgb.Booster, X_valid: np.ndarray, y_valid: np.ndarray, spec: TrainSpec) -> int:
    """The round whose model scores best on the validation rows (the first on a tie), by the rule of the module."""
    total = booster.current_iteration()
    step = -(-total // MAX_GRID)
    scores: dict[int, float] = {}

    def score_rounds(rounds) -> int:
        for r in rounds:
            if r not in scores:
                scores[r] = score(spec.metric, y_valid, predict(booster, X_valid, spec.task, r))
        ordered = sorted(scores)
        values = np.array([scores[r] for r in ordered])
        return ordered[int(np.argmax(values) if GREATER_IS_BETTER[spec.metric] else np.argmin(values))]

    best = score_rounds(sorted({*range(step, total + 1, step), total}))
    if step > 1:
        best = score_rounds(range(max(1, best - step + 1), min(total, best + step - 1) + 1))
    return best


def _estimator_params(spec: TrainSpec) -> dict[str, Any]:
    params = {k: v for k, v in spec.params.items() if k not in _SET_BY_ESTIMATOR}
    # lightgbm.dask gives each worker as many threads as it has: its Dask threads, within the host's cores.
    params.update(n_estimators=spec.num_boost_round, objective=spec.params.get("objective"))
    return params
