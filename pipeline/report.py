"""Run reports: the short `report.md` every training run writes, and `gbpipe report`'s full report
(report.html, report.json, report/report.md) of a finished run and its later stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import add_files, json_bytes
from .config import Config
from .data import Tables, fingerprint
from .errors import ArtifactError, GbpipeError
from .evaluation import binary_section, holdout_section, multiclass_section, regression_section
from .intervals import BOOT_SEED, N_BOOT, score_interval
from .page import Figure, Section, to_html, to_json, to_markdown
from .prepare import experiment_tables, text_column_names
from .progress import QUIET, Progress
from .report_sections import (
    cv_section,
    data_section,
    headline,
    holdout_source,
    how_obtained,
    overview_section,
    provenance_section,
)
from .runview import Predictions, RunView
from .stage_sections import ensemble_section, importance_section, selection_score, tuning_section


def render_markdown(cfg: Config, scores: dict[str, Any], params: dict[str, Any]) -> str:
    """Fold table, OOF (and holdout) score and parameters of one run, as Markdown."""
    lines = [f"# {cfg.experiment.name}: {cfg.data.task}, {scores['metric']}", ""]
    lines.append(f"- OOF {scores['metric']}: **{scores['oof_score']:.5f}** "
                 f"(folds: mean {scores['fold_score_mean']:.5f}, std {scores['fold_score_std']:.5f})")
    if "holdout_score" in scores:
        lines.append(f"- Holdout {scores['metric']}: **{scores['holdout_score']:.5f}** on {scores['n_holdout']} rows")
        window = scores.get("holdout_label_window")
        if window is not None and not window["complete"]:
            lines.append(f"  (its label window is {window['coverage']:.0%} covered: the data ends at {window['data_ends']})")
        short = scores.get("oof_at_holdout_window")
        if short is not None:
            lines.append(f"- OOF {scores['metric']} on labels over the first {short['days']} days (as the holdout's): "
                         f"**{short['oof_score']:.5f}** (per cutoff mean {short['mean_by_cutoff']:.5f})")
    if "scoring_cutoff" in scores:
        lines.append(f"- Scoring cutoff {scores['scoring_cutoff']}: {scores['n_test']} test rows predicted, labels unknown")
    if "backtest" in scores:
        bt = scores["backtest"]
        lines.append(f"- Forward backtest ({len(bt['cutoffs'])} cutoffs): OOF {bt['mean_oof_score']:.5f}, forward "
                     f"{bt['mean_forward_score']:.5f}; OOF looks better by {bt['mean_gap']:+.5f}")
    gap = f", gap {scores['time_gap']}" if scores.get("time_gap") else ""
    lines.append(f"- Splitter: {scores['splitter']}{gap}, {scores['n_splits']} folds x {scores['n_repeats']} repeats; "
                 f"early stopping on: {scores['early_stopping']}")
    lines.append(f"- Rows: {scores['n_rows']} ({scores['n_validated']} validated), features: {scores['n_features']}")
    lines += ["", "| repeat | fold | train rows | valid rows | best iteration | score | seconds |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for f in scores["folds"]:
        lines.append(f"| {f['repeat']} | {f['fold']} | {f['n_train']} | {f['n_valid']} | {f['best_iteration']} "
                     f"| {f['score']:.5f} | {f['seconds']:.2f} |")
    lines += ["", "## OOF metrics", ""] + [f"- {k}: {v:.5f}" for k, v in scores["oof_metrics"].items()]
    lines += ["", "## Parameters", ""] + [f"- `{k}` = `{v}`" for k, v in sorted(params.items())]
    return "\n".join(lines) + "\n"


# ---- `gbpipe report`: the full report of a finished run ----
@dataclass(frozen=True)
class Report:
    """A run's report: headline, sections (facts, tables, figures) and metadata."""

    run_dir: Path
    title: str
    subtitle: str
    headline: dict[str, Any]
    sections: list[Section]
    meta: dict[str, Any]


def build_report(run_dir: Path, progress: Progress = QUIET, n_boot: int = N_BOOT) -> Report:
    """Read a run's artifacts (and its stages' outputs) and compute every section the run has."""
    view = RunView(run_dir)
    scores, oof = view.summary, view.oof
    if scores is None or oof is None:
        raise ArtifactError(f"{view.dir} has no scores.json or oof.parquet with targets: not a training run; "
                            "report a run made by `gbpipe train`")
    progress.say(f"report: {n_boot} bootstrap resamples of {len(oof):,} OOF rows")
    oof_interval = score_interval(view.metric, oof.y, oof.pred, scores["oof_score"], n_boot, BOOT_SEED)
    holdout, holdout_interval = view.holdout, None
    if holdout is not None and "holdout_score" in scores:
        holdout_interval = score_interval(view.metric, holdout.y, holdout.pred, scores["holdout_score"], n_boot, BOOT_SEED)
    how = how_obtained(view, selection_score(view))
    tables, note = training_tables(view)
    sections = [overview_section(view, oof_interval, holdout_interval),
                data_section(view, oof, holdout, tables, note), cv_section(view, oof, oof_interval)]
    progress.say("report: curves, calibration and error tables")
    sections.append(prediction_section(view, oof, holdout))
    if holdout_interval is not None:
        sections.append(holdout_section(scores, holdout, fold_model_preds(view), oof_interval, holdout_interval,
                                        f"The holdout is {holdout_source(view.config)}; no holdout row was used "
                                        "for training, early stopping or any choice made on the OOF scores.",
                                        forward=is_forward(view)))
    sections += [s for s in (importance_section(view), tuning_section(view), ensemble_section(view)) if s is not None]
    sections.append(provenance_section(view))
    title = f"{view.experiment} · {view.task} · {view.metric}"
    subtitle = f"run {view.run_id} · report generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    meta = {"run_dir": str(view.dir), "run_id": view.run_id, "experiment": view.experiment, "task": view.task,
            "metric": view.metric, "oof_score": scores["oof_score"], "holdout_score": scores.get("holdout_score"),
            "generated": datetime.now(UTC).isoformat(timespec="seconds"), "report_version": 1,
            "section_order": [s.key for s in sections]}
    return Report(view.dir, title, subtitle, headline(view, oof_interval, holdout_interval, how), sections, meta)


def is_forward(view: RunView) -> bool:
    """A holdout later in time than the training rows: the features stage's test cutoff, or a time split."""
    cfg = view.config
    return cfg is not None and (getattr(cfg, "features", None) is not None or cfg.splitter == "time")


def prediction_section(view: RunView, oof: Predictions, holdout: Predictions | None) -> Section:
    if view.task == "binary":
        return binary_section(oof, holdout, view.classes)
    if view.task == "multiclass":
        return multiclass_section(oof, view.classes)
    return regression_section(oof)


def fold_model_preds(view: RunView) -> dict[str, np.ndarray]:
    """Each fold model's own holdout predictions (test_pred.parquet's fold<k>_pred columns)."""
    frame = view.parquet("test_pred.parquet")
    holdout = view.holdout
    if frame is None or holdout is None or holdout.source != "test_pred.parquet":
        return {}
    preds = {}
    for k in range(100):
        if view.task == "multiclass":
            columns = [f"fold{k}_pred_{c}" for c in view.classes]
        else:
            columns = [f"fold{k}_pred"]
        if not set(columns) <= set(frame.columns):
            break
        values = frame[columns].to_numpy(dtype="float64")
        preds[f"fold {k}"] = values if view.task == "multiclass" else values[:, 0]
    return preds


def training_tables(view: RunView) -> tuple[Tables | None, str | None]:
    """The run's training data when it can still be read and matches the run's data fingerprint."""
    if view.config is None:
        return None, "the run's config.toml does not validate with this version of gbpipe"
    try:
        tables = experiment_tables(view.config)
    except (GbpipeError, OSError) as exc:
        return None, f"the training data could not be read ({exc})"
    tables = text_column_names(tables)  # as prepare() does before it fingerprints the data
    expected = view.manifest.get("data_fingerprint")
    if expected and fingerprint(tables.train, tables.test) != expected:
        return None, "the training data changed since the run (its fingerprint differs)"
    return tables, None


def unique_figures(sections: list[Section]) -> dict[str, bytes]:
    """Figure files by name; a repeated name gets a numeric suffix, so no figure overwrites another."""
    files: dict[str, bytes] = {}
    for section in sections:
        for i, block in enumerate(section.blocks):
            if isinstance(block, Figure):
                name, k = block.name, 2
                while name in files:
                    name, k = f"{block.name}_{k}", k + 1
                if name != block.name:
                    section.blocks[i] = block = Figure(name, block.png, block.caption)
                files[name] = block.png
    return files


def write_report(run_dir: Path, progress: Progress = QUIET, n_boot: int = N_BOOT) -> Report:
    """Write report.html, report.json and report/report.md (with report/figures/*.png) into the run."""
    report = build_report(run_dir, progress, n_boot)
    figures = unique_figures(report.sections)
    files = {"report.html": to_html(report.title, report.headline, report.sections, report.subtitle).encode(),
             "report.json": json_bytes(to_json(report.title, report.headline, report.sections, report.meta)),
             "report/report.md": to_markdown(report.title, report.headline, report.sections, "figures").encode()}
    files.update({f"report/figures/{name}.png": data for name, data in figures.items()})
    add_files(report.run_dir, stage="report", files=files, replace=True)
    return report


def headline_text(report: Report) -> str:
    """One line for the terminal: the headline numbers and where the report is."""
    h = report.headline
    line = f"{report.meta['experiment']}: OOF {h['metric']} {h['text']}"
    if h.get("holdout_score") is not None:
        line += f"; holdout {h['metric']} {h['holdout_score']:.5g}"
    return line + f"\nreport: {report.run_dir / 'report.html'}"
