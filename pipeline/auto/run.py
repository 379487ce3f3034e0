"""`gbpipe auto`: the best model a wall-clock budget allows, from a config that needs only [data].

In order: the data; the default LightGBM (always, so there is an answer); tuning trials (within the portfolio's
share of the time left); LightGBM at the best trial's parameters; the portfolio's members; the
combiners; then the comparison that recommends a model, and the run folder, an ensemble run that predict,
report and runs read as any other. Each step after the default model starts only when its estimate, made from
the steps that already ran, and the finish after it fit the time left (pipeline/core/budget.py); a step that
runs long is stopped between two folds.

Anytime: Ctrl-C (or SIGTERM) after the default model stops the running step and publishes what finished; a
killed run keeps its unfinished folder. --resume continues either (pipeline/auto/place.py).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config, dump_config_toml, read_params_file, validate_config
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunWriter
from pipeline.data.prepare import Prepared, prepare
from pipeline.ensemble.budget import EnsembleBudget
from pipeline.ensemble.result import MemberResult
from pipeline.ensemble.run import PLAN as ENSEMBLE_PLAN
from pipeline.ensemble.run import schema_document, write_ensemble
from pipeline.ensemble.scores import Candidate, compare
from pipeline.ensemble.steps import MemberStep, combine, obtain_member, results_as_candidates
from pipeline.tune.evaluator import Evaluation
from pipeline.tune.options import tune_dir, tune_options
from pipeline.tune.run import search

from .place import Place, check_plan, find_place
from .portfolio import DEFAULT_MEMBER, TUNED_MEMBER, LoadedPortfolio, Plan, Portfolio, plan_for
from .steps import STEPS, StepLog

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

TUNED_OVERHEAD = 1.2  # a trial's model, retrained as a member, also predicts the test rows and is saved
REPRODUCIBLE = "reproducible: the same config, data, portfolio, seed and --max-trials give the same models and scores"
CLOCK_DEPENDENT = (
    "depends on the clock: which steps fitted the time budget depends on the machine and its load; "
    "--max-trials without --time-budget gives a reproducible search"
)


@dataclass(frozen=True)
class AutoOptions:
    seconds: float | None = None  # --time-budget
    max_trials: int | None = None  # tuning trials after the default model, earlier calls' included
    run_id: str | None = None
    resume: bool = False
    cluster: Cluster | None = field(default=None, compare=False)  # where LightGBM folds train; None: here


@dataclass(frozen=True)
class AutoResult:
    run_dir: Path
    interrupted: bool
    recommended: str
    selected: str
    oof_score: float


def auto(
    cfg: Config, loaded: LoadedPortfolio, options: AutoOptions, clock: Clock, progress: Progress = QUIET
) -> AutoResult:
    """Run the portfolio on the experiment within the clock and publish the run (see the module's docstring)."""
    base = cfg.model_copy(update={"ensemble": None, "tune": None})  # the portfolio stands in for both
    place = find_place(base, options.run_id, options.resume)
    plan = plan_for(loaded, base)  # every problem of the portfolio, before the data is read
    prep = prepare(base, progress)
    with RunWriter(place.run_dir, resume=place.in_place) as writer:
        run = AutoRun(base, loaded, plan, prep, clock, options, place, writer, progress)
        run.start()
        interrupted = run.search()
        return run.finish(interrupted)


def auto_config(
    base: Config, portfolio: Portfolio, members: tuple[EnsembleMember, ...], combiners: tuple[str, ...] | None = None
) -> Config:
    """The experiment as auto runs it: its own sections, the portfolio's [tune], and an [ensemble] of `members`."""
    raw = base.to_dict()
    raw["tune"] = portfolio.tune.section().model_dump(mode="json", exclude_none=True)
    ensemble = {
        **portfolio.ensemble.settings(),
        "members": [m.model_dump(mode="json", exclude_none=True) for m in members],
    }
    if combiners is not None:
        ensemble["combiners"] = list(combiners)
    raw["ensemble"] = {k: v for k, v in ensemble.items() if v is not None}
    return validate_config(raw, source="the experiment with gbpipe auto's portfolio")


class AutoRun:
    """One auto run's steps, their record, and the members they produced."""

    def __init__(
        self,
        base: Config,
        loaded: LoadedPortfolio,
        plan: Plan,
        prep: Prepared,
        clock: Clock,
        options: AutoOptions,
        place: Place,
        writer: RunWriter,
        progress: Progress,
    ):
        self.base, self.loaded, self.plan, self.prep, self.clock = base, loaded, plan, prep, clock
        self.options, self.place, self.writer, self.progress = options, place, writer, progress
        self.default = EnsembleMember(name=DEFAULT_MEMBER, family="lightgbm")
        self.cfg = auto_config(base, loaded.portfolio, (self.default,))
        self.budget = EnsembleBudget(clock)
        self.log = StepLog(clock, progress, writer)
        self.results: list[MemberResult] = []
        self.members: list[EnsembleMember] = []
        self.tuning: dict[str, Any] | None = None

    def start(self) -> None:
        """The plan (checked against an unfinished run's), the schema and the folds; the data step's record."""
        plan = {
            "config": dump_config_toml(self.base),
            "portfolio": self.loaded.text,
            "portfolio_source": self.loaded.source,
            "study": self.place.study,
            "resumed_from": self.place.previous,
        }
        check_plan(self.writer, plan, self.place.in_place)
        self.writer.write_json("schema.json", schema_document(self.cfg, self.prep))
        self.writer.write_parquet("folds.parquet", self.prep.folds.to_frame(self.prep.ids))
        rows, features = len(self.prep.y), len(self.prep.schema.columns)
        self.log.record("data", "prepare", "ran", f"{rows} rows, {features} features", rows=rows, features=features)
        for name, why in self.plan.left_out:
            self.log.record("member", name, "left out", why)

    def search(self) -> bool:
        """Every step up to the combiners; True when Ctrl-C or SIGTERM stopped it after the default model."""
        self.obtain(self.default, 1.0, mandatory=True)  # an interruption here leaves nothing to publish
        try:
            self.tune()
            self.tuned()
            for planned in self.plan.members:
                self.obtain(planned.member, planned.cost)
        except KeyboardInterrupt:
            self.log.record("run", "search", "stopped", "interrupted: finishing with the models that completed")
            return True
        return False

    def obtain(self, member: EnsembleMember, cost: float, mandatory: bool = False) -> None:
        """One member, trained or reused, unless it does not fit the time left."""
        use_cache = self.cfg.ensemble.cache
        step = MemberStep(self.place.in_place, use_cache, cost, mandatory, len(self.results) + 1, self.options.cluster)
        estimate = self.budget.member_estimate(member.family, cost)
        result, source = obtain_member(self.cfg, self.prep, self.writer, member, step, self.budget, self.progress)
        if result is None:
            reason = self.budget.skipped[-1].reason
            self.log.record("member", member.name, source, reason, family=member.family, estimate_seconds=estimate)
            return
        self.results.append(result)
        self.members.append(member)
        trained = source == "trained"
        self.log.record(
            "member",
            member.name,
            "ran" if trained else "reused",
            f"{member.family}, {source}, OOF {self.cfg.metric} {result.oof_score:.5f}",
            family=member.family,
            source=source,
            estimate_seconds=estimate if trained else None,
            seconds=result.seconds if trained else None,
            oof_score=result.oof_score,
        )

    def tune(self) -> None:
        """Trials of the run's study after the default model, within the portfolio's share of the time left."""
        settings = self.loaded.portfolio.tune
        extra = settings.max_trials if self.options.max_trials is None else self.options.max_trials
        if extra == 0:
            self.log.record("tune", "trials", "skipped", "no trials allowed (max_trials 0)", study=self.place.study)
            return
        default = self.results[0]
        reserve = default.seconds * TUNED_OVERHEAD + self.budget.finish_estimate(len(self.results) + 1)
        rest = self.clock.until(reserve)
        # trials start and end within the share: one that runs long is stopped at its end, not at the budget's
        tune_clock = rest.capped(None if self.clock.deadline is None else time.time() + settings.share * rest.left())
        options = tune_options(self.cfg, extra + 1, None, 1, None, True, False, self.place.study)
        first = Evaluation(default.oof_score, default.fold_scores, default.best_iterations, default.seconds)
        trials_progress = Progress(quiet=self.progress.quiet, stream=self.progress.stream)  # its own clock
        cluster = self.options.cluster
        self.tuning = search(self.cfg, options, self.prep, tune_clock, trials_progress, first, True, cluster)
        counts, best, ran = self.tuning["counts"], self.tuning["best"] or {}, self.tuning["ran_here"]
        detail = (
            f"{ran} trial(s) run now, {self.tuning['n_finished']} in the study; best {self.cfg.metric} "
            f"{best.get('value', float('nan')):.5f}"
            + (f"; no more: {self.tuning['stopped']}" if self.tuning["stopped"] else "")
        )
        status = "skipped" if ran == 0 and self.tuning["stopped"] else "ran"
        self.log.record(
            "tune", "trials", status, detail, study=self.place.study, trials=counts, best_trial=best.get("trial")
        )

    def tuned(self) -> None:
        """LightGBM at the best trial's parameters, when a trial beat the default parameters."""
        if self.tuning is None or self.tuning["best"] is None:
            return
        best, default_trial = self.tuning["best"], self.tuning["default_trial"].get("trial")
        if best["trial"] == default_trial:
            self.log.record("member", TUNED_MEMBER, "left out", "no trial beat the default parameters")
            return
        params = read_params_file(tune_dir(self.cfg, self.place.study) / "best_params.json")
        member = EnsembleMember(name=TUNED_MEMBER, family="lightgbm", params=params)
        default_seconds = self.results[0].seconds
        cost = best["seconds"] * TUNED_OVERHEAD / default_seconds if best.get("seconds") and default_seconds else 1.0
        self.obtain(member, cost)

    def combiners(self, interrupted: bool) -> list[Candidate]:
        kinds = self.cfg.ensemble.combiners
        if interrupted or (len(self.results) < 2 and self.clock.deadline is None):
            status, why = ("skipped", "interrupted") if interrupted else ("left out", "a combiner needs two members")
            for kind in kinds:
                self.log.record("combiner", kind, status, why)
            return []
        cfg = auto_config(self.base, self.loaded.portfolio, tuple(self.members))
        n_folds = self.prep.folds.n_splits
        estimates = {kind: self.budget.combiner_estimate(cfg, kind, len(self.results), n_folds) for kind in kinds}
        before = len(self.budget.skipped)
        fitted = combine(cfg, self.prep, self.results, QUIET, self.budget)
        skipped = {s.name: s for s in self.budget.skipped[before:]}
        for kind in kinds:
            status, detail = ("skipped", skipped[kind].reason) if kind in skipped else ("ran", "")
            self.log.record("combiner", kind, status, detail, estimate_seconds=estimates[kind])
        return fitted

    def finish(self, interrupted: bool) -> AutoResult:
        """Combiners that fit, the comparison, the run's files, and the published run."""
        fitted = self.combiners(interrupted)
        final = auto_config(self.base, self.loaded.portfolio, tuple(self.members), tuple(c.name for c in fitted))
        candidates = results_as_candidates(self.results) + fitted
        self.progress.say(f"comparing {len(candidates)} models")
        scores = {**compare(final, self.prep, candidates), "budget": self.budget_document(interrupted)}
        self.clear_stale()
        self.writer.write_text("config.toml", dump_config_toml(final))
        self.writer.write_json(
            ENSEMBLE_PLAN,
            {"members": [m.model_dump(mode="json") for m in self.members], "combiners": list(final.ensemble.combiners)},
        )
        write_ensemble(self.writer, final, self.prep, candidates, scores, self.clock.elapsed())
        self.writer.write_json(STEPS, self.log.document(self.summary(scores, interrupted)))
        run_dir = self.writer.publish(
            {
                "experiment": final.experiment.name,
                "run_id": self.writer.final_dir.name,
                "kind": "ensemble",
                "search": "auto",
                "config_hash": self.base.hash(),
                "data_fingerprint": self.prep.data_fingerprint,
            },
            stage="ensemble",
            update_latest=False,
        )
        best = scores["models"][scores["selected"]]
        self.progress.say(
            f"recommended: {scores['recommended']} (OOF {final.metric} {best['oof_score']:.5f}) after "
            f"{self.clock.elapsed():.1f}s; run written to {run_dir}"
        )
        return AutoResult(run_dir, interrupted, scores["recommended"], scores["selected"], best["oof_score"])

    def clear_stale(self) -> None:
        """Files an earlier, killed attempt of this run left that this one does not replace."""
        keep = {m.name for m in self.members}
        for folder in self.writer.path("members").glob("*") if self.writer.path("members").is_dir() else ():
            if folder.name not in keep:
                shutil.rmtree(folder)
        shutil.rmtree(self.writer.path("ensemble"), ignore_errors=True)

    def budget_document(self, interrupted: bool) -> dict[str, Any]:
        return {
            **self.budget.document(),
            "max_trials": self.options.max_trials,
            "clock_dependent": self.clock.deadline is not None,
            "reproducibility": CLOCK_DEPENDENT if self.clock.deadline is not None else REPRODUCIBLE,
            "interrupted": interrupted,
        }

    def summary(self, scores: dict[str, Any], interrupted: bool) -> dict[str, Any]:
        return {
            "experiment": self.base.experiment.name,
            "study": self.place.study,
            "resumed_from": self.place.previous,
            "continued_in_place": self.place.in_place,
            "portfolio": self.loaded.source,
            "portfolio_sha256": hashlib.sha256(self.loaded.text.encode()).hexdigest(),
            "time_budget_seconds": self.clock.budget,
            "max_trials": self.options.max_trials,
            "clock_dependent": self.clock.deadline is not None,
            "reproducibility": CLOCK_DEPENDENT if self.clock.deadline is not None else REPRODUCIBLE,
            "interrupted": interrupted,
            "recommended": scores["recommended"],
            "selected": scores["selected"],
            "oof_score": scores["oof_score"],
            "skipped_for_time": [
                s["name"] for s in self.log.steps if s["status"] in ("skipped", "stopped") and s["kind"] != "run"
            ],
            "elapsed_seconds": self.clock.elapsed(),
        }
