"""The tuning search space: Optuna distributions from the config, and the first (default) trial.

The default space is the one the course's seeds tune; `[tune.search_space]` overrides ranges, log
scale and steps or adds parameters, `[tune.fixed]` holds parameters still, and the learning rate is
always fixed during the search.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline.config import Config
from pipeline.config.lightgbm_params import DEFAULT_PARAMS
from pipeline.config.sections import SearchParam, TuneSection
from pipeline.core.errors import ConfigError

# max_bin moves in steps of 32 (127..255 holds LightGBM's default 255), so the data is binned at
# most five times per study instead of once per trial.
DEFAULT_SPACE: dict[str, BaseDistribution] = {
    "num_leaves": IntDistribution(2, 256),
    "max_bin": IntDistribution(127, 255, step=32),
    "min_data_in_leaf": IntDistribution(10, 40),
    "feature_fraction": FloatDistribution(0.4, 1.0),
    "bagging_fraction": FloatDistribution(0.4, 1.0),
    "bagging_freq": IntDistribution(1, 7),
    "lambda_l1": FloatDistribution(1e-8, 10.0, log=True),
    "lambda_l2": FloatDistribution(1e-8, 10.0, log=True),
}
# LightGBM's own defaults, for the first trial ("what not tuning gives").
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "num_leaves": 31,
    "max_bin": 255,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l1": 0.0,
    "lambda_l2": 0.0,
    "min_data_in_bin": 3,
    "max_depth": -1,
    "min_sum_hessian_in_leaf": 1e-3,
    "min_gain_to_split": 0.0,
    "path_smooth": 0.0,
    "extra_trees": False,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "max_cat_threshold": 32,
    "min_data_per_group": 100,
    "max_cat_to_onehot": 4,
    "boosting": "gbdt",
    "feature_fraction_bynode": 1.0,
    "pos_bagging_fraction": 1.0,
    "neg_bagging_fraction": 1.0,
    "scale_pos_weight": 1.0,
    "min_delta_step": 0.0,
    "max_delta_step": 0.0,
}
# Set by the task, the engine or the budget, never searched.
NOT_SEARCHABLE = (
    "learning_rate",
    "num_threads",
    "seed",
    "objective",
    "metric",
    "num_class",
    "verbose",
    "num_iterations",
    "early_stopping_round",
    "deterministic",
)


def aliases(name: str) -> set[str]:
    """LightGBM's names for one parameter (itself included)."""
    try:
        from lightgbm.basic import _ConfigAliases

        return set(_ConfigAliases.get(name)) | {name}
    except (ImportError, AttributeError):  # private helper; without it only the exact name is matched
        return {name}


def canonical(name: str) -> str:
    """The primary LightGBM name of a parameter given by one of its aliases."""
    for primary in (*LIGHTGBM_DEFAULTS, *NOT_SEARCHABLE):
        if name in aliases(primary):
            return primary
    return name


@dataclass(frozen=True)
class SearchSpace:
    """What one study searches, and what it holds fixed."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]  # held still during the search, learning_rate included
    default_trial: dict[str, Any]  # the first trial: the current parameters, projected into the space
    default_notes: tuple[str, ...] = field(default=())  # where the projection moved a value

    @property
    def learning_rate(self) -> float:
        return float(self.fixed["learning_rate"])

    def describe(self) -> dict[str, str]:
        """Readable ranges, e.g. {'num_leaves': 'int 2..256', 'lambda_l1': 'float 1e-08..10 log'}."""
        return {name: describe(dist) for name, dist in self.distributions.items()}

    def fingerprint(self) -> str:
        text = json.dumps({"space": self.describe(), "fixed": self.fixed}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def trial_params(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """LightGBM parameters of one trial: the fixed ones, then the sampled ones."""
        return {**self.fixed, **sampled}


def tune_section(cfg: Config) -> TuneSection:
    return cfg.tune or TuneSection()


def build_space(cfg: Config) -> SearchSpace:
    """The experiment's search space: defaults, overrides, fixed values and the fixed learning rate."""
    tune = tune_section(cfg)
    base = {canonical(k): v for k, v in cfg.model.params.items()}
    learning_rate = tune.learning_rate or base.get("learning_rate", DEFAULT_PARAMS["learning_rate"])
    fixed = {canonical(k): v for k, v in tune.fixed.items()}
    _check_names(fixed, tune)
    space = dict(DEFAULT_SPACE) if tune.default_space else {}
    for raw_name, entry in tune.search_space.items():
        name = canonical(raw_name)
        space[name] = _distribution(name, entry, space.get(name))
    for name in fixed:
        space.pop(name, None)
    if not space:
        raise ConfigError(
            "the tune search space is empty: tune.default_space is false and tune.search_space "
            "names no parameter; add e.g. tune.search_space.num_leaves = {low = 8, high = 128}"
        )
    fixed["learning_rate"] = learning_rate
    current = {**LIGHTGBM_DEFAULTS, **base, **fixed}
    if current["bagging_freq"] == 0 and current["bagging_fraction"] == 1.0:
        current["bagging_freq"] = 1  # bagging is off either way: the same model as freq 0
    default_trial, notes = {}, []
    overridden = {canonical(n) for n in tune.search_space}
    for name, dist in space.items():
        if name in DEFAULT_SPACE and name not in overridden and name in current:
            space[name], note = widen(name, current[name], dist)
            notes += [note] if note else []
            dist = space[name]
        if name in current:
            default_trial[name], note = project(name, current[name], dist)
            notes += [note] if note else []
        else:
            notes.append(f"{name}: no known default, sampled")
    return SearchSpace(dict(sorted(space.items())), fixed, default_trial, tuple(notes))


def _check_names(fixed: dict[str, Any], tune: TuneSection) -> None:
    names = [*map(canonical, tune.search_space), *fixed]
    banned = sorted({n for n in names if n in NOT_SEARCHABLE})
    if banned:
        raise ConfigError(
            f"tune.search_space / tune.fixed name {banned}, which tuning never sets: the learning "
            "rate is fixed with tune.learning_rate (and tune.final_learning_rate), threads with "
            "model.num_threads, the rest by the task; remove them"
        )


def _distribution(name: str, entry: SearchParam, default: BaseDistribution | None) -> BaseDistribution:
    """One Optuna distribution from a (possibly partial) TOML entry merged over the default one."""
    where = f"tune.search_space.{name}"
    if entry.choices is not None:
        return CategoricalDistribution(list(entry.choices))
    base = default if isinstance(default, IntDistribution | FloatDistribution) else None
    low = entry.low if entry.low is not None else getattr(base, "low", None)
    high = entry.high if entry.high is not None else getattr(base, "high", None)
    if low is None or high is None:
        raise ConfigError(f"{where} needs low and high (or choices), e.g. {name} = {{ low = 1, high = 10 }}")
    log = entry.log if entry.log is not None else bool(getattr(base, "log", False))
    step = entry.step if entry.step is not None else getattr(base, "step", None)
    kind = entry.type or _kind(base, low, high, step)
    if not low < high:
        raise ConfigError(f"{where}: low must be below high (got low={low}, high={high})")
    if log and (low <= 0 or step not in (None, 1)):
        raise ConfigError(f"{where}: a log scale needs low > 0 and no step (got low={low}, step={step})")
    if kind == "int":
        if low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise ConfigError(
                f"{where} is an int parameter; low, high and step must be whole numbers "
                f"(got low={low}, high={high}, step={step})"
            )
        step = int(step or 1)
        if (int(high) - int(low)) % step:
            raise ConfigError(f"{where}: high - low ({int(high) - int(low)}) must be a multiple of step ({step})")
        return IntDistribution(int(low), int(high), log=log, step=step)
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _kind(base: BaseDistribution | None, low: float, high: float, step: float | None) -> str:
    if base is not None:
        return "int" if isinstance(base, IntDistribution) else "float"
    numbers = [v for v in (low, high, step) if v is not None]
    return "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) else "float"


def widen(name: str, value: Any, dist: BaseDistribution) -> tuple[BaseDistribution, str | None]:
    """A default range stretched to hold the experiment's current value (on its step grid), so the
    first trial is exactly the untuned model; a log range cannot reach 0 and is left as it is."""
    if (
        not isinstance(dist, IntDistribution | FloatDistribution)
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or dist.low <= value <= dist.high
        or (dist.log and value <= 0)
    ):
        return dist, None
    step = dist.step or 0
    low, high = min(dist.low, value), max(dist.high, value)
    if step:  # keep the grid: extend by whole steps
        low = dist.low - math.ceil((dist.low - low) / step) * step
        high = dist.high + math.ceil((high - dist.high) / step) * step
    kind = type(dist)
    wider = (
        kind(int(low), int(high), log=dist.log, step=int(step or 1))
        if kind is IntDistribution
        else kind(float(low), float(high), log=dist.log, step=dist.step)
    )
    return (
        wider,
        f"{name}: range widened from {describe(dist)} to {describe(wider)} to hold the current value {value!r}",
    )


def project(name: str, value: Any, dist: BaseDistribution) -> tuple[Any, str | None]:
    """The value nearest `value` inside `dist`, and a note when it had to move."""
    if isinstance(dist, CategoricalDistribution):
        if value in dist.choices:
            return value, None
        return dist.choices[0], f"{name}: current value {value!r} is not a choice, first trial uses {dist.choices[0]!r}"
    target = dist.high if name == "max_depth" and value <= 0 else value  # "no limit" is nearest the deepest
    inner = min(max(float(target), dist.low), dist.high)
    step = getattr(dist, "step", None)
    if step:
        inner = dist.low + round((inner - dist.low) / step) * step
    inner = int(round(inner)) if isinstance(dist, IntDistribution) else float(inner)
    moved = not math.isclose(float(inner), float(value), rel_tol=1e-12, abs_tol=0.0)
    return inner, (
        f"{name}: current value {value!r} is outside {describe(dist)}, first trial uses {inner!r}" if moved else None
    )


def describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "choices " + ", ".join(map(repr, dist.choices))
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    step = getattr(dist, "step", None)
    text = f"{kind} {dist.low:g}..{dist.high:g}"
    if step and step != 1:
        text += f" step {step:g}"
    return text + (" log" if dist.log else "")
