"""`gbpipe tune`: Optuna TPE search of LightGBM parameters on the experiment's K-fold OOF score.

Each trial is scored by tune/evaluator.py (every saved fold, pruned on the running OOF score). The study lives in a
journal file in runs/<exp>/tune/<study>/ or in any SQLAlchemy database (--storage), so it can be
resumed and shared by several processes and machines.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from pipeline.config import Config, validate_config
from pipeline.core.errors import ConfigError, GbpipeError
from pipeline.core.metrics import GREATER_IS_BETTER, is_better
from pipeline.core.progress import QUIET, Progress
from pipeline.data.prepare import Prepared, prepare
from pipeline.engine.spec import TrainSpec, available_cores, resolve_params, train_spec

from .evaluator import Evaluator, TrialPruned
from .output import ROLE_ATTR, ProgressReporter, write_outputs
from .space import SearchSpace, aliases, build_space, tune_section
from .study import (
    JOURNAL_FILE,
    REASON_ATTR,
    TrialSeededTPE,
    Worker,
    budget_of,
    exclude_trial,
    fail_dead_trials,
    heartbeat,
    is_surplus,
    make_pruner,
    open_storage,
    open_study,
    redact,
    this_worker,
)

FINAL_ATTR = "gbpipe_final"


@dataclass(frozen=True)
class TuneOptions:
    """The command line's choices for one `gbpipe tune` call."""

    n_trials: int
    timeout: float | None = None
    workers: int = 1
    storage: str | None = None
    resume: bool = False
    new_study: bool = False
    study_name: str = "default"


def tune_options(cfg: Config, n_trials: int | None = None, timeout: float | None = None, workers: int | None = None,
                 storage: str | None = None, resume: bool = False, new_study: bool = False,
                 study_name: str | None = None) -> TuneOptions:
    """Options from the command line, falling back to the config's [tune] section."""
    tune = tune_section(cfg)
    def given(value, default):
        return default if value is None else value

    options = TuneOptions(given(n_trials, tune.n_trials), given(timeout, tune.timeout), given(workers, tune.workers),
                          storage, resume, new_study, given(study_name, tune.study_name))
    if options.n_trials < 1 or options.workers < 1 or (options.timeout is not None and options.timeout <= 0):
        raise ConfigError(f"--n-trials and --workers must be at least 1 and --timeout positive (got n_trials="
                          f"{options.n_trials}, workers={options.workers}, timeout={options.timeout})")
    if resume and new_study:
        raise ConfigError("--resume and --new-study contradict each other: pick one")
    return options


def tune_dir(cfg: Config, study_name: str) -> Path:
    return Path(cfg.experiment.runs_dir) / cfg.experiment.name / "tune" / study_name


def base_spec(cfg: Config, prep: Prepared, space: SearchSpace, threads: int) -> TrainSpec:
    """The training spec every trial starts from: model.params without the searched ones, the fixed
    tuning parameters (learning rate included), and the worker's thread count."""
    tuned = {a for name in [*space.distributions, *space.fixed] for a in aliases(name)}
    model_params = {k: v for k, v in cfg.model.params.items() if k not in tuned}
    spec = train_spec(cfg, prep)
    params = resolve_params(cfg.data.task, cfg.metric, {**model_params, **space.fixed, "feature_pre_filter": False},
                            spec.num_class, cfg.cv.seed, threads)
    return replace(spec, params=params)


def threads_per_worker(cfg: Config, workers: int) -> int:
    """cores // workers (at least 1), capped by model.num_threads; refuses more workers than cores."""
    cores = available_cores()
    if workers > cores:
        raise ConfigError(f"--workers {workers} is more than the {cores} cores available: threads x workers must "
                          f"stay within the cores; use --workers {cores} or fewer")
    threads = max(1, cores // workers)
    return min(threads, cfg.model.num_threads) if cfg.model.num_threads else threads


def fingerprint(cfg: Config, prep: Prepared, space: SearchSpace) -> dict[str, Any]:
    """What makes trials comparable: data, folds, search space, metric and the training settings."""
    folds = hashlib.sha256(prep.folds.assignments.tobytes() + prep.folds.splitter.encode()).hexdigest()[:16]
    tuned = {a for name in [*space.distributions, *space.fixed] for a in aliases(name)}
    training = {"task": cfg.data.task, "num_boost_round": cfg.model.num_boost_round,
                "early_stopping_rounds": cfg.model.early_stopping_rounds, "early_stopping": cfg.model.early_stopping,
                "inner_valid_fraction": cfg.model.inner_valid_fraction, "fixed": space.fixed,
                "model_params": {k: v for k, v in cfg.model.params.items() if k not in tuned}}
    return {"data": {"rows": int(len(prep.y)), "features": len(prep.schema.columns),
                     "content": prep.data_fingerprint[:16]},
            "folds": {"splitter": prep.folds.splitter, "n_splits": prep.folds.n_splits,
                      "n_repeats": prep.folds.n_repeats, "assignments": folds},
            "search_space": space.describe(), "metric": cfg.metric,
            "training": {k: str(v) for k, v in training.items()}}


# ---- running trials ----
@dataclass(frozen=True)
class TrialPlan:
    """What a worker needs to run trials against a shared study."""

    evaluator: Evaluator
    space: SearchSpace
    n_trials: int
    deadline: float | None  # wall-clock time after which no trial starts


def run_trials(plan: TrialPlan, study: optuna.Study, me: Worker, on_done: Callable[[], None] = lambda: None) -> int:
    """Run trials until the study holds n_trials finished ones (or the deadline); returns how many ran here."""
    ran = 0
    while plan.deadline is None or time.time() < plan.deadline:
        fail_dead_trials(study, me)
        if budget_of(study.get_trials(deepcopy=False)).claimed >= plan.n_trials:
            break
        trial = None
        try:
            trial = study.ask(fixed_distributions=plan.space.distributions)
            if is_surplus(study, trial.number, plan.n_trials):
                exclude_trial(study, trial._trial_id, "surplus: other workers had already claimed the last "
                              "trials of the budget; nothing was run")
                break
            run_one(plan, study, trial, me)
        except KeyboardInterrupt:  # no-op when the trial had already finished
            if trial is not None:
                exclude_trial(study, trial._trial_id, "interrupted (Ctrl-C or SIGTERM) before it finished")
            raise
        on_done()
        ran += 1
    return ran


def run_one(plan: TrialPlan, study: optuna.Study, trial: optuna.Trial, me: Worker) -> None:
    """Evaluate one trial and record it: COMPLETE, PRUNED, or FAIL with its reason."""
    def report(step: int, running: float) -> bool:
        trial.report(running, step)
        return trial.should_prune()

    state, evaluation, reason = TrialState.COMPLETE, None, None
    with heartbeat(study, trial._trial_id, me):
        try:
            evaluation = plan.evaluator.evaluate(plan.space.trial_params(trial.params), report)
        except TrialPruned as pruned:
            state, evaluation = TrialState.PRUNED, pruned.evaluation
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
        study.tell(trial, evaluation.value if state == TrialState.COMPLETE else None, state=state,
                   skip_if_finished=True)
    except UpdateFinishedTrialError:  # another worker took it for dead (no heartbeat): its record stands
        print(f"warning: trial {trial.number} was marked FAIL by another worker while it ran; its result is "
              "dropped", file=sys.stderr)


# ---- the command ----
def tune(cfg: Config, options: TuneOptions, progress: Progress = QUIET) -> Path:
    """Run (or continue) the experiment's study and write its results; returns the study folder."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    threads = threads_per_worker(cfg, options.workers)
    prep = prepare(cfg, progress)
    space = build_space(cfg)
    study_dir = tune_dir(cfg, options.study_name)
    study, where = start_study(cfg, options, prep, space, study_dir, progress)
    progress.say(f"study {options.study_name!r} in {where}: {budget_of(study.get_trials()).finished} of "
                 f"{options.n_trials} trials done; {options.workers} worker(s) x {threads} thread(s); search space: "
                 + ", ".join(f"{k} {v}" for k, v in space.describe().items()))
    deadline = started + options.timeout if options.timeout else None
    reporter = ProgressReporter(study, options.n_trials, cfg.metric, progress)
    evaluator = Evaluator(prep, base_spec(cfg, prep, space, threads))
    if options.workers == 1:
        ran = run_trials(TrialPlan(evaluator, space, options.n_trials, deadline), study, this_worker(),
                         reporter.update)
        progress.say(f"this process ran {ran} trial(s)")
    else:
        run_parallel(cfg, options, study_dir, deadline, threads, study, reporter)
    final = final_retrain(study, cfg, space, Evaluator(prep, base_spec(cfg, prep, space, threads_per_worker(cfg, 1))),
                          progress)
    in_process = options.workers == 1  # spawned workers keep their own Dataset caches
    stats = {"datasets_built": evaluator.datasets_built if in_process else None,
             "datasets_reused": evaluator.datasets_reused if in_process else None,
             "workers": options.workers, "threads_per_worker": threads, "seconds": time.time() - started}
    summary = write_outputs(study_dir, study, cfg, space, options, where, final, stats)
    if summary["best"] is None:
        raise ConfigError(f"no trial of study {options.study_name!r} completed ({summary['counts']}); first "
                          f"failure: {summary.get('first_failure') or 'none recorded'}. Fix the config or search "
                          f"space; the trials are listed in {study_dir / 'trials.parquet'}")
    default_value = summary["default_trial"].get("value")
    progress.say(f"best {cfg.metric} {summary['best']['value']:.5f} (trial #{summary['best']['trial']}; default "
                 f"parameters {default_value if default_value is not None else float('nan'):.5f}); "
                 f"written to {study_dir}")
    return study_dir


def start_study(cfg: Config, options: TuneOptions, prep: Prepared, space: SearchSpace, study_dir: Path,
                progress: Progress) -> tuple[optuna.Study, str]:
    """Create or resume the study (fingerprint checked), fail dead workers' trials, queue the default trial."""
    tune_cfg = tune_section(cfg)
    where = redact(options.storage) if options.storage and "://" in options.storage else \
        str(options.storage or study_dir / JOURNAL_FILE)
    direction = "maximize" if GREATER_IS_BETTER[cfg.metric] else "minimize"
    study, created = open_study(open_storage(options.storage, study_dir), options.study_name,
                                fingerprint(cfg, prep, space), options.resume, options.new_study, direction,
                                TrialSeededTPE(tune_cfg.seed, tune_cfg.n_startup_trials), make_pruner(tune_cfg), where)
    for number in fail_dead_trials(study, this_worker()):
        progress.say(f"trial {number} was left RUNNING by a worker that is gone: marked FAIL, not counted")
    if created:  # the first trial: the current parameters, so tuning never ends worse than not tuning
        study.enqueue_trial(space.default_trial, user_attrs={ROLE_ATTR: "defaults"})
    return study, where


def final_retrain(study: optuna.Study, cfg: Config, space: SearchSpace, evaluator: Evaluator,
                  progress: Progress) -> dict[str, Any] | None:
    """Re-score the best trial at tune.final_learning_rate; kept (and recorded on the study) once per best trial."""
    rate = tune_section(cfg).final_learning_rate
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if rate is None or not complete:
        return None
    best = study.best_trial
    saved = study.user_attrs.get(FINAL_ATTR)
    if saved and saved.get("trial") == best.number and saved.get("learning_rate") == rate:
        return saved
    progress.say(f"retraining the best trial #{best.number} at learning_rate {rate} "
                 f"(searched at {space.learning_rate})")
    evaluation = evaluator.evaluate({**space.trial_params(best.params), "learning_rate": rate})
    used = not is_better(cfg.metric, best.value, evaluation.value)
    doc = {"trial": best.number, "learning_rate": rate, "value": evaluation.value, "search_learning_rate":
           space.learning_rate, "search_value": best.value, "fold_scores": list(evaluation.fold_scores),
           "best_iterations": list(evaluation.best_iterations), "seconds": evaluation.seconds, "used": used}
    study.set_user_attr(FINAL_ATTR, doc)
    progress.say(f"learning_rate {rate}: {cfg.metric} {evaluation.value:.5f} vs {best.value:.5f} at "
                 f"{space.learning_rate}; best_params " + ("use the lower rate" if used else "keep the search rate"))
    return doc


# ---- several processes on this machine ----
def run_parallel(cfg: Config, options: TuneOptions, study_dir: Path, deadline: float | None, threads: int,
                 study: optuna.Study, reporter: ProgressReporter) -> None:
    """Spawn `options.workers` processes on the same study and print progress until they end."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no OpenMP state inherited by fork
    payload = {"config": cfg.to_dict(), "storage": options.storage, "study_dir": str(study_dir),
               "study_name": options.study_name, "n_trials": options.n_trials, "deadline": deadline,
               "threads": threads}
    workers = [context.Process(target=worker_main, args=(payload,), name=f"gbpipe-tune-{i}", daemon=False)
               for i in range(options.workers)]
    for process in workers:
        process.start()
    try:
        while any(p.is_alive() for p in workers):
            for process in workers:
                process.join(timeout=0.5)
            reporter.update()
    except KeyboardInterrupt:
        for process in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker marks its running trial FAIL and exits
        for process in workers:
            process.join()
        raise
    reporter.update()
    failed = [(p.name, p.exitcode) for p in workers if p.exitcode]
    if failed:
        raise GbpipeError(f"tuning workers failed: {failed} (see their messages above); finished trials are kept, "
                          "continue with --resume")


def worker_main(payload: dict[str, Any]) -> None:
    """One spawned worker: load the data and the study, run trials until the shared budget is used."""
    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = validate_config(payload["config"])
    tune_cfg = tune_section(cfg)
    prep = prepare(cfg)
    space = build_space(cfg)
    storage = open_storage(payload["storage"], Path(payload["study_dir"]))
    study = optuna.load_study(study_name=payload["study_name"], storage=storage,
                              sampler=TrialSeededTPE(tune_cfg.seed, tune_cfg.n_startup_trials),
                              pruner=make_pruner(tune_cfg))
    evaluator = Evaluator(prep, base_spec(cfg, prep, space, payload["threads"]))
    try:
        run_trials(TrialPlan(evaluator, space, payload["n_trials"], payload["deadline"]), study, this_worker())
    except KeyboardInterrupt:
        sys.exit(130)
