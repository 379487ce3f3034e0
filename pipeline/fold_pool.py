"""Training the folds of one K-fold run in parallel worker processes.

On 2 cores, two single-threaded LightGBM processes (one fold each) finish sooner than one fold after
another with two threads: a boosting round has many short parallel sections whose synchronisation
costs more than it gains on small and medium data (see bench/README.md, "CV engine").

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
import re
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from .cv import FoldOutput, FoldResult, TrainSpec, fit_fold
from .folds import Folds

# What a worker process holds for the whole run (loaded once by `_start_worker`, not per fold).
_WORKER: dict[str, Any] = {}


def train_folds_in_processes(full: lgb.Dataset, X: np.ndarray, y: np.ndarray, folds: Folds,
                             todo: list[tuple[int, int]], spec: TrainSpec, X_test: np.ndarray | None,
                             workers: int, finish: Callable[[FoldOutput], None]) -> None:
    """Train the `todo` folds in `workers` processes sharing spec's threads; `finish` gets each fold
    in this process as soon as it is done (so checkpoints are written as folds finish)."""
    threads = int(spec.params["num_threads"])
    worker_spec = replace(spec, params={**spec.params, "num_threads": max(1, threads // workers)})
    with tempfile.TemporaryDirectory(prefix="gbpipe-folds-") as tmp:
        folder = Path(tmp)
        full.save_binary(str(folder / "train.bin"))
        np.save(folder / "X.npy", X)
        np.save(folder / "y.npy", y)
        if X_test is not None:
            np.save(folder / "X_test.npy", X_test)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pipeline.cv", "pipeline.fold_pool"])
        pool = context.Pool(workers, initializer=_start_worker, initargs=(str(folder), worker_spec, folds))
        try:
            for result, model_text, valid_pred, test_pred in pool.imap_unordered(_train_in_worker, todo):
                booster = lgb.Booster(model_str=_record_threads(model_text, threads))
                finish(FoldOutput(result, booster, valid_pred, test_pred))
            pool.close()
        finally:
            pool.terminate()  # on an error or Ctrl-C, stop the other folds now
            pool.join()


def _start_worker(folder: str, spec: TrainSpec, folds: Folds) -> None:
    base = Path(folder)
    _WORKER["spec"] = spec
    _WORKER["folds"] = folds
    _WORKER["full"] = lgb.Dataset(str(base / "train.bin"), params=spec.params).construct()
    _WORKER["X"] = np.load(base / "X.npy", mmap_mode="r")
    _WORKER["y"] = np.load(base / "y.npy")
    _WORKER["X_test"] = np.load(base / "X_test.npy", mmap_mode="r") if (base / "X_test.npy").exists() else None


def _train_in_worker(pair: tuple[int, int]) -> tuple[FoldResult, str, np.ndarray, np.ndarray | None]:
    repeat, fold = pair
    output = fit_fold(_WORKER["full"], _WORKER["X"], _WORKER["y"], _WORKER["folds"], repeat, fold,
                      _WORKER["spec"], _WORKER["X_test"])
    return output.result, output.booster.model_to_string(), output.valid_pred, output.test_pred


def _record_threads(model_text: str, threads: int) -> str:
    """The parameter section as the sequential run writes it (num_threads of the whole run)."""
    return re.sub(r"^\[num_threads: \d+\]$", f"[num_threads: {threads}]", model_text, count=1, flags=re.M)
