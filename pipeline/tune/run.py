"""`gbpipe tune`: Optuna TPE search of LightGBM parameters on the experiment's K-fold OOF score.

Each trial is scored by tune/evaluator.py (every saved fold, pruned on the running OOF score). The study lives in a
journal file in runs/<exp>/tune/<study>/ or in any SQLAlchemy database (--storage), so it can be
resumed and shared by several processes and machines.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from pipeline.config import Config
from pipeline.core.budget import Clock
from pipeline.core.errors import ConfigError
from pipeline.core.metrics import GREATER_IS_BETTER, is_better
from pipeline.core.progress import QUIET, Progress
from pipeline.data.prepare import Prepared, prepare
from pipeline.engine.fold import FoldOutput
from pipeline.engine.fold_store import fold_files, kept_files
from pipeline.engine.spec import available_cores, model_key, train_spec

from .evaluator import Evaluation, Evaluator
from .options import TuneOptions, tune_dir
from .output import ROLE_ATTR, ProgressReporter, write_outputs
from .space import SearchSpace, aliases, build_space, tune_section
from .storage import JOURNAL_FILE, check_storage_url, open_storage, redact
from .study import TrialSeededTPE, budget_of, fail_dead_trials, make_pruner, open_study, this_worker
from .trials import TrialPlan, base_spec, run_trials
from .workers import run_parallel

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

FINAL_ATTR = "gbpipe_final"


def threads_per_worker(cfg: Config, workers: int) -> int:
    """cores // workers (at least 1), capped by model.num_threads; refuses more workers than cores."""
    cores = available_cores()
    if workers > cores:
        raise ConfigError(
            f"--workers {workers} is more than the {cores} cores available: threads x workers must "
            f"stay within the cores; use --workers {cores} or fewer"
        )
    threads = max(1, cores // workers)
    return min(threads, cfg.model.num_threads) if cfg.model.num_threads else threads


def fingerprint(cfg: Config, prep: Prepared, space: SearchSpace) -> dict[str, Any]:
    """What makes trials comparable: data, folds, search space, metric and the training settings."""
    folds = prep.folds.digest(prep.folds.splitter.encode())[:16]
    tuned = {a for name in [*space.distributions, *space.fixed] for a in aliases(name)}
    training = {
        "task": cfg.data.task,
        "num_boost_round": cfg.model.num_boost_round,
        "early_stopping_rounds": cfg.model.early_stopping_rounds,
        "early_stopping": cfg.model.early_stopping,
        "inner_valid_fraction": cfg.model.inner_valid_fraction,
        "fixed": space.fixed,
        "model_params": {k: v for k, v in cfg.model.params.items() if k not in tuned},
    }
    return {
        "data": {"rows": int(len(prep.y)), "features": len(prep.schema.columns), "content": prep.data_fingerprint[:16]},
        "folds": {
            "splitter": prep.folds.splitter,
            "n_splits": prep.folds.n_splits,
            "n_repeats": prep.folds.n_repeats,
            "assignments": folds,
        },
        "search_space": space.describe(),
        "metric": cfg.metric,
        "training": {k: str(v) for k, v in training.items()},
    }


# ---- the command ----
def tune(cfg: Config, options: TuneOptions, progress: Progress = QUIET, cluster: Cluster | None = None) -> Path:
    """Run (or continue) the experiment's study and write its results; returns the study folder. On a `cluster`
    each trial's folds train as tasks there, tune.batch_trials trials at once: the study is the in-process one."""
    check_storage_url(options.storage)  # before the data is loaded
    if cluster is not None and options.workers > 1:
        raise ConfigError(
            f"--cluster {cluster.address} with --workers {options.workers}: the cluster's workers run the folds; "
            "give one or the other"
        )
    clock = Clock.start(options.timeout)
    threads_per_worker(cfg, options.workers)  # refused before the data is loaded
    prep = prepare(cfg, progress)
    summary = search(cfg, options, prep, clock, progress, cluster=cluster)
    study_dir = tune_dir(cfg, options.study_name)
    if summary["best"] is None:
        raise ConfigError(
            f"no trial of study {options.study_name!r} completed ({summary['counts']}); first "
            f"failure: {summary.get('first_failure') or 'none recorded'}. Fix the config or search "
            f"space; the trials are listed in {study_dir / 'trials.parquet'}"
        )
    default_value = summary["default_trial"].get("value")
    progress.say(
        f"best {cfg.metric} {summary['best']['value']:.5f} (trial #{summary['best']['trial']}; default "
        f"parameters {default_value if default_value is not None else float('nan'):.5f}); "
        f"written to {study_dir}"
    )
    return study_dir


def search(
    cfg: Config,
    options: TuneOptions,
    prep: Prepared,
    clock: Clock,
    progress: Progress = QUIET,
    first: Evaluation | None = None,
    hard_stop: bool = False,
    cluster: Cluster | None = None,
) -> dict[str, Any]:
    """Trials on prepared data until the study holds options.n_trials finished ones or the next one would not
    end by the clock's deadline; then the outputs are written. `first` is the default parameters' result when
    the caller already has it (it becomes the study's first trial instead of being trained again); a running
    trial that cannot end by the clock's deadline is stopped with `hard_stop`. Returns the summary (tune.json)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = threads_per_worker(cfg, options.workers)
    space = build_space(cfg)
    study_dir = tune_dir(cfg, options.study_name)
    study, where = start_study(cfg, options, prep, space, study_dir, progress, first)
    progress.say(
        f"study {options.study_name!r} in {where}: {budget_of(study.get_trials()).finished} of "
        f"{options.n_trials} trials done; {options.workers} worker(s) x {threads} thread(s); search space: "
        + ", ".join(f"{k} {v}" for k, v in space.describe().items())
    )
    reporter = ProgressReporter(study, options.n_trials, cfg.metric, progress)
    deadline = clock.deadline if hard_stop else None  # a fold past it is abandoned, not finished
    evaluator = Evaluator(prep, replace(base_spec(cfg, prep, space, threads), deadline=deadline, cluster=cluster))
    done = None
    if options.workers == 1:
        plan = TrialPlan(evaluator, space, options.n_trials, clock, hard_stop, tune_section(cfg).batch_trials)
        done = run_trials(plan, study, this_worker(), reporter.update)
        progress.say(f"this process ran {done.ran} trial(s)" + (f"; no more: {done.stopped}" if done.stopped else ""))
    else:
        run_parallel(cfg, options, study_dir, clock, threads, study, reporter)
    final, final_files = final_retrain(study, cfg, space, prep, progress, cluster)
    if final is not None and final.get("used") and not final_files:  # retrained by an earlier call of this study
        final_files = kept_files(study_dir, final.get("model_key"))
    in_process = options.workers == 1 and cluster is None  # other processes keep their own Dataset caches
    stats = {
        "datasets_built": evaluator.datasets_built if in_process else None,
        "datasets_reused": evaluator.datasets_reused if in_process else None,
        "workers": options.workers,
        "threads_per_worker": threads,
        "ran_here": None if done is None else done.ran,
        "stopped": None if done is None else done.stopped,
        "seconds": clock.elapsed(),
    }
    return write_outputs(study_dir, study, cfg, space, options, where, final, stats, final_files)


def start_study(
    cfg: Config,
    options: TuneOptions,
    prep: Prepared,
    space: SearchSpace,
    study_dir: Path,
    progress: Progress,
    first: Evaluation | None = None,
) -> tuple[optuna.Study, str]:
    """Create or resume the study (fingerprint checked), fail dead workers' trials, queue the default trial (or
    record `first`, its result already known)."""
    tune_cfg = tune_section(cfg)
    where = redact(options.storage) if options.storage else str(study_dir / JOURNAL_FILE)  # shown and stored
    direction = "maximize" if GREATER_IS_BETTER[cfg.metric] else "minimize"
    study, created = open_study(
        open_storage(options.storage, study_dir),
        options.study_name,
        fingerprint(cfg, prep, space),
        options.resume,
        options.new_study,
        direction,
        TrialSeededTPE(tune_cfg.seed, tune_cfg.n_startup_trials),
        make_pruner(tune_cfg),
        where,
    )
    for number in fail_dead_trials(study, this_worker()):
        progress.say(f"trial {number} was left RUNNING by a worker that is gone: marked FAIL, not counted")
    if created and first is not None:
        study.add_trial(default_trial(space, first))
    elif created:  # the first trial: the current parameters, so tuning never ends worse than not tuning
        study.enqueue_trial(space.default_trial, user_attrs={ROLE_ATTR: "defaults"})
    return study, where


def default_trial(space: SearchSpace, result: Evaluation) -> optuna.trial.FrozenTrial:
    """The default parameters' trial, from a result obtained outside the study (the same model, trained once)."""
    return optuna.trial.create_trial(
        params=space.default_trial,
        distributions={name: space.distributions[name] for name in space.default_trial},
        value=result.value,
        user_attrs={
            ROLE_ATTR: "defaults",
            "fold_scores": list(result.fold_scores),
            "best_iterations": list(result.best_iterations),
            "seconds": result.seconds,
        },
    )


def final_retrain(
    study: optuna.Study,
    cfg: Config,
    space: SearchSpace,
    prep: Prepared,
    progress: Progress,
    cluster: Cluster | None = None,
) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """Re-score the best trial at tune.final_learning_rate; kept (and recorded on the study) once per best trial.
    The retrain is the model `gbpipe train --params best_params.json` trains (its spec, so its model key): its
    folds are returned as files for the study folder, where train takes them (engine/fold_store.py)."""
    rate = tune_section(cfg).final_learning_rate
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if rate is None or not complete:
        return None, {}
    best = study.best_trial
    saved = study.user_attrs.get(FINAL_ATTR)
    if saved and saved.get("trial") == best.number and saved.get("learning_rate") == rate:
        return saved, {}
    progress.say(
        f"retraining the best trial #{best.number} at learning_rate {rate} (searched at {space.learning_rate})"
    )
    spec = replace(train_spec(cfg, prep, {**space.trial_params(best.params), "learning_rate": rate}), cluster=cluster)
    outputs: list[FoldOutput] = []
    evaluation = Evaluator(prep, spec).evaluate({}, on_fold=outputs.append)
    used = not is_better(cfg.metric, best.value, evaluation.value)
    doc = {
        "trial": best.number,
        "learning_rate": rate,
        "value": evaluation.value,
        "search_learning_rate": space.learning_rate,
        "search_value": best.value,
        "fold_scores": list(evaluation.fold_scores),
        "best_iterations": list(evaluation.best_iterations),
        "seconds": evaluation.seconds,
        "used": used,
        "model_key": model_key(spec, prep),
    }
    study.set_user_attr(FINAL_ATTR, doc)
    progress.say(
        f"learning_rate {rate}: {cfg.metric} {evaluation.value:.5f} vs {best.value:.5f} at "
        f"{space.learning_rate}; best_params " + ("use the lower rate" if used else "keep the search rate")
    )
    return doc, fold_files(doc["model_key"], outputs) if used else {}
