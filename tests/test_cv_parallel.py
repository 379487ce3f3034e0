"""Folds trained in worker processes give exactly what training them one after another gives."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets as skd

from pipeline.cli import main
from pipeline.data.folds import make_folds
from pipeline.engine.cv import fold_workers, run_cv
from pipeline.engine.spec import TrainSpec, available_cores, resolve_params
from tests.helpers.configs import write_config

pytestmark = pytest.mark.skipif(available_cores() < 2, reason="parallel folds need 2 cores")


def spec_for(task: str, metric: str, num_class: int = 1, **changes) -> TrainSpec:
    params = resolve_params(task, metric, {"learning_rate": 0.2, "num_leaves": 7}, num_class, 42, 2)
    return replace(
        TrainSpec(task, metric, params, num_boost_round=60, early_stopping_rounds=10, num_class=num_class), **changes
    )


CASES = {  # real bundled datasets; the multiclass case uses a custom metric (a Python feval in the workers)
    "binary": (skd.load_breast_cancer, "binary", "auc", 1, "stratified"),
    "multiclass": (skd.load_wine, "multiclass", "f1_macro", 3, "stratified"),
    "regression": (skd.load_diabetes, "regression", "rmse", 1, "kfold"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parallel_folds_equal_sequential_folds(case):
    load, task, metric, num_class, splitter = CASES[case]
    X, y = load(return_X_y=True)
    X, y = X.astype("float64"), y.astype("float64")
    X_test = X[::7] * 1.01
    folds = make_folds(splitter, 4, 2, 7, y)  # two repeats: OOF averages two predictions per row
    early = "inner" if case == "regression" else "fold"
    spec = spec_for(task, metric, num_class, early_stopping=early)
    assert fold_workers(replace(spec, fold_workers=2), len(folds.pairs())) == 2
    done = []
    parallel = run_cv(
        X,
        y,
        folds,
        replace(spec, fold_workers=2),
        X_test,
        on_fold_done=lambda result, booster: done.append((result.repeat, result.fold)),
    )
    sequential = run_cv(X, y, folds, replace(spec, fold_workers=1), X_test)
    assert sorted(done) == folds.pairs()  # each fold reported once, in this process
    assert np.array_equal(parallel.oof_pred, sequential.oof_pred)
    assert np.array_equal(parallel.test_pred, sequential.test_pred)
    assert all(np.array_equal(a, b) for a, b in zip(parallel.test_pred_folds, sequential.test_pred_folds))
    assert parallel.oof_score == sequential.oof_score
    assert [(f.repeat, f.fold, f.best_iteration, f.score) for f in parallel.folds] == [
        (f.repeat, f.fold, f.best_iteration, f.score) for f in sequential.folds
    ]
    assert [m.model_to_string() for m in parallel.models] == [m.model_to_string() for m in sequential.models]
    assert parallel.importance.equals(sequential.importance)


def test_parallel_resume_trains_only_the_missing_folds():
    X, y = skd.load_breast_cancer(return_X_y=True)
    y = y.astype("float64")
    folds = make_folds("stratified", 4, 1, 7, y)
    spec = spec_for("binary", "auc", fold_workers=2)
    first = run_cv(X, y, folds, spec)
    completed = {(0, k): (first.folds[k], first.models[k]) for k in (0, 2)}
    trained = []
    resumed = run_cv(
        X, y, folds, spec, completed=completed, on_fold_done=lambda result, booster: trained.append(result.fold)
    )
    assert sorted(trained) == [1, 3]
    assert np.array_equal(resumed.oof_pred, first.oof_pred)


def test_train_stage_files_are_byte_identical_with_parallel_folds(tmp_path: Path, adult_small: Path):
    """`gbpipe train` with 2 fold workers writes the same oof, test predictions and fold models."""
    config = write_config(
        tmp_path,
        data={
            "train": str(adult_small),
            "split_column": "split",
            "target": "income",
            "task": "binary",
            "positive_label": ">50K",
        },
    )
    runs = {}
    for workers in (2, 1):
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(config),
                    "-q",
                    "--run-id",
                    f"w{workers}",
                    "--set",
                    "model.num_threads=2",
                    "--set",
                    f"model.fold_workers={workers}",
                ]
            )
            == 0
        )
        runs[workers] = tmp_path / "runs" / "exp" / f"w{workers}"
    names = (
        ["oof.parquet", "test_pred.parquet", "importance.parquet"]
        + [f"models/fold_{k}.txt" for k in range(5)]
        + [f"models/fold_{k}.json" for k in range(5)]
    )
    for name in names:
        a, b = (runs[2] / name).read_bytes(), (runs[1] / name).read_bytes()
        if name.endswith(".json"):  # a fold's result holds its fit seconds, which differ
            a, b = _without_seconds(a), _without_seconds(b)
        assert a == b, name


def _without_seconds(data: bytes) -> dict:
    return {k: v for k, v in json.loads(data).items() if k != "seconds"}


def test_an_error_in_a_helper_thread_reaches_the_caller_and_the_thread_cap_is_restored(monkeypatch):
    from pipeline.engine import _fold_pool as fold_pool

    X, y = skd.load_breast_cancer(return_X_y=True)
    y = y.astype("float64")
    folds = make_folds("stratified", 4, 1, 7, y)
    before = fold_pool._max_threads()
    real_step = fold_pool.FoldTask.step

    def failing_step(task):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"fold {task.pair[1]} broke")
        real_step(task)

    monkeypatch.setattr(fold_pool.FoldTask, "step", failing_step)
    with pytest.raises(RuntimeError, match="fold . broke"):
        run_cv(X, y, folds, spec_for("binary", "auc", fold_workers=2))
    assert fold_pool._max_threads() == before
    assert [t for t in threading.enumerate() if t.name.startswith("gbpipe-fold-")] == []


def test_parallel_folds_run_sequentially_off_the_main_thread():
    """The thread cap is process-wide, so a caller's own thread gets folds one after another."""
    spec = spec_for("binary", "auc", fold_workers=2)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(fold_workers(spec, 4)))
    worker.start()
    worker.join()
    assert seen == [1] and fold_workers(spec, 4) == 2
