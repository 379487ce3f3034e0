"""One fold: the binned Dataset shared by all folds, training with early stopping on a subset of it,
and the predictions of the fold's validation rows (made once, at the best iteration, and returned)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import lightgbm as lgb
import numpy as np

from pipeline.core.budget import TimeUp
from pipeline.core.metrics import lgb_metric, score, softmax_from_raw
from pipeline.data.folds import Folds
from pipeline.data.memory import release_memory
from pipeline.data.stream import StreamedMatrix

from .spec import TrainSpec
from .streamed import bin_plan, bin_rows


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
class FoldOutput:
    """One trained fold: its result, model, and predictions of its validation rows and of the test rows."""

    result: FoldResult
    booster: lgb.Booster
    valid_pred: np.ndarray
    test_pred: np.ndarray | None


def fit_fold(
    full: lgb.Dataset,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    repeat: int,
    fold: int,
    spec: TrainSpec,
    X_test: np.ndarray | None,
) -> FoldOutput:
    """Train one fold of `folds` and predict its validation rows and the test rows."""
    if isinstance(X, StreamedMatrix):
        output = _train_streamed_fold(full, X, y, folds, repeat, fold, spec)
    else:
        output = train_fold(full, y, *folds.split(repeat, fold), spec, X, repeat, fold)
    if X_test is None:
        return output
    test_pred = predict_matrix(output.booster, X_test, None, spec.task, output.result.best_iteration)
    if isinstance(X_test, StreamedMatrix):
        X_test.release()
    return replace(output, test_pred=test_pred)


def _train_streamed_fold(
    full: lgb.Dataset, X: StreamedMatrix, y: np.ndarray, folds: Folds, repeat: int, fold: int, spec: TrainSpec
) -> FoldOutput:
    """train_fold of a table read in batches, whose fold rows are many: held as int32, and the training rows let
    go once binned, so neither is held beside the booster's training state."""
    start = time.perf_counter()
    train_idx, valid_idx = folds.split(repeat, fold)
    if len(y) < 2**31:
        train_idx, valid_idx = train_idx.astype(np.int32), valid_idx.astype(np.int32)
    binned = list(fold_datasets(full, X, y, train_idx, valid_idx, spec, repeat, fold))
    del train_idx
    return _train_binned(binned, X, y, valid_idx, spec, repeat, fold, start)


def reuse_fold(
    result: FoldResult, booster: lgb.Booster, X: np.ndarray, folds: Folds, spec: TrainSpec, X_test: np.ndarray | None
) -> FoldOutput:
    """A fold finished before an interruption: its saved model predicts again."""
    _, valid_idx = folds.split(result.repeat, result.fold)
    valid_pred = predict_matrix(booster, X, valid_idx, spec.task, result.best_iteration)
    test_pred = predict_matrix(booster, X_test, None, spec.task, result.best_iteration) if X_test is not None else None
    return FoldOutput(result, booster, valid_pred, test_pred)


def build_dataset(X: np.ndarray | StreamedMatrix, y: np.ndarray, spec: TrainSpec) -> lgb.Dataset:
    """Bin the whole training matrix once; folds are subsets that share its bins. For a streamed matrix, the bins
    without the rows (engine/streamed.py): each fold bins its own rows from the file against them."""
    if isinstance(X, StreamedMatrix):
        return bin_plan(X, y, spec)
    return lgb.Dataset(
        X,
        label=y,
        feature_name=list(spec.feature_names) or "auto",
        categorical_feature=list(spec.categorical) or "auto",
        params=spec.params,
        free_raw_data=False,
    ).construct()


def train_fold(
    full: lgb.Dataset,
    y: np.ndarray,
    train_idx: np.ndarray,
    valid_idx: np.ndarray,
    spec: TrainSpec,
    X: np.ndarray,
    repeat: int = 0,
    fold: int = 0,
) -> FoldOutput:
    """Train on train_idx with early stopping on valid_idx (or on an inner split of train_idx); the output
    carries the validation rows' predictions made to score the fold, so no caller predicts them again."""
    start = time.perf_counter()
    binned = list(fold_datasets(full, X, y, train_idx, valid_idx, spec, repeat, fold))
    return _train_binned(binned, X, y, valid_idx, spec, repeat, fold, start)


def _train_binned(
    binned: list, X: np.ndarray, y: np.ndarray, valid_idx: np.ndarray, spec: TrainSpec, repeat: int, fold: int, start
) -> FoldOutput:
    """Train on `binned` (fold_datasets' output, taken out of the list: the caller holds no Dataset once the
    booster is trained) and score the validation rows; `start` is when the fold began (time.perf_counter)."""
    train_set, valid_set, n_fit = binned
    binned.clear()
    _, feval = lgb_metric(spec.task, spec.metric)
    callbacks = [early_stopper(spec)] if spec.early_stopping_rounds else []
    if spec.deadline is not None:
        callbacks.append(deadline_stopper(spec.deadline))
    booster = lgb.train(
        spec.params,
        train_set,
        num_boost_round=spec.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        feval=feval,
        callbacks=callbacks,
    )
    del train_set, valid_set  # a streamed table's fold holds its own bins: gone before its rows are predicted
    if isinstance(X, StreamedMatrix):
        release_memory()
    result, valid_pred = score_fold(booster, X, y, valid_idx, spec, repeat, fold, n_fit, start)
    if isinstance(X, StreamedMatrix):
        X.release()  # the last row group read, and what reading them left in the allocators
    return FoldOutput(result, booster, valid_pred, None)


def fold_datasets(
    full: lgb.Dataset,
    X: np.ndarray | StreamedMatrix,
    y: np.ndarray,
    train_idx: np.ndarray,
    valid_idx: np.ndarray,
    spec: TrainSpec,
    repeat: int,
    fold: int,
) -> tuple[lgb.Dataset, lgb.Dataset, int]:
    """The fold's training and early-stopping rows, binned (subsets of the binned data, or for a streamed
    matrix read from the file against its bin plan), and the training row count."""
    stop_idx, fit_idx = valid_idx, train_idx
    if spec.early_stopping == "inner" and spec.early_stopping_rounds:
        fit_idx, stop_idx = inner_split(train_idx, y, spec, repeat, fold)
    if isinstance(X, StreamedMatrix):
        fit_set = bin_rows(full, X, y, fit_idx, spec)
        return fit_set, bin_rows(fit_set, X, y, stop_idx, spec), len(fit_idx)
    return subset(full, fit_idx), subset(full, stop_idx), len(fit_idx)


def subset(full: lgb.Dataset, rows: np.ndarray) -> lgb.Dataset:
    """Rows of the binned data, as `Dataset.subset` gives them. That keeps `sorted(rows)`, a Python list of about 40
    bytes a row (hundreds of MB per fold of a table of millions of rows); a sorted int32 array holds the same."""
    part = full.subset(rows[:0])
    part.used_indices = np.sort(rows).astype(np.int32)
    return part


def early_stopper(spec: TrainSpec) -> Callable:
    return lgb.early_stopping(spec.early_stopping_rounds, first_metric_only=True, verbose=False)


def deadline_stopper(deadline: float) -> Callable:
    """A callback that abandons the fold (TimeUp) once a round ends past `deadline`."""

    def check(env: lgb.callback.CallbackEnv) -> None:
        check_deadline(deadline, env.iteration + 1)

    return check


def check_deadline(deadline: float | None, rounds: int) -> None:
    if deadline is not None and time.time() > deadline:
        raise TimeUp(f"a fold passed the time budget's deadline after {rounds} rounds and was abandoned")


def score_fold(
    booster: lgb.Booster,
    X: np.ndarray,
    y: np.ndarray,
    valid_idx: np.ndarray,
    spec: TrainSpec,
    repeat: int,
    fold: int,
    n_fit: int,
    start: float,
) -> tuple[FoldResult, np.ndarray]:
    """Predict the fold's validation rows at the best iteration and score them."""
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    valid_pred = predict_matrix(booster, X, valid_idx, spec.task, best)
    result = FoldResult(
        repeat,
        fold,
        n_fit,
        len(valid_idx),
        int(best),
        score(spec.metric, y[valid_idx], valid_pred),
        time.perf_counter() - start,
    )
    return result, valid_pred


def inner_split(train_idx: np.ndarray, y: np.ndarray, spec: TrainSpec, repeat: int, fold: int):
    """Hold out part of a fold's training rows for early stopping, so the scored rows stay unseen."""
    from sklearn.model_selection import train_test_split

    stratify = y[train_idx] if spec.task != "regression" else None
    fit_idx, stop_idx = train_test_split(
        train_idx, test_size=spec.inner_valid_fraction, random_state=spec.seed + 1000 * repeat + fold, stratify=stratify
    )
    return np.sort(fit_idx), np.sort(stop_idx)


def predict_matrix(
    booster: lgb.Booster, X: np.ndarray | StreamedMatrix, rows: np.ndarray | None, task: str, num_iteration: int
) -> np.ndarray:
    """`predict` of the rows `rows` of X (None: all); a streamed X is predicted a block at a time, which gives the
    same numbers (each row's prediction is its own)."""
    if not isinstance(X, StreamedMatrix):
        return predict(booster, X if rows is None else X[rows], task, num_iteration)
    parts = [predict(booster, block, task, num_iteration) for block in X.blocks(rows)]
    return np.concatenate(parts) if parts else predict(booster, np.empty((0, X.shape[1])), task, num_iteration)


def predict(booster: lgb.Booster, X: np.ndarray, task: str, num_iteration: int) -> np.ndarray:
    """Probabilities of the positive class, class probabilities, or values."""
    if task == "multiclass":
        raw = booster.predict(X, num_iteration=num_iteration, raw_score=True)
        return softmax_from_raw(np.asarray(raw).reshape(len(X), -1))
    return np.asarray(booster.predict(X, num_iteration=num_iteration))
