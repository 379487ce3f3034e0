"""The choices of one `gbpipe tune` call: the command line's, falling back to the config's [tune] section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.names import check_name

from .space import tune_section


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


def tune_options(
    cfg: Config,
    n_trials: int | None = None,
    timeout: float | None = None,
    workers: int | None = None,
    storage: str | None = None,
    resume: bool = False,
    new_study: bool = False,
    study_name: str | None = None,
) -> TuneOptions:
    """Options from the command line, falling back to the config's [tune] section."""
    tune = tune_section(cfg)

    def given(value, default):
        return default if value is None else value

    options = TuneOptions(
        given(n_trials, tune.n_trials),
        given(timeout, tune.timeout),
        given(workers, tune.workers),
        storage,
        resume,
        new_study,
        tune.study_name if study_name is None else check_name(study_name, "--study-name"),
    )
    if options.n_trials < 1 or options.workers < 1 or (options.timeout is not None and options.timeout <= 0):
        raise ConfigError(
            f"--n-trials and --workers must be at least 1 and --timeout positive (got n_trials="
            f"{options.n_trials}, workers={options.workers}, timeout={options.timeout})"
        )
    if resume and new_study:
        raise ConfigError("--resume and --new-study contradict each other: pick one")
    return options


def tune_dir(cfg: Config, study_name: str) -> Path:
    return Path(cfg.experiment.runs_dir) / cfg.experiment.name / "tune" / study_name
