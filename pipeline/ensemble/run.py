"""`gbpipe ensemble`: train the configured members on the shared folds, combine their OOF predictions,
score every member and combiner honestly, and write an ensemble run folder.

Run folder: config.toml, schema.json, folds.parquet, members/<name>/ (oof.parquet, test_pred.parquet,
scores.json, member.json, models/), ensemble/ (plan.json, weights.json, meta_model.json [+ .txt],
oof.parquet, test_pred.parquet, scores.json, report.md) and manifest.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config, dump_config_toml
from pipeline.config.sections import EnsembleSection
from pipeline.core.errors import ConfigError
from pipeline.core.names import check_run_id
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunWriter, new_run_id, resumable_run
from pipeline.data.prepare import Prepared, prepare
from pipeline.engine import outputs

from .combiner_settings import CombinerSettings
from .combiners import FITTED_ON_LABELS, Combiner, fit_combiner, nested_oof, rank_grid
from .members import check_member, train_member
from .result import MemberResult
from .scores import Candidate, compare, render_markdown
from .store import (
    MEMBER_DOC,
    cache_key,
    member_files,
    oof_frame,
    read_cached,
    result_from_files,
    test_frame,
    write_cached,
)

PLAN = "ensemble/plan.json"  # written first: marks an unfinished run as an ensemble run for --resume


def ensemble(
    cfg: Config, run_id: str | None = None, resume: bool = False, progress: Progress = QUIET, use_cache: bool = True
) -> Path:
    """Train missing members, fit the combiners, compare everything, and publish the run; returns its path."""
    section = require_section(cfg)
    started = time.perf_counter()
    run_dir = ensemble_run_dir(cfg, run_id, resume)
    prep = prepare(cfg, progress)
    check_plan(cfg, prep)  # before the run folder exists: a config error leaves nothing behind
    with RunWriter(run_dir, resume=resume) as writer:  # a failed run lets go of its lock for --resume
        config_text = dump_config_toml(cfg)
        if resume and writer.exists("config.toml") and writer.path("config.toml").read_text() != config_text:
            raise ConfigError(
                f"--resume: the config differs from the one {writer.staging} was started with; "
                "resume with the same config, or start a new run"
            )
        writer.write_text("config.toml", config_text)
        writer.write_json(
            PLAN,
            {"members": [m.model_dump(mode="json") for m in section.members], "combiners": list(section.combiners)},
        )
        writer.write_json("schema.json", schema_document(cfg, prep))
        writer.write_parquet("folds.parquet", prep.folds.to_frame(prep.ids))
        results = obtain_members(cfg, prep, writer, resume, use_cache and section.cache, progress)
        candidates = results_as_candidates(results) + combine(cfg, prep, results, progress)
        progress.say(f"comparing {len(candidates)} models with {section.bootstrap_n} paired bootstrap resamples")
        scores = compare(cfg, prep, candidates)
        write_ensemble(writer, cfg, prep, candidates, scores, time.perf_counter() - started)
        run_dir = writer.publish(
            {
                "experiment": cfg.experiment.name,
                "run_id": writer.final_dir.name,
                "kind": "ensemble",
                "config_hash": cfg.hash(),
                "data_fingerprint": prep.data_fingerprint,
            },
            stage="ensemble",
            update_latest=False,
        )
    best = scores["models"][scores["selected"]]
    progress.say(
        f"recommended: {scores['recommended']}; selected {scores['selected']} with OOF {cfg.metric} "
        f"{best['oof_score']:.5f}; run written to {run_dir}"
    )
    return run_dir


def require_section(cfg: Config) -> EnsembleSection:
    if cfg.ensemble is None:
        raise ConfigError(
            f"experiment {cfg.experiment.name!r} has no [ensemble] section; add members, e.g.\n"
            '  [[ensemble.members]]\n  name = "lgb"\n  family = "lightgbm"\n'
            '  [[ensemble.members]]\n  name = "forest"\n  family = "extra_trees"'
        )
    return cfg.ensemble


def ensemble_run_dir(cfg: Config, run_id: str | None, resume: bool) -> Path:
    """The run folder to write; with --resume and no id, the newest unfinished ensemble run no process is writing."""
    exp_dir = Path(cfg.experiment.runs_dir) / cfg.experiment.name
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    if run_id is None and resume:
        return resumable_run(exp_dir, "ensemble run", accept=lambda staging: (staging / PLAN).is_file())
    return exp_dir / (run_id or new_run_id(cfg.hash(), "ensemble"))


def check_plan(cfg: Config, prep: Prepared) -> None:
    """Rules that depend on the task or the data: raise ConfigError before anything is trained."""
    section, task = require_section(cfg), cfg.data.task
    for member in section.members:
        check_member(cfg, member)
    names = [m.name for m in section.members]
    if section.combiners and len(names) < 2:
        raise ConfigError(f"ensemble: combiners {list(section.combiners)} need at least two members; got {names}")
    if "hard_vote" in section.combiners and task == "regression":
        raise ConfigError(
            "ensemble.combiners: 'hard_vote' votes on class labels, which regression has not; "
            "use 'soft_vote' (the mean)"
        )
    if section.blend_on == "rank" and (task != "binary" or cfg.metric != "auc"):
        raise ConfigError(
            f"ensemble.blend_on = 'rank' gives scores, not probabilities: it needs a binary task "
            f"scored by auc (got {task}, {cfg.metric}); use blend_on = 'proba'"
        )
    if section.use not in ("recommended", *names, *section.combiners):
        raise ConfigError(
            f"ensemble.use {section.use!r} is neither a member nor one of the combiners {list(section.combiners)}"
        )
    stack_columns(cfg, prep)


def stack_columns(cfg: Config, prep: Prepared) -> tuple[int, ...]:
    """Positions in X of the raw features the stack also sees (numeric features only)."""
    columns = list(prep.schema.columns)
    wanted = require_section(cfg).stack_features
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise ConfigError(f"ensemble.stack_features names {unknown}, which are not features; features are {columns}")
    categorical = [c for c in wanted if prep.schema.kinds[c] == "categorical"]
    if categorical:
        raise ConfigError(
            f"ensemble.stack_features: {categorical} are categorical; the stack takes numeric features only"
        )
    return tuple(columns.index(c) for c in wanted)


def schema_document(cfg: Config, prep: Prepared) -> dict:
    """What `gbpipe predict` needs, marked as an ensemble's."""
    return {**outputs.schema_document(cfg, prep), "kind": "ensemble"}


def obtain_members(
    cfg: Config, prep: Prepared, writer: RunWriter, resume: bool, use_cache: bool, progress: Progress
) -> list[MemberResult]:
    """Each member from this unfinished run (--resume), else the member cache, else trained now."""
    members = require_section(cfg).members
    results = []
    for done, member in enumerate(members, start=1):
        key = cache_key(cfg, prep, member)
        folder = f"members/{member.name}/"
        result, source = (_staged(writer, folder, key, prep) if resume else None), "resumed"
        if result is None and use_cache:
            result, source = read_cached(cfg, prep, key), "cache"
        if result is None:
            progress.say(f"member {member.name} ({member.family}): training on {len(prep.folds.pairs())} folds")
            folds_progress = Progress(quiet=progress.quiet, stream=progress.stream)  # its own clock and ETA
            result, source = train_member(cfg, prep, member, folds_progress), "trained"
        if source != "resumed":
            files = member_files(cfg, prep, member, result, key)
            for name, data in files.items():
                writer.write_bytes(folder + name, data)
            if use_cache and source == "trained":
                write_cached(cfg, key, files, writer.path(folder))
        progress.step(
            "member",
            done,
            len(members),
            f"{member.name} ({member.family}, {source}) OOF {cfg.metric} {result.oof_score:.5f}",
        )
        results.append(result)
    return results


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


def combiner_settings(cfg: Config, prep: Prepared) -> CombinerSettings:
    section = require_section(cfg)
    weights = None
    if section.vote_weights:
        weights = tuple(float(section.vote_weights.get(m.name, 0.0)) for m in section.members)
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
        raw_columns=stack_columns(cfg, prep),
        seed=cfg.cv.seed,
        num_threads=cfg.model.num_threads,
    )


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


def combine(cfg: Config, prep: Prepared, results: list[MemberResult], progress: Progress = QUIET) -> list[Candidate]:
    """Fit every configured combiner on the members' OOF predictions; honest OOF for those fitted on labels."""
    section, settings = require_section(cfg), combiner_settings(cfg, prep)
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
    candidates = []
    for done, kind in enumerate(section.combiners, start=1):
        candidates.append(fit_candidate(kind, settings, prep, preds, scored, grids))
        progress.step("combiner", done, len(section.combiners), kind)
    return candidates


def fit_candidate(
    kind: str, settings: CombinerSettings, prep: Prepared, preds: MemberPredictions, scored: np.ndarray, grids: tuple
) -> Candidate:
    """One combiner: fitted on all scored OOF rows (its test predictions and saved weights), and, when it
    learns from labels, refitted per fold so its reported OOF never saw the rows it predicts."""

    def fit(idx: np.ndarray) -> Combiner:
        member_preds, raw = preds.rows(idx)
        return fit_combiner(kind, preds.names, settings, prep.y[idx], member_preds, raw, grids)

    def predict_rows(combiner: Combiner, idx: np.ndarray) -> np.ndarray:
        member_preds, raw = preds.rows(idx)
        return combiner.predict(member_preds, raw)

    width = settings.n_classes if settings.task == "multiclass" else 1
    scored_idx = np.flatnonzero(scored)
    full = fit(scored_idx)
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


def write_ensemble(
    writer: RunWriter, cfg: Config, prep: Prepared, candidates: list[Candidate], scores: dict, seconds: float
) -> None:
    """weights.json, the meta-model, OOF and test predictions of every model, scores.json and report.md."""
    selected = next(c for c in candidates if c.name == scores["selected"])
    combiners = {c.name: c.combiner for c in candidates if c.combiner is not None}
    meta = combiners.get("stack").meta if "stack" in combiners else None
    writer.write_json(
        "ensemble/weights.json",
        {
            "selected": selected.name,
            "selected_kind": "member" if selected.kind == "member" else "combiner",
            "members": [c.name for c in candidates if c.kind == "member"],
            "member_families": {c.name: c.family for c in candidates if c.kind == "member"},
            "combiners": {name: comb.to_dict() for name, comb in combiners.items()},
            "meta_model": "ensemble/meta_model.json" if meta is not None else None,
        },
    )
    if meta is not None:
        writer.write_json("ensemble/meta_model.json", meta.to_dict())
        if meta.kind == "lightgbm":
            writer.write_text("ensemble/meta_model.txt", meta.booster_text)
    writer.write_parquet("ensemble/oof.parquet", predictions_table(cfg, prep, candidates, selected, "oof"))
    if selected.test_pred is not None:
        writer.write_parquet("ensemble/test_pred.parquet", predictions_table(cfg, prep, candidates, selected, "test"))
    writer.write_json("ensemble/scores.json", {**scores, "seconds": seconds})
    writer.write_text("ensemble/report.md", render_markdown(cfg, scores))


def predictions_table(
    cfg: Config, prep: Prepared, candidates: list[Candidate], selected: Candidate, which: str
) -> pd.DataFrame:
    """The selected model's predictions (as a training run's oof/test_pred files), then every model's
    predictions in columns `<model>.pred` (or `<model>.pred_<class>`)."""
    pick = (lambda c: c.oof_pred) if which == "oof" else (lambda c: c.test_pred)
    frame = oof_frame(cfg, prep, pick(selected)) if which == "oof" else test_frame(cfg, prep, pick(selected))
    columns = {}
    for c in candidates:
        pred = pick(c)
        if pred is None:
            continue
        if pred.ndim == 2:
            columns.update({f"{c.name}.pred_{cls}": pred[:, k] for k, cls in enumerate(prep.labels.classes)})
        else:
            columns[f"{c.name}.pred"] = pred
    return pd.concat([frame, pd.DataFrame(columns)], axis=1)
