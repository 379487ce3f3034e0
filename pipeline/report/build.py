"""`gbpipe report`: the full report (report.html, report.json, report/report.md) of a finished run and its
later stages. The short report.md of a training run is train/summary.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifacts import json_bytes
from pipeline.core.errors import ArtifactError, GbpipeError
from pipeline.core.intervals import BOOT_SEED, N_BOOT, score_interval
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import add_files
from pipeline.data.prepare import experiment_tables, text_column_names
from pipeline.data.tables import Tables, fingerprint

from .data_section import data_section
from .drift_section import drift_section
from .evaluation import binary_section, holdout_section, multiclass_section, regression_section
from .importance_section import importance_section, selection_score
from .page import Figure, Section, to_html, to_json, to_markdown
from .runview import Predictions, RunView
from .sections import cv_section, headline, holdout_source, how_obtained, overview_section, provenance_section
from .stage_sections import ensemble_section, tuning_section


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
        raise ArtifactError(
            f"{view.dir} has no scores.json or oof.parquet with targets: not a training run; "
            "report a run made by `gbpipe train`"
        )
    progress.say(f"report: {n_boot} bootstrap resamples of {len(oof):,} OOF rows")
    oof_interval = score_interval(view.metric, oof.y, oof.pred, scores["oof_score"], n_boot, BOOT_SEED)
    holdout, holdout_interval = view.holdout, None
    if holdout is not None and "holdout_score" in scores:
        holdout_interval = score_interval(
            view.metric, holdout.y, holdout.pred, scores["holdout_score"], n_boot, BOOT_SEED
        )
    how = how_obtained(view, selection_score(view))
    tables, note = training_tables(view)
    sections = [
        overview_section(view, oof_interval, holdout_interval),
        data_section(view, oof, holdout, tables, note),
        cv_section(view, oof, oof_interval),
    ]
    progress.say("report: curves, calibration and error tables")
    sections.append(prediction_section(view, oof, holdout))
    if holdout_interval is not None:
        sections.append(
            holdout_section(
                scores,
                holdout,
                fold_model_preds(view),
                oof_interval,
                holdout_interval,
                f"The holdout is {holdout_source(view.config)}; no holdout row was used "
                "for training, early stopping or any choice made on the OOF scores.",
                forward=is_forward(view),
            )
        )
    stage_sections = (drift_section(view), importance_section(view), tuning_section(view), ensemble_section(view))
    sections += [s for s in stage_sections if s is not None]
    sections.append(provenance_section(view))
    title = f"{view.experiment} · {view.task} · {view.metric}"
    subtitle = f"run {view.run_id} · report generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    meta = {
        "run_dir": str(view.dir),
        "run_id": view.run_id,
        "experiment": view.experiment,
        "task": view.task,
        "metric": view.metric,
        "oof_score": scores["oof_score"],
        "holdout_score": scores.get("holdout_score"),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "report_version": 1,
        "section_order": [s.key for s in sections],
    }
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
    files = {
        "report.html": to_html(report.title, report.headline, report.sections, report.subtitle).encode(),
        "report.json": json_bytes(to_json(report.title, report.headline, report.sections, report.meta)),
        "report/report.md": to_markdown(report.title, report.headline, report.sections, "figures").encode(),
    }
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
