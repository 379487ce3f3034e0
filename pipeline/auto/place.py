"""Where a `gbpipe auto` run is written and what it continues.

A new run gets a new folder and a study of its own. `--resume` continues the newest unfinished auto run (killed:
its `<id>.partial/` folder holds the finished members and its record) in that folder; when there is none, or
`--run-id` names a published one (stopped by Ctrl-C or by its budget), a new run continues that run's study and
reuses its members through the member cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.core.artifacts import MANIFEST, PARTIAL_SUFFIX
from pipeline.core.errors import ArtifactError, ConfigError
from pipeline.core.names import MAX_NAME_LENGTH, check_run_id
from pipeline.core.run_folder import RunReader, RunWriter, check_new_run, new_run_id, resumable_run, staging_dir

from .steps import PLAN

KIND = "auto"


@dataclass(frozen=True)
class Place:
    """The run folder to write, whether it continues there, the run it follows and the study its trials go to."""

    run_dir: Path
    in_place: bool
    previous: str | None
    study: str


def find_place(cfg: Config, run_id: str | None, resume: bool) -> Place:
    exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    if not resume:
        run_dir = exp_dir / (run_id or new_run_id(cfg.hash(), KIND))
        check_new_run(run_dir)
        return Place(run_dir, False, None, f"auto-{run_dir.name}"[:MAX_NAME_LENGTH])
    if run_id is not None:
        return _named(exp_dir / run_id, cfg)
    if any((staging / PLAN).is_file() for staging in exp_dir.glob(f"*{PARTIAL_SUFFIX}")):
        run_dir = resumable_run(exp_dir, "auto run", accept=lambda staging: (staging / PLAN).is_file())
        return Place(run_dir, True, None, _study_of_staging(run_dir))
    published = sorted(
        (p for p in exp_dir.glob("*") if (p / MANIFEST).is_file() and (p / PLAN).is_file()),
        key=lambda p: (p / MANIFEST).stat().st_mtime,
    )
    if not published:
        raise ConfigError(
            f"--resume: no auto run of experiment {cfg.experiment.name!r} in {exp_dir}; start one without --resume"
        )
    return _after(published[-1], cfg)


def _named(run_dir: Path, cfg: Config) -> Place:
    if (staging_dir(run_dir) / PLAN).is_file():
        return Place(run_dir, True, None, _study_of_staging(run_dir))
    if (run_dir / PLAN).is_file() and (run_dir / MANIFEST).is_file():
        return _after(run_dir, cfg)
    raise ConfigError(
        f"--resume --run-id {run_dir.name}: {run_dir.parent} holds no auto run of that id (finished or "
        "unfinished); leave --run-id out to continue the newest one"
    )


def _after(previous: Path, cfg: Config) -> Place:
    """A new run that continues the published run `previous`: its study, and its members through the cache."""
    study = RunReader(previous, allow_version_mismatch=True).read_json(PLAN).get("study")
    if not isinstance(study, str):
        raise ArtifactError(f"{previous / PLAN} names no study; it was not written by gbpipe auto")
    run_dir = previous.parent / new_run_id(cfg.hash(), KIND)
    check_new_run(run_dir)
    return Place(run_dir, False, previous.name, study)


def _study_of_staging(run_dir: Path) -> str:
    try:
        study = json.loads((staging_dir(run_dir) / PLAN).read_text()).get("study")
    except (OSError, ValueError) as exc:
        raise ArtifactError(
            f"{staging_dir(run_dir) / PLAN} is unreadable ({exc}); delete that folder to start over"
        ) from None
    if not isinstance(study, str):
        raise ArtifactError(f"{staging_dir(run_dir) / PLAN} names no study; delete that folder to start over")
    return study


def check_plan(writer: RunWriter, plan: dict, in_place: bool) -> None:
    """Continuing in place needs the config and portfolio the run started with; then the plan is (re)written."""
    if in_place and writer.exists(PLAN):
        before = json.loads(writer.path(PLAN).read_text())
        changed = [key for key in ("config", "portfolio") if before.get(key) != plan.get(key)]
        if changed:
            raise ConfigError(
                f"--resume: the {' and the '.join(changed)} differ from those {writer.staging} was started with; "
                "resume with the same ones, or start a new run without --resume"
            )
        plan = {**plan, "resumed_from": before.get("resumed_from")}
    writer.write_json(PLAN, plan)
