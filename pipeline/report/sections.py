"""Report sections about the run itself: overview, cross-validation and provenance (data: data_section.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from pipeline.core.intervals import Interval
from pipeline.core.metrics import GREATER_IS_BETTER

from . import plots
from .page import Code, Facts, Figure, Section, Table, Text, fmt
from .runview import Predictions, RunView

SPLITTER_WHY = {
    "stratified": "stratified K-fold: every fold keeps the class balance of the whole data, so fold scores "
    "are comparable and rare classes appear in every fold",
    "kfold": "shuffled K-fold: rows are independent and the target is continuous, so there is nothing to stratify on",
    "group": "grouped K-fold on `{group}`: all rows of one {group} stay in the same fold, so each score is "
    "for {group} values the model never saw",
    "stratified_group": "stratified grouped K-fold on `{group}`: all rows of one {group} stay in one fold "
    "(the score is for unseen {group} values) while each fold keeps the class balance",
    "time": "forward split on `{time}`: each fold trains on earlier periods only and validates on the next "
    "one, as the model will be used",
}


def how_obtained(view: RunView, selection_score: float | None) -> list[str]:
    """Sentences saying how each reported score was obtained."""
    scores, cfg = view.summary or {}, view.config
    lines = [
        f"**OOF**: each of the {scores.get('n_validated', 0):,} validated rows was predicted by the model "
        f"of the one fold that did not train on it ({scores.get('n_splits')} folds"
        + (f" × {scores['n_repeats']} repeats, averaged" if (scores.get("n_repeats") or 1) > 1 else "")
        + f", {scores.get('splitter')} splitter)."
    ]
    if scores.get("early_stopping") == "inner":
        lines.append(
            "Early stopping used an inner split of each fold's training rows, so the scored rows "
            "were never seen while training."
        )
    elif scores.get("early_stopping") == "fold":
        lines.append(
            "Fold models early-stopped on the rows they score, which flatters the OOF score slightly; "
            '`model.early_stopping = "inner"` gives a strictly held-out score.'
        )
    if scores.get("best_iteration_rule"):
        lines.append(f"**Best iteration** of each fold: {scores['best_iteration_rule']}.")
    if "selected_model" in scores:
        lines.append(
            f"**Ensemble**: the scores are those of the selected model `{scores['selected_model']}` "
            f"({scores.get('score_source', 'oof')})."
        )
    if selection_score is not None:
        lines.append(f"**Nested OOF** (feature selection repeated inside each outer fold): {selection_score:.5g}.")
    if "holdout_score" in scores:
        lines.append(
            f"**Holdout**: {scores.get('n_holdout', 0):,} rows never used for training or early "
            f"stopping ({holdout_source(cfg)})."
        )
        window = scores.get("holdout_label_window")
        if isinstance(window, dict) and not window.get("complete", True):
            lines.append(
                f"**The holdout's label window is cut short**: the data ends at {window['data_ends']}, "
                f"{window['coverage']:.0%} of the way from {window['start']} to {window['end']}, so its "
                "labels ask a different question than the training labels (full windows) and its score "
                "is not directly comparable with the OOF score"
                + (
                    "; the forward backtest's scores are."
                    if "backtest" in scores
                    else "; set cv.backtest to replay earlier cutoffs with full windows."
                )
            )
            lines.extend(holdout_window_sentence(scores))
        lines.extend(season_sentence(view))
    if "scoring_cutoff" in scores:
        lines.append(
            f"**Scoring cutoff**: the {scores.get('n_test', 0):,} test rows are at {scores['scoring_cutoff']}, "
            "after the data's last event, so their labels are unknown: they get predictions "
            "(test_pred.parquet), and no holdout score."
        )
    if isinstance(scores.get("backtest"), dict):
        lines.append(backtest_sentence(scores["backtest"], scores.get("metric", "score")))
    return lines


def season_sentence(view: RunView) -> list[str]:
    """How the model sees the season of a forward holdout: the training cutoff one year before the test
    cutoff (with a full label window) and the year-ago features every row carries."""
    summary, cfg = view.json("features_summary.json"), view.config
    if not isinstance(summary, dict) or cfg is None or cfg.features is None or not summary.get("test_cutoff"):
        return []
    test = dt.date.fromisoformat(summary["test_cutoff"])
    year_before = f"{test.replace(year=test.year - 1):%Y-%m-%d}" if (test.month, test.day) != (2, 29) else ""
    if year_before in summary.get("train_cutoffs", []):
        oof = ((view.summary or {}).get("oof_score_by_cutoff") or {}).get(year_before)
        line = (
            f"**The season**: {year_before}, the test cutoff one year earlier, is a training cutoff with a full "
            f"label window ({summary['rows_per_cutoff'][year_before]:,} rows, "
            f"{summary['positive_rate_per_cutoff'][year_before]:.1%} positive"
            + (f", OOF {oof:.4f}" if oof is not None else "")
            + "): the model learns the season the holdout asks about from labelled rows"
        )
    else:
        line = (
            f"**The season**: no training cutoff lies one year before the test cutoff {test}, so the model has "
            "never seen this season labelled; with data a year older, start the cutoffs a year earlier"
        )
    if cfg.features.year_ago:
        columns = ", ".join(sorted({f"{y.column} ({y.aggregate})" for y in cfg.features.year_ago}))
        line += f"; every row also carries its windows one year earlier (features.year_ago: {columns})"
    return [line + "."]


def holdout_window_sentence(scores: dict[str, Any]) -> list[str]:
    """The OOF predictions scored against labels over the holdout's short window, beside the holdout."""
    short = scores.get("oof_at_holdout_window")
    if not isinstance(short, dict):
        return []
    metric, by_cutoff = scores.get("metric", "score"), short["by_cutoff"]
    low, high = min(by_cutoff.values()), max(by_cutoff.values())
    return [
        f"**Like for like**: scored against labels over the first {short['days']} days of each training "
        f"cutoff's window, as many as the holdout has, the OOF {metric} is {short['oof_score']:.4f} (per "
        f"cutoff {low:.4f} to {high:.4f}, mean {short['mean_by_cutoff']:.4f}), beside the holdout's "
        f"{scores['holdout_score']:.4f} and the full-window OOF {scores['oof_score']:.4f}."
    ]


def backtest_sentence(doc: dict[str, Any], metric: str) -> str:
    """How far the OOF score of the replayed cutoffs is from their forward scores."""
    cutoffs = doc.get("cutoffs") or []
    each = "; ".join(f"{c['cutoff']}: OOF {c['oof_score']:.4f}, forward {c['forward_score']:.4f}" for c in cutoffs)
    return (
        f"**Forward backtest** of the last {len(cutoffs)} training cutoffs: each cutoff's rows scored again by "
        f"the same folds trained only on rows whose labels were known at that cutoff ({each}). Mean gap: the "
        f"OOF {metric} looks {doc['mean_gap']:+.4f} better than the forward one (> 0: optimistic); a gap near 0 "
        "says the OOF score is what the model will score on a later period."
    )


def cutoff_score_columns(scores: dict[str, Any], test: str | None) -> list[tuple[str, dict[str, float]]]:
    """Score columns of the cutoff table, as {cutoff: score}: the OOF score of each training cutoff with
    the holdout at the test one, and the forward score of each replayed cutoff (cv.backtest)."""
    columns = []
    by_cutoff = scores.get("oof_score_by_cutoff")
    if isinstance(by_cutoff, dict):
        holdout = {test: scores["holdout_score"]} if test is not None and "holdout_score" in scores else {}
        columns.append((f"{scores.get('metric', 'score')} (OOF; holdout at the test cutoff)", {**by_cutoff, **holdout}))
    short = scores.get("oof_at_holdout_window")
    if isinstance(short, dict):
        columns.append((f"OOF, labels over the first {short['days']} days (as the holdout's)", short["by_cutoff"]))
    replays = {r["cutoff"]: r["forward_score"] for r in (scores.get("backtest") or {}).get("cutoffs", [])}
    if replays:
        columns.append(("forward (trained on rows whose labels were known at the cutoff)", replays))
    return columns


def holdout_source(cfg: Any) -> str:
    if cfg is None:
        return "the experiment's test set"
    data = cfg.data
    if getattr(cfg, "features", None) is not None:
        return "the rows of the features stage's test cutoff: a forward holdout, later than every training cutoff"
    if data.test is not None:
        return f"the test file `{data.test}`"
    if data.split_column is not None:
        return f"rows of `{data.train}` with `{data.split_column}` = `{data.test_value}`"
    if data.test_size is not None:
        return f"a random {data.test_size:.0%} of `{data.train}`, split off with seed {cfg.cv.seed}"
    return "rows the features stage set aside as the forward test period"


def headline(view: RunView, oof: Interval, holdout: Interval | None, how: list[str]) -> dict[str, Any]:
    """The numbers a reader sees first: the OOF score and its interval, the holdout, the run's size."""
    metric, scores = view.metric, view.summary or {}
    direction = "higher is better" if GREATER_IS_BETTER.get(metric, True) else "lower is better"
    cards = [
        {
            "label": f"OOF {metric} · {direction}",
            "value": f"{oof.score:.5g}",
            "detail": f"95% bootstrap CI {oof.low:.5g} – {oof.high:.5g} ({oof.n_boot:,} resamples)",
        }
    ]
    if holdout is not None:
        cards.append(
            {
                "label": f"holdout {metric}",
                "value": f"{holdout.score:.5g}",
                "detail": f"95% CI {holdout.low:.5g} – {holdout.high:.5g}",
            }
        )
    cards.append(
        {
            "label": "data",
            "value": f"{scores.get('n_rows', 0):,} rows",
            "detail": f"{scores.get('n_features', 0)} features · {scores.get('n_splits')} folds",
        }
    )
    iterations = scores.get("best_iterations") or []
    cards.append(
        {
            "label": "run time",
            "value": f"{scores.get('seconds', float('nan')):.1f} s",
            "detail": f"best iterations {min(iterations)}–{max(iterations)}"
            if iterations
            else f"selected model {scores.get('selected_model', '-')}",
        }
    )
    return {
        "metric": metric,
        "greater_is_better": GREATER_IS_BETTER.get(metric, True),
        "score": oof.score,
        "ci_low": oof.low,
        "ci_high": oof.high,
        "level": oof.level,
        "n_boot": oof.n_boot,
        "holdout_score": None if holdout is None else holdout.score,
        "holdout_ci_low": None if holdout is None else holdout.low,
        "holdout_ci_high": None if holdout is None else holdout.high,
        "text": f"{oof.score:.5g} (95% CI {oof.low:.5g} – {oof.high:.5g})",
        "cards": cards,
        "lines": list(how),
    }


def overview_section(view: RunView, oof: Interval, holdout: Interval | None) -> Section:
    scores, cfg = view.summary or {}, view.config
    facts = {
        "experiment": view.experiment,
        "description": cfg.experiment.description if cfg else "",
        "run": view.run_id,
        "task": view.task,
        "metric": view.metric,
        f"OOF {view.metric}": oof.score,
        "95% bootstrap CI": f"{oof.low:.5g} – {oof.high:.5g}",
        "fold scores, mean ± std": f"{fmt(scores.get('fold_score_mean'))} ± {fmt(scores.get('fold_score_std'))}",
    }
    if holdout is not None:
        facts.update(
            {
                f"holdout {view.metric}": holdout.score,
                "holdout 95% bootstrap CI": f"{holdout.low:.5g} – {holdout.high:.5g}",
            }
        )
    facts.update(
        {
            "rows": scores.get("n_rows"),
            "features": scores.get("n_features"),
            "run time": scores.get("seconds"),
            "fold training time": float(sum(f["seconds"] or 0 for f in scores.get("folds", []))),
        }
    )
    section = Section(
        "overview",
        "Overview",
        data={"oof_interval": oof.to_dict(), "holdout_interval": None if holdout is None else holdout.to_dict()},
    )
    return section.add(
        Facts(
            {k: v for k, v in facts.items() if v not in (None, "")},
            {"run time": "{:.1f} s", "fold training time": "{:.1f} s"},
        )
    )


def cv_section(view: RunView, oof: Predictions, oof_interval: Interval) -> Section:
    """Splitter and why, the fold table, and the spread of fold scores."""
    scores, cfg = view.summary or {}, view.config
    splitter = scores.get("splitter", "")
    why = SPLITTER_WHY.get(splitter, splitter)
    if cfg is not None:
        why = why.format(group=cfg.cv.group or "group", time=cfg.cv.time or "time")
        if scores.get("time_gap"):
            why += (
                f", leaving out the {scores['time_gap']} `{cfg.cv.time}` value(s) just before each validated block "
                "(their labels reach into it)"
            )
        if cfg.cv.splitter == "auto":
            why += " (chosen automatically from the task" + (" and cv.group)" if cfg.cv.group else ")")
    fold_scores = [f["score"] for f in scores.get("folds", [])]
    label, rows = fold_rows(view.task, scores.get("folds", []), oof)
    section = Section("cv", "Cross-validation")
    section.add(
        Text(f"Splitter: {why}."),
        Facts(
            {
                "splitter": splitter,
                "folds": scores.get("n_splits"),
                "repeats": scores.get("n_repeats"),
                "early stopping on": scores.get("early_stopping"),
                "fold score mean": float(np.mean(fold_scores)),
                "fold score std": float(np.std(fold_scores)),
                "fold score min": float(np.min(fold_scores)),
                "fold score max": float(np.max(fold_scores)),
                f"OOF {view.metric} (all rows at once)": scores.get("oof_score"),
            }
        ),
        Figure(
            "fold_scores",
            plots.fold_scores_figure(
                fold_scores, oof_interval.score, (oof_interval.low, oof_interval.high), view.metric
            ),
            "Each fold's score against the OOF score and its 95% bootstrap interval",
        ),
        Table(
            "folds",
            ["repeat", "fold", "train rows", "valid rows", label, "best iteration", view.metric, "seconds"],
            rows,
            "One row per fold model",
            {"valid positive rate": "{:.2%}", "valid majority share": "{:.2%}", "seconds": "{:.2f}"},
        ),
    )
    return section


def fold_rows(task: str, folds: list[dict[str, Any]], oof: Predictions) -> tuple[str, list[list[Any]]]:
    """The fold table's 5th column name (validation rows' positive rate or target mean) and its rows."""
    label = {"binary": "valid positive rate", "regression": "valid target mean"}.get(task, "valid majority share")
    rows = []
    for f in folds:
        valid = (oof.fold == f["fold"]) if oof.fold is not None and f["repeat"] == 0 else None
        if valid is None or not valid.any():
            stat = None
        elif task == "multiclass":
            stat = float(np.bincount(oof.y[valid]).max() / valid.sum())
        else:
            stat = float(oof.y[valid].mean())
        rows.append(
            [f["repeat"], f["fold"], f["n_train"], f["n_valid"], stat, f["best_iteration"], f["score"], f["seconds"]]
        )
    return label, rows


def provenance_section(view: RunView) -> Section:
    """Config, hashes, library versions and every artifact with its sha256."""
    manifest = view.manifest
    versions = manifest.get("versions", {})
    files = [
        [name, entry.get("stage", "train"), int(entry.get("size", 0)), str(entry.get("sha256", ""))[:16]]
        for name, entry in sorted(manifest.get("files", {}).items())
    ]
    section = Section("provenance", "Provenance", data={"files": manifest.get("files", {})})
    section.add(
        Facts(
            {
                "run folder": str(view.dir),
                "run id": view.run_id,
                "config hash": manifest.get("config_hash"),
                "data fingerprint": manifest.get("data_fingerprint"),
                "stages": ", ".join(view.stages),
            }
        ),
        Table(
            "versions",
            ["library", "version"],
            [[k, v] for k, v in sorted(versions.items())],
            "Library versions the run was made with",
        ),
        Table(
            "artifacts",
            ["file", "stage", "bytes", "sha256 (first 16)"],
            files,
            "Artifacts listed in manifest.json (sha256 verified when read)",
        ),
    )
    config_text = view.text("config.toml")
    if config_text is not None:
        section.add(Text("Resolved config (`config.toml`):"), Code(config_text))
    return section
