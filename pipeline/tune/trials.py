"""Running trials against a study, in this process or in a worker: the spec every trial starts from,
each trial's parameters sampled and scored (pruned on the running OOF score), until the study's budget
of finished trials is reached or the next trial would not end in time (pipeline/core/budget.py's rule: a
trial starts only when the mean duration of the study's trials so far fits the time left).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from pipeline.config import Config
from pipeline.core.budget import Clock, TimeUp
from pipeline.data.prepare import Prepared
from pipeline.engine.spec import TrainSpec, resolve_params, train_spec

from .evaluator import Evaluator, TrialPruned
from .space import SearchSpace, aliases
from .study import (
    REASON_ATTR,
    Worker,
    budget_of,
    counts_toward_budget,
    exclude_trial,
    fail_dead_trials,
    heartbeat,
    is_surplus,
)


def base_spec(cfg: Config, prep: Prepared, space: SearchSpace, threads: int) -> TrainSpec:
    """The training spec every trial starts from: model.params without the searched ones, the fixed
    tuning parameters (learning rate included), and the worker's thread count."""
    tuned = {a for name in [*space.distributions, *space.fixed] for a in aliases(name)}
    model_params = {k: v for k, v in cfg.model.params.items() if k not in tuned}
    spec = train_spec(cfg, prep)
    params = resolve_params(
        cfg.data.task,
        cfg.metric,
        {**model_params, **space.fixed, "feature_pre_filter": False},
        spec.num_class,
        cfg.cv.seed,
        threads,
    )
    return replace(spec, params=params)


# ---- running trials ----
@dataclass(frozen=True)
class TrialPlan:
    """What a worker needs to run trials against a shared study."""

    evaluator: Evaluator
    space: SearchSpace
    n_trials: int
    clock: Clock | None = None  # a trial starts only when its estimated duration fits this clock
    hard_stop: bool = False  # a running trial that cannot end by the clock's deadline is stopped
    batch: int = 1  # trials the sampler proposes from the same history before any of them is told


@dataclass(frozen=True)
class TrialsRun:
    """How many trials this process ran, and why it stopped early (None: the trial budget was reached)."""

    ran: int
    stopped: str | None = None


def trial_estimate(trials: list[optuna.trial.FrozenTrial], n_folds: int) -> float | None:
    """The next trial's duration: the mean over the study's counted trials of their time for every fold (a
    pruned trial's time per fold done, times the folds); None before any trial has a recorded time."""
    durations = [
        float(t.user_attrs["seconds"]) * n_folds / (len(t.user_attrs.get("fold_scores") or ()) or n_folds)
        for t in trials
        if counts_toward_budget(t) and t.user_attrs.get("seconds") is not None
    ]
    return statistics.fmean(durations) if durations else None


def out_of_time(plan: TrialPlan, study: optuna.Study) -> str | None:
    """Why the next trial must not start (the clock), or None when it may."""
    if plan.clock is None or plan.clock.deadline is None:
        return None
    estimate = trial_estimate(study.get_trials(deepcopy=False), len(plan.evaluator.prep.folds.pairs()))
    if plan.clock.fits(estimate):
        return None
    if estimate is None:
        return "the time budget had run out"
    return f"the next trial's estimated {estimate:.1f}s exceeded the {plan.clock.left():.1f}s left"


def run_trials(
    plan: TrialPlan, study: optuna.Study, me: Worker, on_done: Callable[[], None] = lambda: None
) -> TrialsRun:
    """Run trials until the study holds n_trials finished ones, or until the next one would not end in time.

    Trials are asked `plan.batch` at a time: the sampler proposes each of a batch while the earlier ones are
    still running (TPE's constant liar), and they are then evaluated and told in the order asked. The study is
    therefore the same whether a batch's folds train one after another here or all at once on a cluster."""
    ran = 0
    while True:
        fail_dead_trials(study, me)
        left = plan.n_trials - budget_of(study.get_trials(deepcopy=False)).taken
        if left <= 0:
            return TrialsRun(ran)
        stopped = out_of_time(plan, study)
        if stopped is not None:
            return TrialsRun(ran, stopped)
        batch = ask_batch(plan, study, min(plan.batch, left))
        if not batch:
            return TrialsRun(ran)
        done, stopped = run_batch(plan, study, batch, me, on_done)
        ran += done
        if stopped is not None or len(batch) < min(plan.batch, left):
            return TrialsRun(ran, stopped)


def ask_batch(plan: TrialPlan, study: optuna.Study, size: int) -> list[optuna.Trial]:
    """Up to `size` new trials; one that another worker's claims made surplus ends the batch before it."""
    batch: list[optuna.Trial] = []
    for _ in range(size):
        trial = study.ask(fixed_distributions=plan.space.distributions)
        if is_surplus(study, trial.number, plan.n_trials):
            exclude_trial(
                study,
                trial._trial_id,
                "surplus: other workers had already claimed the last trials of the budget; nothing was run",
            )
            break
        batch.append(trial)
    return batch


def run_batch(
    plan: TrialPlan, study: optuna.Study, batch: list[optuna.Trial], me: Worker, on_done: Callable[[], None]
) -> tuple[int, str | None]:
    """Evaluate and tell a batch's trials in order: (how many ran, why the rest did not, or None)."""
    plan.evaluator.prefetch([plan.space.trial_params(trial.params) for trial in batch])
    unfinished, ran, stopped = list(batch), 0, None
    reason = "interrupted (Ctrl-C or SIGTERM) before it finished"
    with heartbeat(study, [trial._trial_id for trial in batch], me):
        try:
            while unfinished:
                trial = unfinished[0]
                if ran and (stopped := out_of_time(plan, study)) is not None:
                    reason = f"not started: {stopped}"
                    break
                try:
                    run_one(plan, study, trial, me)
                except TimeUp as stop:
                    stopped = f"trial {trial.number} was stopped: {stop}"
                    exclude_trial(study, unfinished.pop(0)._trial_id, f"stopped: {stop}")
                    reason = f"not started: {stopped}"
                    break
                unfinished.pop(0)
                on_done()
                ran += 1
        finally:  # the clock, an error or Ctrl-C: the batch's unfinished trials are excluded, their folds dropped
            plan.evaluator.cancel_prefetched()
            for trial in unfinished:  # no-op for a trial that had finished
                exclude_trial(study, trial._trial_id, reason)
    return ran, stopped


def run_one(plan: TrialPlan, study: optuna.Study, trial: optuna.Trial, me: Worker) -> None:
    """Evaluate one trial and record it: COMPLETE, PRUNED, or FAIL with its reason."""

    started = time.time()

    def report(step: int, running: float) -> bool:
        if plan.hard_stop and plan.clock is not None:
            plan.clock.pace(f"trial {trial.number}", started, step, len(plan.evaluator.prep.folds.pairs()))
        trial.report(running, step)
        return trial.should_prune()

    state, evaluation, reason = TrialState.COMPLETE, None, None
    try:
        evaluation = plan.evaluator.evaluate(plan.space.trial_params(trial.params), report)
    except TrialPruned as pruned:
        state, evaluation = TrialState.PRUNED, pruned.evaluation
    except TimeUp:  # not the trial's failure: run_batch marks it excluded and stops
        raise
    except Exception as exc:  # any error of one trial is recorded; the study goes on
        state, reason = TrialState.FAIL, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if evaluation is not None and state == TrialState.COMPLETE and not math.isfinite(evaluation.value):
        state, reason = TrialState.FAIL, f"the objective returned {evaluation.value} (not a finite score)"
    try:
        if evaluation is not None:
            trial.set_user_attr("fold_scores", list(evaluation.fold_scores))
            trial.set_user_attr("best_iterations", list(evaluation.best_iterations))
            trial.set_user_attr("seconds", evaluation.seconds)
        if reason:
            trial.set_user_attr(REASON_ATTR, reason)
        study.tell(
            trial, evaluation.value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True
        )
    except UpdateFinishedTrialError:  # another worker took it for dead (no heartbeat): its record stands
        print(
            f"warning: trial {trial.number} was marked FAIL by another worker while it ran; its result is dropped",
            file=sys.stderr,
        )
