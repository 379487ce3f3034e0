"""The K-fold out-of-fold LightGBM engine.

The training matrix is binned once into one LightGBM Dataset; each fold trains on a subset of
it (as `lightgbm.cv` does), early-stops, and predicts its validation rows and the test rows.
Folds train one after another, or several at once in threads that share the thread budget
(`TrainSpec.fold_workers`, pipeline/fold_pool.py); the results are identical.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from .folds import Folds
from .metrics import lgb_metric, score, softmax_from_raw

DEFAULT_PARAMS = {"learning_rate": 0.05, "num_leaves": 31, "verbose": -1, "deterministic": True,
                  "force_col_wise": True}
OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TrainSpec:
    """Everything the engine needs to train one fold, resolved from the config."""

    task: str
    metric: str
    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int | None
    early_stopping: str = "fold"
    inner_valid_fraction: float = 0.1
    num_class: int = 1
    feature_names: tuple[str, ...] = ()
    categorical: tuple[int, ...] = ()
    seed: int = 42
    fold_workers: int = 1  # folds training at once: 1 one after another, 0 auto (see fold_workers)


def resolve_params(task: str, metric: str, params: dict[str, Any], num_class: int, seed: int,
                   num_threads: int) -> dict[str, Any]:
    """LightGBM parameters: defaults, then the user's, then what the task fixes."""
    lgb_name, _ = lgb_metric(task, metric)
    resolved = {**DEFAULT_PARAMS, "objective": OBJECTIVE[task], "seed": seed, **params}
    resolved["metric"] = lgb_name
    resolved["num_threads"] = min(num_threads or available_cores(), available_cores())
    if "force_row_wise" in params:
        resolved.pop("force_col_wise", None)
    if task == "multiclass":
        resolved["num_class"] = num_class
    return resolved


@dataclass(frozen=True)
class FoldResult:
    repeat: int
    fold: int
    n_train: int
    n_valid: int
    best_iteration: int
    score: float
    seconds: float


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

    @property
    def fold_scores(self) -> list[float]:
        return [f.score for f in self.folds]

    @property
    def best_iterations(self) -> list[int]:
        return [f.best_iteration for f in self.folds]


FoldCallback = Callable[[FoldResult, lgb.Booster], None]


@dataclass(frozen=True)
class FoldOutput:
    """One trained fold: its result, model, and predictions of its validation rows and of the test rows."""

    result: FoldResult
    booster: lgb.Booster
    valid_pred: np.ndarray
    test_pred: np.ndarray | None


def run_cv(X: np.ndarray, y: np.ndarray, folds: Folds, spec: TrainSpec, X_test: np.ndarray | None = None,
           completed: dict[tuple[int, int], tuple[FoldResult, lgb.Booster]] | None = None,
           on_fold_done: FoldCallback | None = None) -> CVResult:
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

    workers = fold_workers(spec, len(todo))
    full = build_dataset(X, y, spec) if todo else None
    if workers > 1:
        from .fold_pool import train_folds_in_threads

        train_folds_in_threads(full, X, y, folds, todo, spec, X_test, workers, finish)
    else:
        for repeat, fold in todo:
            finish(fit_fold(full, X, y, folds, repeat, fold, spec, X_test))
    for pair, (result, booster) in completed.items():
        outputs[pair] = reuse_fold(result, booster, X, folds, spec, X_test)
    return combine(folds, spec, y, [outputs[pair] for pair in folds.pairs()])


def fold_workers(spec: TrainSpec, n_folds: int) -> int:
    """How many folds train at once, one LightGBM thread each, within the spec's num_threads.
    0 (auto): one per thread. Measured by bench/bench_cv.py on 2 cores, two single-threaded folds side
    by side beat one 2-thread fold after another on adult and on 200k x 50 (bench/README.md)."""
    from .fold_pool import can_share_threads

    threads = int(spec.params.get("num_threads") or 1)
    wanted = spec.fold_workers or threads
    workers = max(1, min(wanted, threads, n_folds))
    return workers if workers == 1 or can_share_threads() else 1


def fit_fold(full: lgb.Dataset, X: np.ndarray, y: np.ndarray, folds: Folds, repeat: int, fold: int,
             spec: TrainSpec, X_test: np.ndarray | None) -> FoldOutput:
    """Train one fold and predict its validation rows and the test rows."""
    train_idx, valid_idx = folds.split(repeat, fold)
    booster, result, valid_pred = _train_fold(full, y, train_idx, valid_idx, spec, X, repeat, fold)
    test_pred = predict(booster, X_test, spec.task, result.best_iteration) if X_test is not None else None
    return FoldOutput(result, booster, valid_pred, test_pred)


def reuse_fold(result: FoldResult, booster: lgb.Booster, X: np.ndarray, folds: Folds, spec: TrainSpec,
               X_test: np.ndarray | None) -> FoldOutput:
    """A fold finished before an interruption: its saved model predicts again."""
    _, valid_idx = folds.split(result.repeat, result.fold)
    valid_pred = predict(booster, X[valid_idx], spec.task, result.best_iteration)
    test_pred = predict(booster, X_test, spec.task, result.best_iteration) if X_test is not None else None
    return FoldOutput(result, booster, valid_pred, test_pred)


def combine(folds: Folds, spec: TrainSpec, y: np.ndarray, outputs: list[FoldOutput]) -> CVResult:
    """OOF predictions (averaged over repeats, in fold order so sums are reproducible) and test predictions."""
    width = spec.num_class if spec.task == "multiclass" else 1
    oof_sum = np.zeros((len(y), width))
    oof_count = np.zeros(len(y))
    for output in outputs:
        _, valid_idx = folds.split(output.result.repeat, output.result.fold)
        oof_sum[valid_idx] += output.valid_pred.reshape(len(valid_idx), width)
        oof_count[valid_idx] += 1
    validated = oof_count > 0
    oof = np.full_like(oof_sum, np.nan)
    oof[validated] = oof_sum[validated] / oof_count[validated, None]
    oof = oof if width > 1 else oof[:, 0]
    results = [o.result for o in outputs]
    models = [o.booster for o in outputs]
    test_preds = [o.test_pred for o in outputs if o.test_pred is not None]
    return CVResult(oof_pred=oof, oof_score=score(spec.metric, y[validated], oof[validated]),
                    folds=tuple(results), models=tuple(models),
                    test_pred=np.mean(test_preds, axis=0) if test_preds else None,
                    test_pred_folds=tuple(test_preds), importance=fold_importance(models, results, spec))


def build_dataset(X: np.ndarray, y: np.ndarray, spec: TrainSpec) -> lgb.Dataset:
    """Bin the whole training matrix once; folds are subsets that share its bins."""
    return lgb.Dataset(X, label=y, feature_name=list(spec.feature_names) or "auto",
                       categorical_feature=list(spec.categorical) or "auto",
                       params=spec.params, free_raw_data=False).construct()


def train_fold(full: lgb.Dataset, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
               spec: TrainSpec, X: np.ndarray, repeat: int = 0, fold: int = 0) -> tuple[lgb.Booster, FoldResult]:
    """Train on train_idx with early stopping on valid_idx (or on an inner split of train_idx)."""
    booster, result, _ = _train_fold(full, y, train_idx, valid_idx, spec, X, repeat, fold)
    return booster, result


def _train_fold(full: lgb.Dataset, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
                spec: TrainSpec, X: np.ndarray, repeat: int, fold: int) -> tuple[lgb.Booster, FoldResult, np.ndarray]:
    """train_fold, also returning the validation rows' predictions (made once, to score the fold)."""
    start = time.perf_counter()
    train_set, valid_set, n_fit = fold_datasets(full, y, train_idx, valid_idx, spec, repeat, fold)
    _, feval = lgb_metric(spec.task, spec.metric)
    callbacks = [early_stopper(spec)] if spec.early_stopping_rounds else []
    booster = lgb.train(spec.params, train_set, num_boost_round=spec.num_boost_round,
                        valid_sets=[valid_set], valid_names=["valid"], feval=feval, callbacks=callbacks)
    result, valid_pred = score_fold(booster, X, y, valid_idx, spec, repeat, fold, n_fit, start)
    return booster, result, valid_pred


def fold_datasets(full: lgb.Dataset, y: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
                  spec: TrainSpec, repeat: int, fold: int) -> tuple[lgb.Dataset, lgb.Dataset, int]:
    """The fold's training and early-stopping subsets of the binned data, and the training row count."""
    stop_idx, fit_idx = valid_idx, train_idx
    if spec.early_stopping == "inner" and spec.early_stopping_rounds:
        fit_idx, stop_idx = inner_split(train_idx, y, spec, repeat, fold)
    return full.subset(fit_idx), full.subset(stop_idx), len(fit_idx)


def early_stopper(spec: TrainSpec) -> Callable:
    return lgb.early_stopping(spec.early_stopping_rounds, first_metric_only=True, verbose=False)


def score_fold(booster: lgb.Booster, X: np.ndarray, y: np.ndarray, valid_idx: np.ndarray, spec: TrainSpec,
               repeat: int, fold: int, n_fit: int, start: float) -> tuple[FoldResult, np.ndarray]:
    """Predict the fold's validation rows at the best iteration and score them."""
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    valid_pred = predict(booster, X[valid_idx], spec.task, best)
    result = FoldResult(repeat, fold, n_fit, len(valid_idx), int(best),
                        score(spec.metric, y[valid_idx], valid_pred), time.perf_counter() - start)
    return result, valid_pred


def inner_split(train_idx: np.ndarray, y: np.ndarray, spec: TrainSpec, repeat: int, fold: int):
    """Hold out part of a fold's training rows for early stopping, so the scored rows stay unseen."""
    from sklearn.model_selection import train_test_split

    stratify = y[train_idx] if spec.task != "regression" else None
    fit_idx, stop_idx = train_test_split(train_idx, test_size=spec.inner_valid_fraction,
                                         random_state=spec.seed + 1000 * repeat + fold, stratify=stratify)
    return np.sort(fit_idx), np.sort(stop_idx)


def predict(booster: lgb.Booster, X: np.ndarray, task: str, num_iteration: int) -> np.ndarray:
    """Probabilities of the positive class, class probabilities, or values."""
    if task == "multiclass":
        raw = booster.predict(X, num_iteration=num_iteration, raw_score=True)
        return softmax_from_raw(np.asarray(raw).reshape(len(X), -1))
    return np.asarray(booster.predict(X, num_iteration=num_iteration))


def fold_importance(models: list[lgb.Booster], results: list[FoldResult], spec: TrainSpec) -> pd.DataFrame:
    """Gain and split importance of each fold model at its best iteration (long format)."""
    frames = []
    for booster, result in zip(models, results):
        frames.append(pd.DataFrame({
            "repeat": result.repeat, "fold": result.fold, "feature": booster.feature_name(),
            "gain": booster.feature_importance("gain", iteration=result.best_iteration),
            "split": booster.feature_importance("split", iteration=result.best_iteration).astype("int64")}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
