"""Folds trained as tasks on a Dask cluster (task-parallel: the table fits one worker).

The training matrix, labels, fold ids and test rows go to every worker once per run (`send_run_data`);
each worker bins them into its LightGBM Dataset at its first fold and keeps it for the run's later folds (and
a tuning study's later trials with the same binning parameters). A task trains one fold exactly as
`fit_fold` does here and sends back the fold's result, its model as LightGBM text and its predictions: the
client rebuilds the booster from the text, so a fold is byte for byte the fold the in-process engine trains
(deterministic trees do not depend on the thread count, and the run folder's model text leaves it out).

A worker that dies mid-fold is replaced by Dask and its folds rerun elsewhere: a fold is a pure function of
the run's data and the spec, so the rerun gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np

from pipeline.compute.cluster import as_sent, quiet_native_logs
from pipeline.data.folds import Folds

from ._fold_pool import _max_threads, _set_max_threads
from .fold import FoldOutput, FoldResult, build_dataset, fit_fold
from .spec import TrainSpec

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

# A worker keeps the Datasets of the newest runs or binning settings it served, for the tasks that follow.
_WORKER_DATASETS: OrderedDict[str, lgb.Dataset] = OrderedDict()
_WORKER_DATASETS_KEPT = 2
_WORKER_LOCK = threading.Lock()


def binning_key(spec: TrainSpec, names: tuple[str, ...] | None = None) -> str:
    """What a binned Dataset depends on besides the data: the spec's parameters (only `names` among them when
    the caller knows which bin), its features and categoricals."""
    params = {k: repr(v) for k, v in spec.params.items() if k != "num_threads" and (names is None or k in names)}
    doc = [sorted(params.items()), list(spec.feature_names), list(spec.categorical)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def train_on_cluster(
    cluster: Cluster,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    pairs: list[tuple[int, int]],
    spec: TrainSpec,
    X_test: np.ndarray | None,
    dataset_key: str,
    shared: list | None = None,
) -> Iterator[FoldOutput]:
    """Train the `pairs` folds as Dask tasks; yields each fold's output as it finishes (in any order). `shared` is
    `send_run_data`'s, when the caller sends the data once for many calls (a study's trials)."""
    from distributed import as_completed

    futures = submit_folds(cluster, shared or send_run_data(cluster, X, y, folds, X_test), pairs, spec, dataset_key)
    try:
        for future in as_completed(futures):
            yield fold_output(future)
    finally:
        cluster.client.cancel(futures)  # an error or Ctrl-C here: nothing left running on the workers


def submit_folds(
    cluster: Cluster, shared: list, pairs: list[tuple[int, int]], spec: TrainSpec, dataset_key: str
) -> list:
    """One task per fold of `pairs` on the data `shared` (send_run_data's); the futures, in the order of `pairs`."""
    data_key = "-".join(future.key for future in shared[:3]) + "-" + dataset_key
    task_spec = replace(spec, cluster=None)
    threads = cluster.threads_per_task
    return [
        cluster.client.submit(_fold_task, *shared, task_spec, pair, threads, data_key, pure=False) for pair in pairs
    ]


def fold_output(future) -> FoldOutput:
    """A fold task's output (waiting for it), its booster rebuilt from the model text."""
    result, model_text, valid_pred, test_pred = future.result()
    return FoldOutput(result, lgb.Booster(model_str=model_text), valid_pred, test_pred)


def send_run_data(cluster: Cluster, X: np.ndarray, y: np.ndarray, folds: Folds, X_test: np.ndarray | None) -> list:
    """The run's matrix, labels, folds and test rows for the workers (futures to pass to train_on_cluster). They are
    tasks, not scattered data: the scheduler keeps each as a task it can run again, so what a dead worker held is
    sent again, where scattered data would be lost for good. A worker fetches each once, with its first fold."""
    return cluster.hold([cluster.client.submit(as_sent, value, pure=True) for value in (X, y, folds, X_test)])


def _fold_task(
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    X_test: np.ndarray | None,
    spec: TrainSpec,
    pair: tuple[int, int],
    threads: int,
    data_key: str,
) -> tuple[FoldResult, str, np.ndarray, np.ndarray | None]:
    """Runs on a worker: one fold, as fit_fold trains it here."""
    quiet_native_logs()
    full = _worker_dataset(data_key, X, y, spec)
    previous = _max_threads()
    _set_max_threads(threads)
    try:
        output = fit_fold(full, X, y, folds, *pair, spec, X_test)
    finally:
        _set_max_threads(previous)
    return output.result, output.booster.model_to_string(), output.valid_pred, output.test_pred


def _worker_dataset(data_key: str, X: np.ndarray, y: np.ndarray, spec: TrainSpec) -> lgb.Dataset:
    with _WORKER_LOCK:
        if data_key in _WORKER_DATASETS:
            _WORKER_DATASETS.move_to_end(data_key)
            return _WORKER_DATASETS[data_key]
        full = build_dataset(X, y, spec)
        _WORKER_DATASETS[data_key] = full
        while len(_WORKER_DATASETS) > _WORKER_DATASETS_KEPT:
            _WORKER_DATASETS.popitem(last=False)
        return full
