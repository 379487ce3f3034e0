"""The portfolio `gbpipe auto` runs after the default LightGBM: tuning settings, the comparison's settings and the
members to try, in order. It is data, not code: the built-in portfolio.toml, or the file `--portfolio` names,
validated as strictly as an experiment config (unknown keys refused with the nearest one, values checked,
LightGBM's parameters by LightGBM and scikit-learn's by scikit-learn, for the experiment's task).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from pipeline.config import Config
from pipeline.config.experiment import Task, parse_toml, read_text, validation_problems
from pipeline.config.lightgbm_params import params_problems, tune_problems
from pipeline.config.sections import EnsembleMember, EnsembleSection, Section, TuneSection, repeated
from pipeline.core.errors import ConfigError
from pipeline.ensemble.members import OPTIONAL_FAMILIES, check_member
from pipeline.tune.space import build_space

BUILTIN = "portfolio.toml"
DEFAULT_MEMBER = "lgb"  # the experiment's own LightGBM, trained first
TUNED_MEMBER = "lgb_tuned"  # LightGBM at the best tuning trial's parameters
SET_BY_AUTO_TUNE = ("n_trials", "timeout", "workers", "study_name", "plots")
SET_BY_AUTO_ENSEMBLE = ("members", "vote_weights", "use", "stack_features")
FIX = "fix the file, or leave --portfolio out to use the built-in portfolio"


class PortfolioMember(EnsembleMember):
    """A member to try: an ensemble member with its expected cost and, optionally, the tasks it serves."""

    cost: float = Field(default=1.0, gt=0.0)
    tasks: tuple[Task, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _own_rules(self) -> PortfolioMember:
        if self.params_file is not None:
            raise ValueError("params_file is not read from a portfolio; give the parameters inline in params")
        if self.name in (DEFAULT_MEMBER, TUNED_MEMBER):
            raise ValueError(f"name {self.name!r} is gbpipe auto's own (the default and the tuned LightGBM); rename it")
        return self

    def as_member(self) -> EnsembleMember:
        return EnsembleMember.model_validate(self.model_dump(exclude={"cost", "tasks"}))


def _refuse(section: Section, keys, why: str) -> None:
    """A portfolio section may not set `keys`: ValueError naming those it set, why, and the fix."""
    given = sorted(set(keys) & section.model_fields_set)
    if given:
        raise ValueError(f"{given} {why}; remove them")


class PortfolioTune(TuneSection):
    """The experiment config's [tune] keys, with the share of the time budget trials may use."""

    share: float = Field(default=0.3, ge=0.0, le=1.0)
    max_trials: int = Field(default=100, ge=0)

    @model_validator(mode="after")
    def _not_set_by_auto(self) -> PortfolioTune:
        _refuse(
            self,
            SET_BY_AUTO_TUNE,
            "are gbpipe auto's to set (--max-trials, --time-budget, one worker, one study per run, no plots)",
        )
        return self

    def section(self) -> TuneSection:
        return TuneSection(**self.model_dump(exclude={"share", "max_trials", *SET_BY_AUTO_TUNE}), plots=False)


class PortfolioEnsemble(EnsembleSection):
    """The experiment config's [ensemble] keys that are not about its members."""

    members: tuple[EnsembleMember, ...] = ()

    @model_validator(mode="after")
    def _settings_only(self) -> PortfolioEnsemble:
        _refuse(
            self,
            SET_BY_AUTO_ENSEMBLE,
            "cannot be set in a portfolio's [ensemble]: members are its [[members]] "
            "list, and the model gbpipe auto selects is the recommended one",
        )
        return self

    def settings(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"members"})


class Portfolio(Section):
    tune: PortfolioTune = PortfolioTune()
    ensemble: PortfolioEnsemble = PortfolioEnsemble()
    members: tuple[PortfolioMember, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Portfolio:
        twice = repeated([m.name for m in self.members])
        if twice:
            raise ValueError(f"members: names must be unique; repeated: {twice}")
        return self


@dataclass(frozen=True)
class LoadedPortfolio:
    """A validated portfolio, its text (recorded in the run) and where it came from."""

    portfolio: Portfolio
    text: str
    source: str


def load_portfolio(path: Path | None = None) -> LoadedPortfolio:
    """The portfolio at `path`, or the built-in one; ConfigError (exit 2) naming the file, key, rule and value."""
    if path is None:
        text, source = importlib.resources.files(__package__).joinpath(BUILTIN).read_text(encoding="utf-8"), "built-in"
    else:
        text = read_text(Path(path), "--portfolio", "give a TOML file, or leave it out for the built-in one")
        source = str(path)
    raw = parse_toml(text, f"portfolio {source}", FIX)
    try:
        portfolio = Portfolio.model_validate(raw)
    except ValidationError as exc:
        lines = validation_problems(exc, Portfolio)
        raise ConfigError(f"invalid portfolio {source}:\n  " + "\n  ".join(lines) + f"\n{FIX}") from None
    return LoadedPortfolio(portfolio, text, source)


@dataclass(frozen=True)
class Planned:
    """A portfolio member this experiment will try, as the ensemble stage trains it, and its relative cost."""

    member: EnsembleMember
    cost: float


@dataclass(frozen=True)
class Plan:
    """The members to try on this experiment, in order, and those left out with the reason."""

    members: tuple[Planned, ...]
    left_out: tuple[tuple[str, str], ...]


def plan_for(loaded: LoadedPortfolio, cfg: Config) -> Plan:
    """The portfolio checked against the experiment's task, metric and model: ConfigError listing every problem."""
    planned, left_out, problems = [], [], []
    for i, entry in enumerate(loaded.portfolio.members):
        why = _left_out(entry, cfg.data.task)
        if why is not None:
            left_out.append((entry.name, why))
            continue
        member = entry.as_member()
        problems += _member_problems(i, member, cfg)
        planned.append(Planned(member, entry.cost))
    problems += _tune_problems(loaded.portfolio, cfg)
    if problems:
        raise ConfigError(
            f"invalid portfolio {loaded.source} for experiment {cfg.experiment.name!r} ({cfg.data.task}, "
            f"{cfg.metric}):\n  " + "\n  ".join(problems) + f"\n{FIX}"
        )
    return Plan(tuple(planned), tuple(left_out))


def _left_out(entry: PortfolioMember, task: str) -> str | None:
    if entry.tasks is not None and task not in entry.tasks:
        return f"not for {task} (tasks = {list(entry.tasks)})"
    if (entry.family == "logistic" and task == "regression") or (entry.family == "ridge" and task != "regression"):
        return f"{entry.family} does not serve {task}"
    if entry.family in OPTIONAL_FAMILIES and importlib.util.find_spec(entry.family) is None:
        return f"{entry.family} is not installed (`pip install {entry.family}` adds it)"
    return None


def _member_problems(i: int, member: EnsembleMember, cfg: Config) -> list[str]:
    where = f"members[{i}] ({member.name!r})"
    problems = []
    if member.family == "lightgbm" and member.params:
        at = f"members[{i}].params.{{key}} (member {member.name!r})"
        problems += params_problems(dict(member.params), at, cfg.data.task, cfg.metric, base=dict(cfg.model.params))
    if not problems:
        try:
            check_member(cfg, member)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def _tune_problems(portfolio: Portfolio, cfg: Config) -> list[str]:
    section = portfolio.tune.section()
    problems = [problem.replace("tune.", "[tune] ", 1) for problem in tune_problems(section)]
    if not problems:
        try:
            build_space(cfg.model_copy(update={"tune": section}))
        except ConfigError as exc:
            problems.append(f"[tune]: {exc}")
    return problems
