"""Scoring one parameter set: every fold of the experiment's saved folds with early stopping, the running
OOF score reported after each fold (so a hopeless trial is pruned), and the full OOF score returned.
The binned data is reused across trials: one LightGBM Dataset per distinct binning parameters."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import lightgbm as lgb
import optuna

from pipeline.data.prepare import Prepared
from pipeline.engine.cluster_folds import binning_key, fold_output, send_run_data, submit_folds
from pipeline.engine.fold import FoldOutput, build_dataset, train_fold
from pipeline.engine.oof import OOFAccumulator
from pipeline.engine.spec import TrainSpec

from .space import aliases

# LightGBM parameters fixed when a Dataset is binned: trials differing only elsewhere share one Dataset.
DATASET_PARAMS = (
    "max_bin",
    "max_bin_by_feature",
    "min_data_in_bin",
    "bin_construct_sample_cnt",
    "data_random_seed",
    "use_missing",
    "zero_as_missing",
    "feature_pre_filter",
    "linear_tree",
    "enable_bundle",
    "is_enable_sparse",
    "forcedbins_filename",
    "categorical_feature",
    "two_round",
)
DATASET_CACHE_SIZE = 8


@dataclass(frozen=True)
class Evaluation:
    value: float
    fold_scores: tuple[float, ...]
    best_iterations: tuple[int, ...]
    seconds: float


class TrialPruned(optuna.TrialPruned):
    """Pruned after some folds; carries what those folds gave."""

    def __init__(self, evaluation: Evaluation):
        super().__init__(f"pruned after {len(evaluation.fold_scores)} folds")
        self.evaluation = evaluation


class Evaluator:
    """Scores parameter sets by K-fold OOF on the saved folds, binning once per distinct binning parameters."""

    def __init__(self, prep: Prepared, base: TrainSpec):
        self.prep = prep
        self.base = base
        self._datasets: OrderedDict[tuple, lgb.Dataset] = OrderedDict()
        self.datasets_built = 0
        self.datasets_reused = 0
        self._sent: list | None = None  # the data on a cluster's workers, once it has been sent
        self._prefetched: dict[str, deque[list]] = {}  # fold tasks submitted ahead, by parameters
        self._binning_names = tuple(sorted({a for name in DATASET_PARAMS for a in aliases(name)}))

    def dataset(self, spec: TrainSpec) -> lgb.Dataset:
        key = tuple(sorted((k, repr(v)) for k, v in spec.params.items() if k in self._binning_names))
        if key in self._datasets:
            self._datasets.move_to_end(key)
            self.datasets_reused += 1
            return self._datasets[key]
        full = build_dataset(self.prep.X, self.prep.y, spec)
        self.datasets_built += 1
        self._datasets[key] = full
        if len(self._datasets) > DATASET_CACHE_SIZE:
            self._datasets.popitem(last=False)
        return full

    def prefetch(self, trials: list[dict[str, Any]]) -> None:
        """On a cluster, submit every fold of these parameter sets now, so trials proposed together train at once;
        `evaluate` then reads each one's folds in order. In process there is nothing to do ahead."""
        if self.base.cluster is None:
            return
        for params in trials:
            spec = self._spec(params)
            self._prefetched.setdefault(_params_key(spec), deque()).append(self._submit(spec))

    def cancel_prefetched(self) -> None:
        """Drop the fold tasks of prefetched trials that were never evaluated (stopped, interrupted)."""
        pending = [future for queue in self._prefetched.values() for futures in queue for future in futures]
        self._prefetched.clear()
        if pending:
            self.base.cluster.client.cancel(pending)

    def evaluate(
        self,
        params: dict[str, Any],
        report: Callable[[int, float], bool] | None = None,
        on_fold: Callable[[FoldOutput], None] | None = None,
    ) -> Evaluation:
        """OOF score of `params`; `report(step, running_score)` returning True prunes (raises TrialPruned); `on_fold`
        sees each trained fold (the final retrain keeps them)."""
        started = time.perf_counter()
        spec = self._spec(params)
        y, folds = self.prep.y, self.prep.folds
        oof = OOFAccumulator(len(y), spec.task, spec.num_class)
        fold_scores, best_iterations = [], []
        pairs = folds.pairs()
        with contextlib.closing(self._fold_outputs(spec, pairs)) as outputs:
            for step, output in enumerate(outputs, start=1):
                valid_idx = folds.split(output.result.repeat, output.result.fold)[1]
                oof.add(valid_idx, output.valid_pred)
                if on_fold is not None:
                    on_fold(output)
                fold_scores.append(output.result.score)
                best_iterations.append(output.result.best_iteration)
                running = Evaluation(
                    oof.score(spec.metric, y), tuple(fold_scores), tuple(best_iterations), time.perf_counter() - started
                )
                if report is not None and step < len(pairs) and report(step, running.value):
                    raise TrialPruned(running)
        return running

    def _spec(self, params: dict[str, Any]) -> TrainSpec:
        return replace(self.base, params={**self.base.params, **params})

    def _fold_outputs(self, spec: TrainSpec, pairs: list[tuple[int, int]]) -> Iterator[FoldOutput]:
        """Each fold's output in fold order, trained when asked for (so a pruned trial trains no more folds). On a
        cluster the trial's folds were submitted together (ahead, when prefetched) and are read in fold order; a
        pruned trial's later folds are cancelled. Either way the study sees the same folds in the same order."""
        X, y, folds = self.prep.X, self.prep.y, self.prep.folds
        if spec.cluster is None:
            full = self.dataset(spec)
            for repeat, fold in pairs:
                train_idx, valid_idx = folds.split(repeat, fold)
                yield train_fold(full, y, train_idx, valid_idx, spec, X, repeat, fold)
            return
        queue = self._prefetched.get(_params_key(spec))
        futures = queue.popleft() if queue else self._submit(spec)
        try:
            for future in futures:
                yield fold_output(future)
        finally:
            spec.cluster.client.cancel(futures)  # no-op for folds already read

    def _submit(self, spec: TrainSpec) -> list:
        if self._sent is None:  # the data goes to the workers once for the study, not once per trial
            self._sent = send_run_data(spec.cluster, self.prep.X, self.prep.y, self.prep.folds, None)
        return submit_folds(
            spec.cluster, self._sent, self.prep.folds.pairs(), spec, binning_key(spec, self._binning_names)
        )


def _params_key(spec: TrainSpec) -> str:
    return repr(sorted((k, repr(v)) for k, v in spec.params.items()))
