"""An ensemble under a time budget (pipeline/core/budget.py's rule): how long each member and combiner will take,
estimated from the members already trained, and which of them fit the time left.

Members: every family has a relative cost (LightGBM at the config's parameters = 1, scaled by the number of
trees a forest or HistGradientBoosting grows); seconds per unit of cost are measured on the members trained so
far, this family's when one has run, else all of them. Combiners: their fits are counted in metric evaluations,
timed on the OOF rows. Finishing (paired bootstrap of every model, files, publish) is timed once on the first
member, so each step is started only when it and the finish after it fit what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline.config import Config
from pipeline.config.lightgbm_params import DEFAULT_PARAMS, primary
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock
from pipeline.data.prepare import Prepared

from .combiners import FITTED_ON_LABELS, fast_score
from .members import SKLEARN_DEFAULTS, member_params
from .result import MemberResult
from .scores import Candidate, compare

# Seconds relative to a LightGBM member at the config's parameters on the same folds: priors, used until the
# family itself has been timed on this table.
FAMILY_COST = {
    "lightgbm": 1.0,
    "hist_gradient_boosting": 1.5,
    "extra_trees": 1.0,
    "random_forest": 2.0,
    "logistic": 0.5,
    "ridge": 0.1,
    "xgboost": 2.0,
    "catboost": 4.0,
}
SIZE_PARAM = {"hist_gradient_boosting": "max_iter", "extra_trees": "n_estimators", "random_forest": "n_estimators"}
# Metric evaluations a combiner's fit costs per member (greedy: per member and iteration).
COMBINER_EVALS = {"hard_vote": 1.0, "soft_vote": 1.0, "greedy": 1.25, "optimized": 5.0, "stack": 16.0}
STACK_LGB_EVALS_PER_ROUND = 0.05
# A step is admitted only when this multiple of its estimate fits: the machine's load can change while it runs.
SAFETY = 1.2


@dataclass(frozen=True)
class Skipped:
    """A member or combiner left out for time: its estimate against the time left, or why it stopped."""

    name: str
    kind: str
    estimate_seconds: float | None
    left_seconds: float
    reason: str


def member_cost(member: EnsembleMember, model_params: Mapping[str, Any]) -> float:
    """The member's relative cost (a portfolio gives its members' own): its family's, scaled by the trees a
    forest or HistGradientBoosting grows, or for LightGBM by the rounds early stopping needs, which grow as the
    learning rate falls below the config's (`model_params`)."""
    cost, params = FAMILY_COST[member.family], member_params(member)
    key = SIZE_PARAM.get(member.family)
    size = params.get(key) if key else None
    if isinstance(size, int | float) and not isinstance(size, bool) and size > 0:
        cost *= size / SKLEARN_DEFAULTS[member.family][key]
    if member.family == "lightgbm":
        rate, own = _learning_rate(model_params), _learning_rate({**model_params, **params})
        cost *= rate / own if rate and own else 1.0
    return cost


def _learning_rate(params: Mapping[str, Any]) -> float | None:
    rates = [v for k, v in params.items() if primary(k) == "learning_rate" and isinstance(v, int | float)]
    value = rates[-1] if rates else DEFAULT_PARAMS["learning_rate"]
    return float(value) if value > 0 else None


class EnsembleBudget:
    """Estimates for one ensemble run's members, combiners and finish, and the record of what was left out."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.timed: list[tuple[str, float, float]] = []  # family, relative cost, seconds
        self.finish_fixed = 0.0
        self.finish_each: float | None = None
        self.unit: float | None = None  # seconds of one metric evaluation on the OOF rows
        self.skipped: list[Skipped] = []

    @property
    def active(self) -> bool:
        return self.clock.deadline is not None

    def observe(self, result: MemberResult, cost: float) -> None:
        if result.seconds > 0:
            self.timed.append((result.family, cost, result.seconds))

    def member_estimate(self, family: str, cost: float) -> float | None:
        """Seconds for a member of relative `cost`: from members of its family when some were timed, else all."""
        pool = [t for t in self.timed if t[0] == family] or self.timed
        if not pool:
            return None
        return sum(t[2] for t in pool) / sum(t[1] for t in pool) * cost

    def combiner_estimate(self, cfg: Config, kind: str, n_members: int, n_folds: int) -> float | None:
        if self.unit is None:
            return None
        section = cfg.ensemble
        evals = COMBINER_EVALS[kind] * n_members
        if kind == "greedy":
            evals *= section.greedy_iterations
        if kind == "stack" and section.stack_model == "lightgbm":
            evals *= 1.0 + STACK_LGB_EVALS_PER_ROUND * section.stack_lgb_rounds
        fits = 1 + n_folds if kind in FITTED_ON_LABELS else 1
        return self.unit * evals * fits

    def finish_estimate(self, n_models: int) -> float:
        """Seconds to compare `n_models` models and write the run (0 until timed)."""
        if self.finish_each is None:
            return 0.0
        return self.finish_fixed + self.finish_each * n_models

    def probe(self, cfg: Config, prep: Prepared, result: MemberResult) -> None:
        """Time the finish (the comparison of one, then two models) and one metric evaluation, on the first member."""
        if not self.active or self.finish_each is not None:
            return
        probe_cfg = cfg.model_copy(update={"ensemble": cfg.ensemble.model_copy(update={"use": "recommended"})})
        one = Candidate(result.name, "member", result.oof_pred, result.test_pred, "probe")
        single = _timed(lambda: compare(probe_cfg, prep, [one]))
        double = _timed(lambda: compare(probe_cfg, prep, [one, replace(one, name=f"{result.name}.probe")]))
        self.finish_each = max(double - single, single / 4)
        self.finish_fixed = max(0.0, single - self.finish_each)
        validated = prep.folds.validated()
        y, pred = prep.y[validated], result.oof_pred[validated]
        self.unit = _timed(lambda: [fast_score(cfg.metric, y, pred) for _ in range(3)]) / 3

    def admit(self, name: str, kind: str, estimate: float | None, n_models_after: int, mandatory: bool = False) -> bool:
        """Whether a step may start: it and the finish after it fit the time left; else it is recorded as skipped."""
        if mandatory or not self.active:
            return True
        needed = None if estimate is None else estimate * SAFETY + self.finish_estimate(n_models_after)
        if self.clock.fits(needed):
            return True
        reason = (
            "the time budget had run out"
            if needed is None
            else f"estimated {estimate:.1f}s (with its margin and the finish, {needed:.1f}s) exceeds the "
            f"{self.clock.left():.1f}s left"
        )
        self.skipped.append(Skipped(name, kind, estimate, self.clock.left(), reason))
        return False

    def stopped(self, name: str, kind: str, estimate: float | None, reason: str) -> None:
        self.skipped.append(Skipped(name, kind, estimate, self.clock.left(), reason))

    def stop_clock(self, n_models_after: int) -> Clock | None:
        """The clock a running member checks (None without a budget): it stops when, at its pace, it and the
        finish after it cannot end in time."""
        if not self.active:
            return None
        return self.clock.until(self.finish_estimate(n_models_after))

    def document(self) -> dict[str, Any]:
        """The budget part of ensemble/scores.json."""
        return {
            "time_budget_seconds": self.clock.budget,
            "clock_dependent": self.active,
            "skipped": [asdict(s) for s in self.skipped],
        }


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
