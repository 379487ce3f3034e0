"""A member family's folds trained one after another here, or as tasks on a Dask cluster (families other than
LightGBM, whose folds go through the engine's run_cv).

A fold is a pure function of the run's data, the fold and the member's fitted-in-fold template: `member_folds`
runs it here, or sends the data to the workers once (engine.cluster_folds.send_run_data, shared by every member
of the run) and submits one task per fold. Either way the folds come back in fold order with the same
predictions and model bytes; the thread count is where the fold runs, not part of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.compute.cluster import results_in_order
from pipeline.data.folds import Folds
from pipeline.data.prepare import Prepared
from pipeline.engine.cluster_folds import send_run_data
from pipeline.engine.outputs import model_name

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster


@dataclass(frozen=True)
class MemberFold:
    """One fold of a member: its validation and test predictions, its model file, its best iteration."""

    valid_pred: np.ndarray
    test_pred: np.ndarray | None
    model_file: tuple[str, bytes]
    best_iteration: int | None = None


# (X, y, folds, X_test, (repeat, fold), threads) -> the fold, trained
FoldFit = Callable[[np.ndarray, np.ndarray, Folds, "np.ndarray | None", tuple[int, int], int], MemberFold]


def member_folds(
    fit: FoldFit, prep: Prepared, threads: int, cluster: Cluster | None = None
) -> Iterator[tuple[tuple[int, int], MemberFold]]:
    """Each fold of the run's folds trained by `fit`, in fold order: here with `threads` threads, or on a cluster
    every fold at once as a task (with the threads a task may use there). `fit` must be picklable (a module-level
    function or a partial of one)."""
    pairs = prep.folds.pairs()
    if cluster is None:
        for pair in pairs:
            yield pair, fit(prep.X, prep.y, prep.folds, prep.X_test, pair, threads)
        return
    shared = send_run_data(cluster, prep.X, prep.y, prep.folds, prep.X_test)
    tasks = ((pair, fit, (*shared, pair, cluster.threads_per_task)) for pair in pairs)
    yield from results_in_order(cluster.client, tasks, len(pairs))


def sklearn_fold(
    template: Any,
    task: str,
    n_classes: int,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    X_test: np.ndarray | None,
    pair: tuple[int, int],
    threads: int,
) -> MemberFold:
    """A scikit-learn Pipeline cloned and fitted on the fold's training rows, saved with skops."""
    import skops.io as sio
    from sklearn.base import clone

    train_idx, valid_idx = folds.split(*pair)
    model = clone(template)
    with threadpool_limits(limits=threads), _n_jobs(model, threads):
        model.fit(X[train_idx], y[train_idx])
        valid_pred = predict_sklearn(model, X[valid_idx], task, n_classes)
        test_pred = predict_sklearn(model, X_test, task, n_classes) if X_test is not None else None
    name = model_name(*pair).removesuffix(".txt") + ".skops"
    return MemberFold(valid_pred, test_pred, (name, sio.dumps(model)))


def predict_sklearn(model, X: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """Values, P(positive), or n x K probabilities with columns in class-code order."""
    # A forest predicting in several threads sums its trees in the order they finish: the last bits of a
    # prediction would change from run to run. One thread sums them in tree order (fitting stays parallel).
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    jobs = getattr(estimator, "n_jobs", None)
    if jobs is not None:
        estimator.n_jobs = 1
    try:
        return _predict_sklearn(model, X, task, n_classes)
    finally:
        if jobs is not None:
            estimator.n_jobs = jobs


def _predict_sklearn(model, X: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    if task == "regression":
        return np.asarray(model.predict(X), dtype="float64")
    proba = model.predict_proba(X)
    full = np.zeros((len(X), n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba  # a class missing from a fold keeps probability 0
    return full[:, 1] if task == "binary" else full


@contextmanager
def _n_jobs(model: Any, threads: int) -> Iterator[None]:
    """The estimator fits with `threads` jobs and keeps the template's n_jobs (as saved in the model and member.json):
    a forest's trees are the same for any number of jobs."""
    estimator = model.steps[-1][1]
    saved = getattr(estimator, "n_jobs", None)
    if saved is not None:
        estimator.n_jobs = threads
    try:
        yield
    finally:
        if saved is not None:
            estimator.n_jobs = saved
