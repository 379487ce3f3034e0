"""The steps of an ensemble run, one member or combiner at a time: `gbpipe ensemble` runs them in its config's
order, `gbpipe auto` in its portfolio's, each under the time budget's rule (budget.py).

A member comes from the unfinished run itself (--resume), else the member cache, else it is trained; the
combiners learn from the members' OOF predictions only, those fitted on labels refitted per fold.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import Config
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock, TimeUp
from pipeline.core.errors import ConfigError
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunWriter
from pipeline.data.prepare import Prepared

from .budget import EnsembleBudget
from .combiner_settings import CombinerSettings
from .combiners import FITTED_ON_LABELS, Combiner, fit_combiner, nested_oof, rank_grid
from .members import train_member
from .result import MemberResult
from .scores import Candidate
from .store import (
    MEMBER_DOC,
    cache_key,
    from_training_run,
    member_files,
    read_cached,
    result_from_files,
    write_cached,
)

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster


@dataclass(frozen=True)
class MemberStep:
    """How one member is to be obtained: where finished members may come from, and its place in the budget."""

    resume: bool
    use_cache: bool
    cost: float
    mandatory: bool  # trained whatever the budget says: the run's first answer, or the model ensemble.use names
    n_models_after: int
    cluster: Cluster | None = None  # where members' folds train (None: in this process)


def obtain_member(
    cfg: Config,
    prep: Prepared,
    writer: RunWriter,
    member: EnsembleMember,
    step: MemberStep,
    budget: EnsembleBudget,
    progress: Progress = QUIET,
) -> tuple[MemberResult | None, str]:
    """The member and where it came from (resumed, cache, trained), or None and why not (skipped, stopped)."""
    key = cache_key(cfg, prep, member)
    folder = f"members/{member.name}/"
    result, source = (_staged(writer, folder, key, prep) if step.resume else None), "resumed"
    if result is None and step.use_cache:
        result, source = read_cached(cfg, prep, key), "cache"
    if result is None and step.use_cache:
        found = from_training_run(cfg, prep, member)
        if found is not None:
            (result, run_dir), source = found, "run"
            progress.say(f"member {member.name}: the same model as training run {run_dir.name}, taken from it")
    if result is None:
        result, source = _train(cfg, prep, member, step, budget, progress)
        if result is None:
            return None, source
    if source != "resumed":
        files = member_files(cfg, prep, member, result, key)
        for name, data in files.items():
            writer.write_bytes(folder + name, data)
        if step.use_cache and source in ("trained", "run"):
            write_cached(cfg, key, files, writer.path(folder))
    budget.observe(result, step.cost)
    budget.probe(cfg, prep, result)
    return result, source


def _train(
    cfg: Config, prep: Prepared, member: EnsembleMember, step: MemberStep, budget: EnsembleBudget, progress: Progress
) -> tuple[MemberResult | None, str]:
    estimate = budget.member_estimate(member.family, step.cost)
    if not budget.admit(member.name, "member", estimate, step.n_models_after, step.mandatory):
        return None, "skipped"
    guess = f", about {estimate:.1f}s" if estimate is not None and budget.active else ""
    progress.say(f"member {member.name} ({member.family}): training on {len(prep.folds.pairs())} folds{guess}")
    folds_progress = Progress(quiet=progress.quiet, stream=progress.stream)  # its own clock and ETA
    stop = None if step.mandatory else budget.stop_clock(step.n_models_after)
    try:
        return train_member(cfg, prep, member, folds_progress, stop, step.cluster), "trained"
    except TimeUp as stop:
        budget.stopped(member.name, "member", estimate, str(stop))
        return None, "stopped"


def _staged(writer: RunWriter, folder: str, key: str, prep: Prepared) -> MemberResult | None:
    """A member this unfinished run already finished (member.json is written last), if its key still matches."""
    if not writer.exists(folder + MEMBER_DOC):
        return None
    if json.loads(writer.path(folder + MEMBER_DOC).read_text()).get("cache_key") != key:
        return None
    return result_from_files(lambda name: writer.path(folder + name).read_bytes(), prep)


def results_as_candidates(results: list[MemberResult]) -> list[Candidate]:
    return [
        Candidate(
            r.name,
            "member",
            r.oof_pred,
            r.test_pred,
            "oof (each fold's model predicts its validation rows)",
            family=r.family,
        )
        for r in results
    ]


def combiner_settings(cfg: Config, prep: Prepared, names: tuple[str, ...] | None = None) -> CombinerSettings:
    """What fitting a combiner needs, for the members `names` (default: every member of the config)."""
    section = cfg.ensemble
    names = tuple(m.name for m in section.members) if names is None else names
    weights = None
    if section.vote_weights:
        weights = tuple(float(section.vote_weights.get(name, 0.0)) for name in names)
        weights = weights if sum(weights) > 0 else None
    raw_columns = stack_columns(cfg, prep)
    return CombinerSettings(
        task=cfg.data.task,
        metric=cfg.metric,
        n_classes=prep.labels.n_classes,
        vote_weights=weights,
        blend_on=section.blend_on,
        greedy_iterations=section.greedy_iterations,
        stack_model=section.stack_model,
        stack_regularization=section.stack_regularization,
        stack_lgb_rounds=section.stack_lgb_rounds,
        raw_columns=raw_columns,
        seed=cfg.cv.seed,
        num_threads=cfg.model.num_threads,
    )


def stack_columns(cfg: Config, prep: Prepared) -> tuple[int, ...]:
    """Positions in X of the raw features the stack also sees (numeric features only)."""
    columns = list(prep.schema.columns)
    wanted = cfg.ensemble.stack_features
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise ConfigError(f"ensemble.stack_features names {unknown}, which are not features; features are {columns}")
    categorical = [c for c in wanted if prep.schema.kinds[c] == "categorical"]
    if categorical:
        raise ConfigError(
            f"ensemble.stack_features: {categorical} are categorical; the stack takes numeric features only"
        )
    return tuple(columns.index(c) for c in wanted)


@dataclass(frozen=True)
class MemberPredictions:
    """The members' OOF and test predictions with the stack's raw features, row-aligned."""

    names: tuple[str, ...]
    oof: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...] | None
    raw: np.ndarray | None
    raw_test: np.ndarray | None

    def rows(self, idx: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
        return [p[idx] for p in self.oof], (self.raw[idx] if self.raw is not None else None)


def combine(
    cfg: Config,
    prep: Prepared,
    results: list[MemberResult],
    progress: Progress = QUIET,
    budget: EnsembleBudget | None = None,
) -> list[Candidate]:
    """Fit every configured combiner that fits the budget on the members' OOF predictions; honest OOF for
    those fitted on labels."""
    section = cfg.ensemble
    if len(results) < 2:  # only when members were skipped for time: the plan's check asks for two
        for kind in section.combiners if budget is not None and budget.active else ():
            budget.stopped(kind, "combiner", None, "it needs two members, and fewer fitted the time budget")
        return []
    settings = combiner_settings(cfg, prep, tuple(r.name for r in results))
    raw_idx = list(settings.raw_columns)
    has_test = all(r.test_pred is not None for r in results)
    preds = MemberPredictions(
        tuple(r.name for r in results),
        tuple(r.oof_pred for r in results),
        tuple(r.test_pred for r in results) if has_test else None,
        prep.X[:, raw_idx] if raw_idx else None,
        prep.X_test[:, raw_idx] if raw_idx and has_test else None,
    )
    finite = [np.isfinite(p).all(axis=1) if p.ndim == 2 else np.isfinite(p) for p in preds.oof]
    scored = prep.folds.validated() & np.logical_and.reduce(finite)
    grids = tuple(rank_grid(p[scored]) for p in preds.oof) if section.blend_on == "rank" else ()
    candidates: list[Candidate] = []
    for done, kind in enumerate(section.combiners, start=1):
        stop, estimate = None, None
        if budget is not None:
            estimate = budget.combiner_estimate(cfg, kind, len(results), prep.folds.n_splits)
            n_after = len(results) + len(candidates) + 1
            if not budget.admit(kind, "combiner", estimate, n_after, mandatory=kind == section.use):
                progress.step("combiner", done, len(section.combiners), f"{kind} skipped: {budget.skipped[-1].reason}")
                continue
            stop = None if kind == section.use else budget.stop_clock(n_after)
        try:
            candidates.append(fit_candidate(kind, settings, prep, preds, scored, grids, stop))
        except TimeUp as late:
            budget.stopped(kind, "combiner", estimate, str(late))
            progress.step("combiner", done, len(section.combiners), f"{kind} stopped: {late}")
            continue
        progress.step("combiner", done, len(section.combiners), kind)
    return candidates


def fit_candidate(
    kind: str,
    settings: CombinerSettings,
    prep: Prepared,
    preds: MemberPredictions,
    scored: np.ndarray,
    grids: tuple,
    stop: Clock | None = None,
) -> Candidate:
    """One combiner: fitted on all scored OOF rows (its test predictions and saved weights), and, when it
    learns from labels, refitted per fold so its reported OOF never saw the rows it predicts. With `stop`, it
    raises TimeUp after the first fit when the per-fold refits, at that fit's pace, cannot end in time: a
    combiner's cost is estimated from metric evaluations, which a slow meta-model (a multiclass stack) outruns."""

    def fit(idx: np.ndarray) -> Combiner:
        member_preds, raw = preds.rows(idx)
        return fit_combiner(kind, preds.names, settings, prep.y[idx], member_preds, raw, grids)

    def predict_rows(combiner: Combiner, idx: np.ndarray) -> np.ndarray:
        member_preds, raw = preds.rows(idx)
        return combiner.predict(member_preds, raw)

    width = settings.n_classes if settings.task == "multiclass" else 1
    scored_idx = np.flatnonzero(scored)
    started = time.time()
    full = fit(scored_idx)
    if stop is not None and kind in FITTED_ON_LABELS:
        stop.pace(f"combiner {kind}", started, 1, 1 + prep.folds.n_splits, parts="fits")
    in_sample = np.full((len(scored), width) if width > 1 else len(scored), np.nan)
    in_sample[scored_idx] = predict_rows(full, scored_idx)
    test_pred = full.predict(list(preds.test), preds.raw_test) if preds.test is not None else None
    if kind not in FITTED_ON_LABELS:
        return Candidate(
            kind, kind, in_sample, test_pred, "oof (fixed weights, nothing fitted on labels)", combiner=full
        )
    honest = nested_oof(fit, prep.folds, scored, predict_rows, width)
    return Candidate(
        kind,
        kind,
        honest,
        test_pred,
        "nested oof (refitted on the other folds' OOF rows for each fold of the experiment's folds)",
        in_sample_oof=in_sample,
        combiner=full,
    )
