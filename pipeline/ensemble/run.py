"""`gbpipe ensemble`: train the configured members on the shared folds, combine their OOF predictions,
score every member and combiner honestly, and write an ensemble run folder.

Run folder: config.toml, schema.json, folds.parquet, members/<name>/ (oof.parquet, test_pred.parquet,
scores.json, member.json, models/), ensemble/ (plan.json, weights.json, meta_model.json [+ .txt],
oof.parquet, test_pred.parquet, scores.json, report.md) and manifest.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.config import Config, dump_config_toml
from pipeline.config.sections import EnsembleSection
from pipeline.core.budget import Clock
from pipeline.core.errors import ConfigError
from pipeline.core.names import check_run_id
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunWriter, new_run_id, resumable_run
from pipeline.data.prepare import Prepared, prepare
from pipeline.engine import outputs

from .budget import EnsembleBudget, member_cost
from .members import check_member
from .result import MemberResult
from .scores import Candidate, compare, render_markdown
from .steps import MemberStep, combine, obtain_member, results_as_candidates, stack_columns
from .store import oof_frame, test_frame

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

PLAN = "ensemble/plan.json"  # written first: marks an unfinished run as an ensemble run for --resume


def ensemble(
    cfg: Config,
    run_id: str | None = None,
    resume: bool = False,
    progress: Progress = QUIET,
    use_cache: bool = True,
    clock: Clock | None = None,
    cluster: Cluster | None = None,
) -> Path:
    """Train missing members, fit the combiners, compare everything, and publish the run; returns its path.
    With a `clock` that has a deadline, members and combiners that would not end in time are skipped and
    recorded in ensemble/scores.json (the first member, and the model ensemble.use names, always run). On a
    `cluster` every member's folds train as tasks there, whatever its family."""
    section = require_section(cfg)
    started = time.perf_counter()
    run_dir = ensemble_run_dir(cfg, run_id, resume)
    prep = prepare(cfg, progress)
    check_plan(cfg, prep)  # before the run folder exists: a config error leaves nothing behind
    with RunWriter(run_dir, resume=resume) as writer:  # a failed run lets go of its lock for --resume
        start_run(writer, cfg, prep, resume)
        budget = EnsembleBudget(clock or Clock.start())
        results = obtain_members(cfg, prep, writer, resume, use_cache and section.cache, progress, budget, cluster)
        candidates = results_as_candidates(results) + combine(cfg, prep, results, progress, budget)
        progress.say(f"comparing {len(candidates)} models with {section.bootstrap_n} paired bootstrap resamples")
        scores = compare(cfg, prep, candidates)
        if budget.active:
            scores["budget"] = budget.document()
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


def start_run(writer: RunWriter, cfg: Config, prep: Prepared, resume: bool) -> None:
    """The config (the same as an unfinished run's, on --resume), the plan, the schema and the folds."""
    section, config_text = require_section(cfg), dump_config_toml(cfg)
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


def schema_document(cfg: Config, prep: Prepared) -> dict:
    """What `gbpipe predict` needs, marked as an ensemble's."""
    return {**outputs.schema_document(cfg, prep), "kind": "ensemble"}


def obtain_members(
    cfg: Config,
    prep: Prepared,
    writer: RunWriter,
    resume: bool,
    use_cache: bool,
    progress: Progress,
    budget: EnsembleBudget,
    cluster: Cluster | None = None,
) -> list[MemberResult]:
    """Each member that fits the budget, from this unfinished run (--resume), else the member cache, else
    trained now. The first member and the one ensemble.use names are always obtained."""
    section = require_section(cfg)
    costs = {m.name: member_cost(m, cfg.model.params) for m in section.members}
    results: list[MemberResult] = []
    for done, member in enumerate(section.members, start=1):
        mandatory = not results or member.name == section.use
        step = MemberStep(resume, use_cache, costs[member.name], mandatory, len(results) + 1, cluster)
        result, source = obtain_member(cfg, prep, writer, member, step, budget, progress)
        if result is None:
            progress.step("member", done, len(section.members), f"{member.name} {source}: {budget.skipped[-1].reason}")
            continue
        progress.step(
            "member",
            done,
            len(section.members),
            f"{member.name} ({member.family}, {source}) OOF {cfg.metric} {result.oof_score:.5f}",
        )
        results.append(result)
    return results


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
