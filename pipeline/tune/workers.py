"""Several tuning processes on this machine: spawned workers that share one study (journal file or
database), each loading the data once and running trials until the shared budget is used.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from pathlib import Path
from typing import Any

import optuna

from pipeline.config import Config, validate_config
from pipeline.core.budget import Clock
from pipeline.core.errors import GbpipeError
from pipeline.data.prepare import prepare

from .evaluator import Evaluator
from .options import TuneOptions
from .output import ProgressReporter
from .space import build_space, tune_section
from .storage import open_storage
from .study import TrialSeededTPE, make_pruner, this_worker
from .trials import TrialPlan, base_spec, run_trials


# ---- several processes on this machine ----
def run_parallel(
    cfg: Config,
    options: TuneOptions,
    study_dir: Path,
    clock: Clock,
    threads: int,
    study: optuna.Study,
    reporter: ProgressReporter,
) -> None:
    """Spawn `options.workers` processes on the same study and print progress until they end."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no OpenMP state inherited by fork
    payload = {
        "config": cfg.to_dict(),
        "storage": options.storage,
        "study_dir": str(study_dir),
        "study_name": options.study_name,
        "n_trials": options.n_trials,
        "clock": {"started": clock.started, "deadline": clock.deadline},
        "threads": threads,
    }
    workers = [
        context.Process(target=worker_main, args=(payload,), name=f"gbpipe-tune-{i}", daemon=False)
        for i in range(options.workers)
    ]
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
        raise GbpipeError(
            f"tuning workers failed: {failed} (see their messages above); finished trials are kept, "
            "continue with --resume"
        )


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
    study = optuna.load_study(
        study_name=payload["study_name"],
        storage=storage,
        sampler=TrialSeededTPE(tune_cfg.seed, tune_cfg.n_startup_trials),
        pruner=make_pruner(tune_cfg),
    )
    evaluator = Evaluator(prep, base_spec(cfg, prep, space, payload["threads"]))
    try:
        clock = Clock(**payload["clock"])
        plan = TrialPlan(evaluator, space, payload["n_trials"], clock, batch=tune_cfg.batch_trials)
        run_trials(plan, study, this_worker())
    except KeyboardInterrupt:
        sys.exit(130)
