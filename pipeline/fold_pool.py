"""Training the folds of one K-fold run in parallel worker processes.

On 2 cores, two single-threaded LightGBM processes (one fold each) finish sooner than one fold after
another with two threads: a boosting round has many short parallel sections whose synchronisation
costs more than it gains, above all on small and medium data and when other programs compete for
the cores (see bench/README.md, "CV engine").

The data is binned once in the parent (the same Dataset the sequential path uses), saved in
LightGBM's binary format and loaded by each worker, so every fold trains on identical bins.
With `deterministic=True` LightGBM's trees do not depend on the thread count, so the folds' models
and predictions are identical to training them one after another; the model text's parameter
section records the parent's num_threads so saved models are byte-identical too.

Workers are started by a fork server that has never run OpenMP: forking a process that has (this
one binned the data) can hang LightGBM in the child (LightGBM FAQ, "hangs when ... forking").
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import re
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from .cv import FoldOutput, FoldResult, TrainSpec, fit_fold
from .folds import Folds

PRELOAD = ["pipeline.cv", "pipeline.fold_pool"]
# What a worker process holds for the whole run (loaded once by `_start_worker`, not per fold).
_WORKER: dict[str, Any] = {}


def can_start_workers() -> bool:
    """Workers import the main module (as multiprocessing does); that fails for code read from stdin
    or a notebook cell, and a daemonic process (a multiprocessing.Pool worker) may not have children:
    those run folds in this process instead (same results)."""
    if multiprocessing.current_process().daemon:
        return False
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def start_fork_server() -> None:
    """Start the fork server now, so its imports overlap with the binning in this process."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


def train_folds_in_processes(full: lgb.Dataset, X: np.ndarray, y: np.ndarray, folds: Folds,
                             todo: list[tuple[int, int]], spec: TrainSpec, X_test: np.ndarray | None,
                             workers: int, finish: Callable[[FoldOutput], None]) -> None:
    """Train the `todo` folds in `workers` processes sharing spec's threads; `finish` gets each fold
    in this process as soon as it is done (so checkpoints are written as folds finish)."""
    threads = int(spec.params["num_threads"])
    worker_spec = replace(spec, params={**spec.params, "num_threads": max(1, threads // workers)})
    with tempfile.TemporaryDirectory(prefix="gbpipe-folds-") as tmp:
        folder = save_inputs(Path(tmp), full, X, y, X_test)
        start_fork_server()
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                                       initializer=_start_worker, initargs=(str(folder), worker_spec, folds))
        try:
            for pairs, fold_threads in schedule(todo, workers, threads):
                futures = [executor.submit(_train_in_worker, pair, fold_threads) for pair in pairs]
                for future in as_completed(futures):
                    result, model_text, valid_pred, test_pred = future.result()
                    booster = lgb.Booster(model_str=_record_threads(model_text, threads))
                    finish(FoldOutput(result, booster, valid_pred, test_pred))
        except BaseException:
            _stop_workers(executor)  # an error, or Ctrl-C: the other folds stop now
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def schedule(todo: list[tuple[int, int]], workers: int, threads: int) -> list[tuple[list[tuple[int, int]], int]]:
    """Batches of folds with the threads each fold gets. Folds beyond the last full round of workers
    (5 folds on 2 workers: the fifth) would train alone on one worker's share while the other cores
    idle; they run after the others, sharing all threads (starting them early would oversubscribe)."""
    tail = len(todo) % workers if len(todo) > workers else 0
    batches = [(todo[:len(todo) - tail], max(1, threads // workers))]
    if tail:
        batches.append((todo[len(todo) - tail:], max(1, threads // tail)))
    return batches


def save_inputs(folder: Path, full: lgb.Dataset, X: np.ndarray, y: np.ndarray, X_test: np.ndarray | None) -> Path:
    """The binned Dataset (LightGBM binary) and the raw matrices the workers predict from."""
    full.save_binary(str(folder / "train.bin"))
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    if X_test is not None:
        np.save(folder / "X_test.npy", X_test)
    return folder


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor (Python < 3.14) has no public way to stop running tasks.
    for process in list(getattr(executor, "_processes", {}).values()):
        process.terminate()


def _start_worker(folder: str, spec: TrainSpec, folds: Folds) -> None:
    base = Path(folder)
    _WORKER["spec"] = spec
    _WORKER["folds"] = folds
    # the same arguments as build_dataset, so the models' parameter sections match the sequential ones
    _WORKER["full"] = lgb.Dataset(str(base / "train.bin"), feature_name=list(spec.feature_names) or "auto",
                                  categorical_feature=list(spec.categorical) or "auto", params=spec.params).construct()
    _WORKER["X"] = np.load(base / "X.npy", mmap_mode="r")
    _WORKER["y"] = np.load(base / "y.npy")
    _WORKER["X_test"] = np.load(base / "X_test.npy", mmap_mode="r") if (base / "X_test.npy").exists() else None


def _train_in_worker(pair: tuple[int, int], threads: int) -> tuple[FoldResult, str, np.ndarray, np.ndarray | None]:
    repeat, fold = pair
    spec = _WORKER["spec"]
    spec = replace(spec, params={**spec.params, "num_threads": threads})
    output = fit_fold(_WORKER["full"], _WORKER["X"], _WORKER["y"], _WORKER["folds"], repeat, fold, spec,
                      _WORKER["X_test"])
    return output.result, output.booster.model_to_string(), output.valid_pred, output.test_pred


def _record_threads(model_text: str, threads: int) -> str:
    """The parameter section as the sequential run writes it (num_threads of the whole run)."""
    return re.sub(r"^\[num_threads: \d+\]$", f"[num_threads: {threads}]", model_text, count=1, flags=re.M)
