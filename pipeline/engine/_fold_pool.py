"""Training the folds of one K-fold run side by side, in threads that share the thread budget.

On 2 cores, a boosting round has many short parallel sections whose synchronisation costs more than
it gains: two single-threaded folds side by side finish sooner than the same folds one after another
with two threads each (bench/README.md, "CV engine"). LightGBM releases the GIL while it trains and
predicts, so threads do this without starting processes or copying data: every fold trains on a
subset of the one binned Dataset, as the sequential path does.

Two LightGBM facts shape the code:
- The thread count is process-wide: LGBM_SetMaxThreads caps every booster at once. While several
  folds train the cap is 1; each booster keeps its num_threads parameter, so the model text is that of
  a sequential run, and with deterministic=True the trees do not depend on the thread count.
- An OpenMP team started from a thread other than the main one trained several times slower with 2
  threads (libgomp; bench/README.md, "CV engine"), so the fold left alone at the end moves to the
  main thread, which finishes it with the whole budget. A fold is a resumable state (booster and
  early-stopping state) advanced one round at a time, as `lightgbm.train` advances it, so it can
  change threads between rounds.
"""

from __future__ import annotations

import copy
import ctypes
import threading
import time
from collections import deque
from collections.abc import Callable

import lightgbm as lgb
import numpy as np

from pipeline.core.metrics import lgb_metric
from pipeline.data.folds import Folds

from .fold import FoldOutput, check_deadline, early_stopper, fold_datasets, predict_matrix, score_fold
from .spec import TrainSpec


def can_share_threads() -> bool:
    """The cap is process-wide: only the main thread may set it (a caller's own threads could be
    training other models), and only a LightGBM that has it (4.2 and later)."""
    return threading.current_thread() is threading.main_thread() and hasattr(lgb.basic._LIB, "LGBM_SetMaxThreads")


def _max_threads() -> int:
    value = ctypes.c_int(0)
    lgb.basic._LIB.LGBM_GetMaxThreads(ctypes.byref(value))
    return value.value


def _set_max_threads(n: int) -> None:
    lgb.basic._LIB.LGBM_SetMaxThreads(ctypes.c_int(n))


class FoldTask:
    """One fold's training, advanced a round at a time exactly as `lightgbm.train` advances it."""

    def __init__(
        self, full: lgb.Dataset, X: np.ndarray, y: np.ndarray, folds: Folds, pair: tuple[int, int], spec: TrainSpec
    ):
        self.pair, self.spec, self.start = pair, spec, time.perf_counter()
        train_idx, self.valid_idx = folds.split(*pair)
        train_set, valid_set, self.n_fit = fold_datasets(full, X, y, train_idx, self.valid_idx, spec, *pair)
        self.params = {**copy.deepcopy(spec.params), "num_iterations": spec.num_boost_round}
        train_set._update_params(self.params)
        valid_set._update_params(self.params).set_reference(train_set)
        try:
            self.booster = lgb.Booster(params=self.params, train_set=train_set)
            self.booster.add_valid(valid_set, "valid")
        finally:
            train_set._reverse_update_params()
            valid_set._reverse_update_params()
        self.booster.best_iteration = 0
        self.stopper = early_stopper(spec) if spec.early_stopping_rounds else None
        self.feval = lgb_metric(spec.task, spec.metric)[1]
        self.iteration, self.done = 0, False

    def step(self) -> None:
        """One boosting round, its evaluation and the early-stopping check."""
        self.booster.update()
        evaluations = self.booster.eval_valid(self.feval)
        self.iteration += 1
        check_deadline(self.spec.deadline, self.iteration)
        if self.stopper is not None:
            env = lgb.callback.CallbackEnv(
                model=self.booster,
                params=self.params,
                iteration=self.iteration - 1,
                begin_iteration=0,
                end_iteration=self.spec.num_boost_round,
                evaluation_result_list=evaluations,
            )
            try:
                self.stopper(env)
            except lgb.callback.EarlyStopException as stop:
                self.booster.best_iteration = stop.best_iteration + 1
                self.done = True
        self.done = self.done or self.iteration >= self.spec.num_boost_round

    def output(self, X: np.ndarray, y: np.ndarray, X_test: np.ndarray | None) -> FoldOutput:
        """The trained fold, as `fit_fold` returns it (the booster reloaded from its text, as lightgbm.train does)."""
        self.booster.model_from_string(self.booster.model_to_string()).free_dataset()
        result, valid_pred = score_fold(
            self.booster, X, y, self.valid_idx, self.spec, *self.pair, self.n_fit, self.start
        )
        test_pred = None
        if X_test is not None:
            test_pred = predict_matrix(self.booster, X_test, None, self.spec.task, result.best_iteration)
        return FoldOutput(result, self.booster, valid_pred, test_pred)


class Board:
    """What the threads share: folds not started, folds parked between threads, finished outputs."""

    def __init__(self, todo: list[tuple[int, int]], new_task: Callable[[tuple[int, int]], FoldTask]):
        self.new_task = new_task
        self.pending = deque(todo)
        self.parked: deque[FoldTask] = deque()
        self.outputs: deque[FoldOutput] = deque()
        self.unfinished = len(todo)
        self.error: BaseException | None = None
        self.stopped = False
        self.changed = threading.Condition()

    def take(self, main: bool) -> FoldTask | None:
        """A fold to advance, or None when there is nothing for this thread. Helpers leave the last
        fold to the main thread; the main thread waits while the helpers hold every fold."""
        with self.changed:
            while True:
                if self.stopped or self.unfinished == 0 or (not main and self.unfinished < 2):
                    return None
                if self.parked:
                    return self.parked.popleft()
                if self.pending:
                    pair = self.pending.popleft()
                    break
                if not main:
                    return None
                self.changed.wait()
        return self.new_task(pair)  # built outside the lock: constructing the fold's subsets takes a while

    def give_back(self, task: FoldTask) -> None:
        with self.changed:
            self.parked.append(task)
            self.changed.notify_all()

    def finished(self, output: FoldOutput | None, error: BaseException | None = None) -> None:
        with self.changed:
            self.unfinished -= 1
            if output is not None:
                self.outputs.append(output)
            if error is not None and self.error is None:
                self.error, self.stopped = error, True
            self.changed.notify_all()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


def train_folds_in_threads(
    full: lgb.Dataset,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    todo: list[tuple[int, int]],
    spec: TrainSpec,
    X_test: np.ndarray | None,
    workers: int,
    finish: Callable[[FoldOutput], None],
) -> None:
    """Train the `todo` folds in `workers` threads (this one included) at one LightGBM thread each;
    `finish` gets each fold in this thread as soon as it is done (checkpoints are written as folds finish)."""
    board = Board(todo, lambda pair: FoldTask(full, X, y, folds, pair, spec))
    helpers = [
        threading.Thread(target=_help, args=(board, X, y, X_test), daemon=True, name=f"gbpipe-fold-{k}")
        for k in range(1, workers)
    ]
    previous = _max_threads()
    _set_max_threads(1)
    try:
        for helper in helpers:
            helper.start()
        _work(board, X, y, X_test, finish, previous)
    except BaseException:
        board.stop()  # an error, or Ctrl-C: the helpers stop after their current round
        raise
    finally:
        for helper in helpers:
            helper.join()
        _set_max_threads(previous)


def _help(board: Board, X: np.ndarray, y: np.ndarray, X_test: np.ndarray | None) -> None:
    while (task := board.take(main=False)) is not None:
        try:
            while not task.done and board.unfinished > 1 and not board.stopped:
                task.step()
            if not task.done:
                board.give_back(task)  # alone now: the main thread finishes it with every thread
                continue
            board.finished(task.output(X, y, X_test))
        except BaseException as error:  # handed to the main thread, which raises it
            board.finished(None, error)
            return


def _work(
    board: Board,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None,
    finish: Callable[[FoldOutput], None],
    previous: int,
) -> None:
    while True:
        _flush(board, finish)
        task = board.take(main=True)
        if task is None:
            break
        alone = False
        while not task.done and not board.stopped:
            if not alone and board.unfinished == 1:
                alone = True
                _set_max_threads(previous)  # the last fold: the whole budget, in this (main) thread
            task.step()
            _flush(board, finish)
        if task.done:
            board.finished(task.output(X, y, X_test))
    _flush(board, finish)


def _flush(board: Board, finish: Callable[[FoldOutput], None]) -> None:
    if board.error is not None:
        raise board.error
    while board.outputs:
        finish(board.outputs.popleft())
