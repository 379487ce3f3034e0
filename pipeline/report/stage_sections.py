"""Report sections of the tuning and ensemble stages, read from the files those stages document
(importance and selection: importance_section.py); a stage that did not run gives no section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.errors import GbpipeError
from pipeline.core.metrics import GREATER_IS_BETTER

from . import plots
from .page import Facts, Figure, Section, Table, Text, as_float
from .runview import RunView
from .stage_files import StageFolder, stage_dirs

MAX_STUDIES = 3


def tuning_section(view: RunView) -> Section | None:
    """Optuna studies of the experiment: summary, best parameters, history, importances, slices."""
    studies = []
    for folder in stage_dirs(view, "tune"):
        try:
            stage = StageFolder(folder)
            summary, best = stage.json("tune.json"), stage.json("best_params.json")
        except (GbpipeError, OSError, ValueError):
            continue
        if summary is not None or best is not None:
            studies.append((folder, stage, summary or {}, best or {}))
    if not studies:
        return None
    section = Section("tuning", "Tuning")
    for folder, stage, summary, best in studies[:MAX_STUDIES]:
        section.add(*_study_blocks(view, folder, stage, summary, best))
    if len(studies) > MAX_STUDIES:
        section.add(Text(f"{len(studies) - MAX_STUDIES} older studies not shown."))
    return section


def _study_blocks(view: RunView, folder: Path, stage: StageFolder, summary: dict, best: dict) -> list[Any]:
    params = best.get("params", best) if isinstance(best, dict) else {}
    used = (view.schema or {}).get("params", {})
    applied = bool(params) and all(used.get(k) == v for k, v in params.items())
    blocks: list[Any] = [
        Text(f"**Study `{folder.name}`**" + (" — this run used its best parameters." if applied else ""))
    ]
    blocks.append(Facts(study_facts(summary, best)))
    if isinstance(params, dict) and params:
        blocks.append(
            Table(
                f"best_params_{folder.name}",
                ["parameter", "best value"],
                [[k, v if isinstance(v, (int, float, str)) else json.dumps(v)] for k, v in sorted(params.items())],
                "Best parameters",
            )
        )
    pngs = stage.names("plots/", ".png")
    for name in pngs:
        blocks.append(
            Figure(
                f"tune_{folder.name}_{Path(name).stem}",
                stage.bytes(name),
                f"{Path(name).stem.replace('_', ' ').capitalize()} (study `{folder.name}`)",
            )
        )
    trials = stage.parquet("trials.parquet") if not pngs else None
    if trials is not None and "value" in trials.columns:
        metric = view.metric or "value"
        blocks.append(
            Figure(
                f"tune_{folder.name}_history",
                plots.history_figure(trials["value"].to_numpy(float), GREATER_IS_BETTER.get(metric, False), metric),
                f"Optimisation history (study `{folder.name}`)",
            )
        )
    return blocks


def study_facts(summary: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one study: trials, best value against the default parameters, time."""
    counts = summary.get("counts") or {}
    top = summary.get("best") or {}
    default = summary.get("default_trial") or {}
    facts = {
        "metric": summary.get("metric", best.get("metric")),
        "direction": summary.get("direction"),
        "finished trials": summary.get("n_finished", counts.get("complete")),
        "pruned trials": counts.get("pruned"),
        "failed trials": counts.get("failed"),
        "best value": top.get("value", best.get("value")),
        "best trial": top.get("trial", best.get("trial")),
        "value with the default parameters": default.get("value"),
        "workers": summary.get("workers"),
        "seconds": summary.get("seconds"),
    }
    if isinstance(facts["best value"], float) and isinstance(facts["value with the default parameters"], float):
        sign = 1.0 if summary.get("direction", "maximize") == "maximize" else -1.0
        facts["gain over the default parameters"] = sign * (
            facts["best value"] - facts["value with the default parameters"]
        )
    return {k: v for k, v in facts.items() if v is not None}


def ensemble_source(view: RunView) -> RunView | None:
    """The run holding the ensemble: this one, or the experiment's newest ensemble run on the same data."""
    if view.json("ensemble/scores.json") is not None:
        return view
    fingerprint = view.manifest.get("data_fingerprint")
    candidates = [p for p in view.dir.parent.iterdir() if (p / "manifest.json").is_file() and p != view.dir]
    for folder in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            other = RunView(folder)
        except GbpipeError:
            continue
        if other.manifest.get("kind") == "ensemble" and other.manifest.get("data_fingerprint") == fingerprint:
            return other
    return None


def ensemble_section(view: RunView) -> Section | None:
    """Members vs combiners with intervals and gains over the best member, weights, recommended model."""
    source = ensemble_source(view)
    if source is None:
        return None
    doc = source.json("ensemble/scores.json")
    if not isinstance(doc, dict):
        return None
    metric = str(doc.get("metric", view.metric))
    models = doc.get("models") if isinstance(doc.get("models"), dict) else {}
    rows = ensemble_rows(models)
    section = Section("ensemble", "Ensembles", data={"models": models})
    section.add(
        Facts(
            {
                "ensemble run": str(source.dir) if source is not view else None,
                "recommended model": doc.get("recommended"),
                "why": doc.get("recommendation"),
                "selected for predict": doc.get("selected"),
                "best single member": doc.get("best_member"),
                "best model on OOF": doc.get("best_model"),
                "rows compared": doc.get("n_compared"),
                "bootstrap resamples": (doc.get("bootstrap") or {}).get("n_boot"),
            }
        )
    )
    if rows:
        names = [f"{r[0]} ({r[1]})" for r in rows]
        best = next((i for i, r in enumerate(rows) if r[0] == doc.get("recommended")), None)
        section.add(
            Figure(
                "ensemble_scores",
                plots.interval_figure(
                    names,
                    [r[2] for r in rows],
                    [as_float(r[3]) for r in rows],
                    [as_float(r[4]) for r in rows],
                    f"Members and combiners: OOF {metric} (95% CI)",
                    metric,
                    highlight=best,
                ),
                "OOF score of every member and combiner with its paired-bootstrap interval; the recommended one "
                "highlighted",
            ),
            Table(
                "ensemble_models",
                [
                    "model",
                    "kind",
                    f"OOF {metric}",
                    "CI low",
                    "CI high",
                    "gain vs best member",
                    "gain CI low",
                    "gain CI high",
                    "verdict",
                    "holdout",
                    "score source",
                ],
                rows,
                "Members and combiners on the same OOF rows; gain is better-is-positive",
            ),
        )
    section.add(*weights_blocks(source.json("ensemble/weights.json")))
    section.add(*budget_blocks(doc.get("budget"), source.json("auto/steps.json")))
    return section


def budget_blocks(budget: Any, steps: Any) -> list[Any]:
    """A time budget's facts (whether the result depended on the clock, what was skipped for time) and, for a
    `gbpipe auto` run, its steps."""
    if not isinstance(budget, dict):
        return []
    skipped = [s for s in budget.get("skipped") or [] if isinstance(s, dict)]
    blocks: list[Any] = [
        Facts(
            {
                "time budget (s)": budget.get("time_budget_seconds"),
                "trial budget": budget.get("max_trials"),
                "search": budget.get("reproducibility")
                or ("depended on the clock" if budget.get("clock_dependent") else "reproducible"),
                "interrupted": budget.get("interrupted"),
                "skipped for time": ", ".join(str(s.get("name")) for s in skipped) or "nothing",
            }
        )
    ]
    rows = [
        [s.get("step"), s.get("kind"), s.get("name"), s.get("status"), s.get("estimate_seconds"), s.get("seconds")]
        + [s.get("elapsed_seconds"), s.get("left_seconds"), s.get("detail")]
        for s in (steps or {}).get("steps", [])
        if isinstance(s, dict)
    ]
    if rows:
        columns = ["step", "kind", "name", "status", "estimate (s)", "took (s)", "elapsed (s)", "left (s)", "detail"]
        blocks.append(Table("auto_steps", columns, rows, "gbpipe auto's steps, in order, with the clock"))
    return blocks


def ensemble_rows(models: dict[str, Any]) -> list[list[Any]]:
    """One row per member and combiner of ensemble/scores.json's `models`."""
    rows = []
    for name, m in models.items():
        if not isinstance(m, dict) or not isinstance(m.get("oof_score"), (int, float)):
            continue
        ci = m.get("oof_ci") or [None, None]
        gain = m.get("gain_over_best_member") or {}
        rows.append(
            [
                name,
                m.get("family", m.get("kind")),
                m["oof_score"],
                ci[0],
                ci[1],
                gain.get("gain"),
                gain.get("low"),
                gain.get("high"),
                gain.get("verdict"),
                m.get("holdout_score"),
                m.get("score_source"),
            ]
        )
    return rows


def weights_blocks(weights: Any) -> list[Any]:
    """Each combiner's members and weights (stacking: its meta-model)."""
    if not isinstance(weights, dict):
        return []
    rows = []
    for name, comb in (weights.get("combiners") or {}).items():
        if not isinstance(comb, dict):
            continue
        shares = comb.get("weights")
        text = (
            ", ".join(f"{m} {w:.3f}" for m, w in shares.items())
            if isinstance(shares, dict)
            else "meta-model over " + ", ".join(map(str, comb.get("members", [])))
        )
        rows.append([name, comb.get("kind"), comb.get("on"), text])
    if not rows:
        return []
    return [
        Table(
            "ensemble_weights",
            ["combiner", "kind", "combines", "weights"],
            rows,
            f"Combiner weights (selected for predict: {weights.get('selected')})",
        )
    ]
