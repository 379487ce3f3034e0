"""The K-fold out-of-fold LightGBM engine.

The training matrix is binned once into one LightGBM Dataset; each fold trains on a subset of
it (as `lightgbm.cv` does), early-stops, and predicts its validation rows and the test rows.
Folds train one after another, several at once in threads that share the thread budget
(`TrainSpec.fold_workers`, engine/_fold_pool.py), or as tasks on a Dask cluster (`TrainSpec.cluster`,
engine/cluster_folds.py); the results are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.core.cores import fold_worker_count
from pipeline.data.folds import Folds
from pipeline.data.stream import StreamedMatrix

from ._fold_pool import can_share_threads, train_folds_in_threads
from .cluster_folds import binning_key, train_on_cluster
from .cluster_rows import BEST_ITERATION_RULE, train_rows_on_cluster
from .fold import FoldOutput, FoldResult, build_dataset, fit_fold, reuse_fold
from .oof import OOFAccumulator
from .spec import TrainSpec, rows_across_workers


@dataclass(frozen=True)
class CVResult:
    """OOF and test predictions of one K-fold run, with per-fold scores and models."""

    oof_pred: np.ndarray
    oof_score: float
    folds: tuple[FoldResult, ...]
    models: tuple[lgb.Booster, ...]
    test_pred: np.ndarray | None = None
    test_pred_folds: tuple[np.ndarray, ...] = ()
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_iteration_rule: str = ""  # how each fold's best_iteration was chosen (scores.json, the report)

    @property
    def fold_scores(self) -> list[float]:
        return [f.score for f in self.folds]

    @property
    def best_iterations(self) -> list[int]:
        return [f.best_iteration for f in self.folds]


FoldCallback = Callable[[FoldResult, lgb.Booster], None]


def run_cv(
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    spec: TrainSpec,
    X_test: np.ndarray | None = None,
    completed: dict[tuple[int, int], tuple[FoldResult, lgb.Booster]] | None = None,
    on_fold_done: FoldCallback | None = None,
) -> CVResult:
    """Train one model per fold; `completed` folds (from a checkpoint) are reused, not retrained.

    Folds train one after another, or `fold_workers` at once (see there); either way the results are
    identical and `on_fold_done` runs in this thread as each fold finishes."""
    completed = completed or {}
    todo = [pair for pair in folds.pairs() if pair not in completed]
    outputs: dict[tuple[int, int], FoldOutput] = {}

    def finish(output: FoldOutput) -> None:
        outputs[(output.result.repeat, output.result.fold)] = output
        if on_fold_done is not None:
            on_fold_done(output.result, output.booster)

    if todo:
        _train_todo(X, y, folds, todo, spec, X_test, finish)
    for pair, (result, booster) in completed.items():
        outputs[pair] = reuse_fold(result, booster, X, folds, spec, X_test)
    result = combine(folds, spec, y, [outputs[pair] for pair in folds.pairs()])
    return replace(result, best_iteration_rule=best_iteration_rule(spec, rows_across_workers(spec, X)))


def best_iteration_rule(spec: TrainSpec, across_workers: bool) -> str:
    if across_workers and spec.early_stopping_rounds:
        return BEST_ITERATION_RULE
    if not spec.early_stopping_rounds:
        return f"no early stopping: every fold trained {spec.num_boost_round} rounds"
    rows = "an inner split of its training rows" if spec.early_stopping == "inner" else "its validation rows"
    return f"early stopping: each fold stopped {spec.early_stopping_rounds} rounds after its best score on {rows}"


def _train_todo(
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    todo: list[tuple[int, int]],
    spec: TrainSpec,
    X_test: np.ndarray | None,
    finish: Callable[[FoldOutput], None],
) -> None:
    """The folds not reused from a checkpoint: on the cluster, in threads here, or one after another."""
    if rows_across_workers(spec, X):  # too large to send to every worker: each fold trains across them
        trained = train_rows_on_cluster(spec.cluster, X, y, folds, todo, spec, X_test)
    elif spec.cluster is not None:
        trained = train_on_cluster(spec.cluster, X, y, folds, todo, spec, X_test, binning_key(spec))
    else:
        full = build_dataset(X, y, spec)
        workers = fold_workers(spec, len(todo), isinstance(X, StreamedMatrix))
        if workers > 1:
            train_folds_in_threads(full, X, y, folds, todo, spec, X_test, workers, finish)
            return
        trained = (fit_fold(full, X, y, folds, repeat, fold, spec, X_test) for repeat, fold in todo)
    for output in trained:
        finish(output)


def fold_workers(spec: TrainSpec, n_folds: int, streamed: bool = False) -> int:
    """How many folds train at once, one LightGBM thread each, within the spec's num_threads.
    0 (auto): one per thread. Measured by bench/bench_cv.py on 2 cores, two single-threaded folds side
    by side beat one 2-thread fold after another on adult and on 200k x 50 (bench/README.md). A table read in
    batches is one too large to hold whole: its folds train one after another, each holding its subsets alone."""
    threads = int(spec.params.get("num_threads") or 1)
    workers = fold_worker_count(threads, spec.fold_workers, n_folds, streamed)
    return workers if workers == 1 or can_share_threads() else 1


def combine(folds: Folds, spec: TrainSpec, y: np.ndarray, outputs: list[FoldOutput]) -> CVResult:
    """OOF predictions (averaged over repeats, in fold order so sums are reproducible) and test predictions."""
    oof = OOFAccumulator(len(y), spec.task, spec.num_class)
    for output in outputs:
        oof.add(folds.split(output.result.repeat, output.result.fold)[1], output.valid_pred)
    results = [o.result for o in outputs]
    models = [o.booster for o in outputs]
    test_preds = [o.test_pred for o in outputs if o.test_pred is not None]
    return CVResult(
        oof_pred=oof.mean(),
        oof_score=oof.score(spec.metric, y),
        folds=tuple(results),
        models=tuple(models),
        test_pred=np.mean(test_preds, axis=0) if test_preds else None,
        test_pred_folds=tuple(test_preds),
        importance=fold_importance(models, results, spec),
    )


def fold_importance(models: list[lgb.Booster], results: list[FoldResult], spec: TrainSpec) -> pd.DataFrame:
    """Gain and split importance of each fold model at its best iteration (long format)."""
    frames = []
    for booster, result in zip(models, results):
        frames.append(
            pd.DataFrame(
                {
                    "repeat": result.repeat,
                    "fold": result.fold,
                    "feature": booster.feature_name(),
                    "gain": booster.feature_importance("gain", iteration=result.best_iteration),
                    "split": booster.feature_importance("split", iteration=result.best_iteration).astype("int64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
