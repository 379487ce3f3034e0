"""Report sections about the run itself: overview, data, cross-validation and provenance."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.intervals import Interval
from pipeline.core.metrics import GREATER_IS_BETTER

from . import plots
from .page import Code, Facts, Figure, Section, Table, Text, fmt
from .runview import Predictions, RunView
from .stage_files import generic_blocks

SPLITTER_WHY = {
    "stratified": "stratified K-fold: every fold keeps the class balance of the whole data, so fold scores "
                  "are comparable and rare classes appear in every fold",
    "kfold": "shuffled K-fold: rows are independent and the target is continuous, so there is nothing to "
             "stratify on",
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
    lines = [f"**OOF**: each of the {scores.get('n_validated', 0):,} validated rows was predicted by the model "
             f"of the one fold that did not train on it ({scores.get('n_splits')} folds"
             + (f" × {scores['n_repeats']} repeats, averaged" if (scores.get("n_repeats") or 1) > 1 else "")
             + f", {scores.get('splitter')} splitter)."]
    if scores.get("early_stopping") == "inner":
        lines.append("Early stopping used an inner split of each fold's training rows, so the scored rows "
                     "were never seen while training.")
    elif scores.get("early_stopping") == "fold":
        lines.append("Fold models early-stopped on the rows they score, which flatters the OOF score slightly; "
                     "`model.early_stopping = \"inner\"` gives a strictly held-out score.")
    if "selected_model" in scores:
        lines.append(f"**Ensemble**: the scores are those of the selected model `{scores['selected_model']}` "
                     f"({scores.get('score_source', 'oof')}).")
    if selection_score is not None:
        lines.append(f"**Nested OOF** (feature selection repeated inside each outer fold): {selection_score:.5g}.")
    if "holdout_score" in scores:
        lines.append(f"**Holdout**: {scores.get('n_holdout', 0):,} rows never used for training or early "
                     f"stopping ({holdout_source(cfg)}).")
        window = scores.get("holdout_label_window")
        if isinstance(window, dict) and not window.get("complete", True):
            lines.append(f"**The holdout's label window is cut short**: the data ends at {window['data_ends']}, "
                         f"{window['coverage']:.0%} of the way from {window['start']} to {window['end']}, so its "
                         "labels ask a different question than the training labels (full windows) and its score "
                         "is not directly comparable with the OOF score"
                         + ("; the forward backtest's scores are." if "backtest" in scores else
                            "; set cv.backtest to replay earlier cutoffs with full windows."))
            lines.extend(holdout_window_sentence(scores))
    if "scoring_cutoff" in scores:
        lines.append(f"**Scoring cutoff**: the {scores.get('n_test', 0):,} test rows are at {scores['scoring_cutoff']}, "
                     "after the data's last event, so their labels are unknown: they get predictions "
                     "(test_pred.parquet), and no holdout score.")
    if isinstance(scores.get("backtest"), dict):
        lines.append(backtest_sentence(scores["backtest"], scores.get("metric", "score")))
    return lines


def holdout_window_sentence(scores: dict[str, Any]) -> list[str]:
    """The OOF predictions scored against labels over the holdout's short window, beside the holdout."""
    short = scores.get("oof_at_holdout_window")
    if not isinstance(short, dict):
        return []
    metric, by_cutoff = scores.get("metric", "score"), short["by_cutoff"]
    low, high = min(by_cutoff.values()), max(by_cutoff.values())
    return [f"**Like for like**: scored against labels over the first {short['days']} days of each training "
            f"cutoff's window, as many as the holdout has, the OOF {metric} is {short['oof_score']:.4f} (per "
            f"cutoff {low:.4f} to {high:.4f}, mean {short['mean_by_cutoff']:.4f}), beside the holdout's "
            f"{scores['holdout_score']:.4f} and the full-window OOF {scores['oof_score']:.4f}."]


def backtest_sentence(doc: dict[str, Any], metric: str) -> str:
    """How far the OOF score of the replayed cutoffs is from their forward scores."""
    cutoffs = doc.get("cutoffs") or []
    each = "; ".join(f"{c['cutoff']}: OOF {c['oof_score']:.4f}, forward {c['forward_score']:.4f}" for c in cutoffs)
    return (f"**Forward backtest** of the last {len(cutoffs)} training cutoffs: each cutoff's rows scored again by "
            f"the same folds trained only on rows whose labels were known at that cutoff ({each}). Mean gap: the "
            f"OOF {metric} looks {doc['mean_gap']:+.4f} better than the forward one (> 0: optimistic); a gap near 0 "
            "says the OOF score is what the model will score on a later period.")


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
    cards = [{"label": f"OOF {metric} · {direction}", "value": f"{oof.score:.5g}",
              "detail": f"95% bootstrap CI {oof.low:.5g} – {oof.high:.5g} ({oof.n_boot:,} resamples)"}]
    if holdout is not None:
        cards.append({"label": f"holdout {metric}", "value": f"{holdout.score:.5g}",
                      "detail": f"95% CI {holdout.low:.5g} – {holdout.high:.5g}"})
    cards.append({"label": "data", "value": f"{scores.get('n_rows', 0):,} rows",
                  "detail": f"{scores.get('n_features', 0)} features · {scores.get('n_splits')} folds"})
    iterations = scores.get("best_iterations") or []
    cards.append({"label": "run time", "value": f"{scores.get('seconds', float('nan')):.1f} s",
                  "detail": f"best iterations {min(iterations)}–{max(iterations)}" if iterations
                  else f"selected model {scores.get('selected_model', '-')}"})
    return {"metric": metric, "greater_is_better": GREATER_IS_BETTER.get(metric, True), "score": oof.score,
            "ci_low": oof.low, "ci_high": oof.high, "level": oof.level, "n_boot": oof.n_boot,
            "holdout_score": None if holdout is None else holdout.score,
            "holdout_ci_low": None if holdout is None else holdout.low,
            "holdout_ci_high": None if holdout is None else holdout.high,
            "text": f"{oof.score:.5g} (95% CI {oof.low:.5g} – {oof.high:.5g})", "cards": cards, "lines": list(how)}


def overview_section(view: RunView, oof: Interval, holdout: Interval | None) -> Section:
    scores, cfg = view.summary or {}, view.config
    facts = {"experiment": view.experiment, "description": cfg.experiment.description if cfg else "",
             "run": view.run_id, "task": view.task, "metric": view.metric, f"OOF {view.metric}": oof.score,
             "95% bootstrap CI": f"{oof.low:.5g} – {oof.high:.5g}",
             "fold scores, mean ± std": f"{fmt(scores.get('fold_score_mean'))} ± {fmt(scores.get('fold_score_std'))}"}
    if holdout is not None:
        facts.update({f"holdout {view.metric}": holdout.score,
                      "holdout 95% bootstrap CI": f"{holdout.low:.5g} – {holdout.high:.5g}"})
    facts.update({"rows": scores.get("n_rows"), "features": scores.get("n_features"),
                  "run time": scores.get("seconds"),
                  "fold training time": float(sum(f["seconds"] or 0 for f in scores.get("folds", [])))})
    section = Section("overview", "Overview", data={"oof_interval": oof.to_dict(),
                                                   "holdout_interval": None if holdout is None else holdout.to_dict()})
    return section.add(Facts({k: v for k, v in facts.items() if v not in (None, "")},
                             {"run time": "{:.1f} s", "fold training time": "{:.1f} s"}))


def test_rows(scores: dict[str, Any]) -> dict[str, Any]:
    """Test rows predicted without labels (a scoring cutoff's rows), beside the holdout's count."""
    return {"test rows (labels unknown)": scores["n_test"]} if "n_test" in scores else {}


def data_section(view: RunView, oof: Predictions, holdout: Predictions | None, tables: Any, note: str | None) -> Section:
    """Rows, columns, target balance or distribution, missing shares, categorical cardinalities."""
    scores, schema = view.summary or {}, view.schema or {}
    features = schema.get("features", {})
    kinds = features.get("kinds", {})
    section = Section("data", "Data")
    section.add(Facts({"training rows": scores.get("n_rows"), "validated rows": scores.get("n_validated"),
                       "holdout rows": scores.get("n_holdout"), **test_rows(scores), "features": len(kinds),
                       "numeric features": sum(k == "numeric" for k in kinds.values()),
                       "categorical features": sum(k == "categorical" for k in kinds.values()),
                       "target": schema.get("target"), "data fingerprint": str(view.manifest.get("data_fingerprint", ""))[:16]}))
    section.add(*target_blocks(view, oof, holdout))
    section.add(*missing_blocks(features, tables, note))
    summary = view.json("features_summary.json")
    if isinstance(summary, dict):
        section.add(*features_blocks(summary, scores))
    return section


def features_blocks(summary: dict[str, Any], scores: dict[str, Any] | None = None) -> list[Any]:
    """The features stage's summary: rows, positive rate and score per cutoff, what was left out, NaN shares."""
    if not isinstance(summary.get("rows_per_cutoff"), dict):
        return [Text("**Feature building** (the features stage's summary):"), *generic_blocks("features", summary)]
    rows_per = summary["rows_per_cutoff"]
    rate_key = next((k for k in ("positive_rate_per_cutoff", "label_mean_per_cutoff") if k in summary), None)
    rates = summary.get(rate_key) or {}
    test = summary.get("test_cutoff")
    rows = [[cutoff, "test" if cutoff == test else "train", n, rates.get(cutoff)] for cutoff, n in rows_per.items()]
    rate_label = "positive rate" if rate_key == "positive_rate_per_cutoff" else "label mean"
    columns, formats = ["cutoff", "role", "rows", rate_label], {}
    for name, values in cutoff_score_columns(scores or {}, test):
        for row in rows:
            row.append(values.get(row[0]))
        columns, formats = [*columns, name], {**formats, name: "{:.4f}"}
    label = summary.get("label") or {}
    facts = {"source": summary.get("source"), "entity": summary.get("entity"), "time column": summary.get("time"),
             "label": label.get("definition") if isinstance(label, dict) else label,
             "event lines": summary.get("event_lines"), "lines without an entity (left out)":
             summary.get("excluded_lines_without_entity"), "event lines used": summary.get("event_lines_used"),
             "entities": summary.get("entities"), "features built": summary.get("n_features"),
             "windows": ", ".join(map(str, summary.get("windows") or [])) or None,
             "build time (s)": summary.get("build_seconds")}
    nan_share = sorted((summary.get("nan_share_per_feature") or {}).items(), key=lambda kv: -kv[1])
    blocks: list[Any] = [Text("**Feature building**: one row per entity and cutoff, built only from lines dated "
                              "before the cutoff."), Facts({k: v for k, v in facts.items() if v is not None}),
                         Figure("cutoffs", plots.cutoffs_figure([r[0] for r in rows], [r[2] for r in rows],
                                                                [r[3] for r in rows], rate_label, test),
                                f"Rows and {rate_label} per cutoff"),
                         Table("cutoffs", columns, rows, f"Rows, {rate_label} and score per cutoff",
                               {rate_label: "{:.2%}" if rate_label == "positive rate" else "{:.4g}", **formats})]
    if nan_share:
        blocks.append(Table("nan_share", ["feature", "NaN share"], [[k, v] for k, v in nan_share[:30]],
                            "NaN share of the built features (largest first)", {"NaN share": "{:.1%}"}))
    return blocks


def target_blocks(view: RunView, oof: Predictions, holdout: Predictions | None) -> list[Any]:
    if view.task == "regression":
        stats = pd.Series(oof.y).describe()
        rows = [[k, float(v)] for k, v in stats.items()]
        if holdout is not None:
            held = pd.Series(holdout.y).describe()
            rows = [[k, float(v), float(held[k])] for k, v in stats.items()]
        columns = ["statistic", "training"] + (["holdout"] if holdout is not None else [])
        return [Table("target", columns, rows, "Target distribution"),
                Figure("target_histogram", plots.histogram_figure(oof.y, "Target distribution (training rows)",
                                                                 str((view.schema or {}).get("target", "target"))),
                       "Histogram of the target")]
    classes = view.classes
    counts = np.bincount(oof.y, minlength=len(classes))
    rows = [[str(c), int(counts[k]), float(counts[k] / counts.sum())] for k, c in enumerate(classes)]
    columns = ["class", "training rows", "training share"]
    if holdout is not None:
        held = np.bincount(holdout.y, minlength=len(classes))
        rows = [r + [int(held[k]), float(held[k] / max(held.sum(), 1))] for k, r in enumerate(rows)]
        columns += ["holdout rows", "holdout share"]
    return [Table("target", columns, rows, "Target balance",
                  {"training share": "{:.2%}", "holdout share": "{:.2%}"})]


def missing_blocks(features: dict[str, Any], tables: Any, note: str | None) -> list[Any]:
    """Missing share per feature (from the training data when it still matches) and category counts."""
    columns = features.get("columns", [])
    categories = features.get("categories", {})
    blocks: list[Any] = []
    if tables is not None:
        train, test = tables.train, tables.test
        share = {c: float(train[c].isna().mean()) for c in columns if c in train.columns}
        test_share = {c: float(test[c].isna().mean()) for c in columns if test is not None and c in test.columns}
        with_missing = sorted((c for c in share if share[c] > 0), key=lambda c: -share[c])
        blocks.append(Facts({"features with missing values": f"{len(with_missing)} of {len(share)}",
                             "training rows with any missing feature": float(train[list(share)].isna().any(axis=1).mean())},
                            {"training rows with any missing feature": "{:.2%}"}))
        if with_missing:
            rows = [[c, share[c], test_share.get(c)] for c in with_missing]
            blocks.append(Table("missing", ["feature", "missing share (training)", "missing share (holdout)"], rows,
                                "Features with missing values", {"missing share (training)": "{:.2%}",
                                                                 "missing share (holdout)": "{:.2%}"}))
    elif note:
        blocks.append(Text(f"Missing shares not shown: {note}."))
    if categories:
        blocks.append(category_table(categories, features.get("rare_categories") or {}, tables))
    return blocks


def category_table(categories: dict[str, list[str]], rare: dict[str, list[str]], tables: Any) -> Table:
    """Each categorical feature's categories (and those grouped with missing as rare) and missing share."""
    rows = [[name, len(values)] for name, values in sorted(categories.items(), key=lambda kv: -len(kv[1]))]
    columns = ["categorical feature", "categories in training"]
    if rare:
        rows, columns = [r + [len(rare.get(r[0], ()))] for r in rows], [*columns, "rare, grouped with missing"]
    if tables is not None:
        rows = [r + [float(tables.train[r[0]].isna().mean()) if r[0] in tables.train else None] for r in rows]
        columns.append("missing share")
    return Table("categorical", columns, rows, "Categorical features and their cardinality", {"missing share": "{:.2%}"})


def cv_section(view: RunView, oof: Predictions, oof_interval: Interval) -> Section:
    """Splitter and why, the fold table, and the spread of fold scores."""
    scores, cfg = view.summary or {}, view.config
    splitter = scores.get("splitter", "")
    why = SPLITTER_WHY.get(splitter, splitter)
    if cfg is not None:
        why = why.format(group=cfg.cv.group or "group", time=cfg.cv.time or "time")
        if scores.get("time_gap"):
            why += (f", leaving out the {scores['time_gap']} `{cfg.cv.time}` value(s) just before each validated block "
                    "(their labels reach into it)")
        if cfg.cv.splitter == "auto":
            why += " (chosen automatically from the task" + (" and cv.group)" if cfg.cv.group else ")")
    fold_scores = [f["score"] for f in scores.get("folds", [])]
    label, rows = fold_rows(view.task, scores.get("folds", []), oof)
    section = Section("cv", "Cross-validation")
    section.add(Text(f"Splitter: {why}."),
                Facts({"splitter": splitter, "folds": scores.get("n_splits"), "repeats": scores.get("n_repeats"),
                       "early stopping on": scores.get("early_stopping"),
                       "fold score mean": float(np.mean(fold_scores)), "fold score std": float(np.std(fold_scores)),
                       "fold score min": float(np.min(fold_scores)), "fold score max": float(np.max(fold_scores)),
                       f"OOF {view.metric} (all rows at once)": scores.get("oof_score")}),
                Figure("fold_scores", plots.fold_scores_figure(fold_scores, oof_interval.score,
                                                               (oof_interval.low, oof_interval.high), view.metric),
                       "Each fold's score against the OOF score and its 95% bootstrap interval"),
                Table("folds", ["repeat", "fold", "train rows", "valid rows", label, "best iteration", view.metric,
                                "seconds"], rows, "One row per fold model",
                      {"valid positive rate": "{:.2%}", "valid majority share": "{:.2%}", "seconds": "{:.2f}"}))
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
        rows.append([f["repeat"], f["fold"], f["n_train"], f["n_valid"], stat, f["best_iteration"], f["score"],
                     f["seconds"]])
    return label, rows


def provenance_section(view: RunView) -> Section:
    """Config, hashes, library versions and every artifact with its sha256."""
    manifest = view.manifest
    versions = manifest.get("versions", {})
    files = [[name, entry.get("stage", "train"), int(entry.get("size", 0)), str(entry.get("sha256", ""))[:16]]
             for name, entry in sorted(manifest.get("files", {}).items())]
    section = Section("provenance", "Provenance", data={"files": manifest.get("files", {})})
    section.add(Facts({"run folder": str(view.dir), "run id": view.run_id,
                       "config hash": manifest.get("config_hash"), "data fingerprint": manifest.get("data_fingerprint"),
                       "stages": ", ".join(view.stages)}),
                Table("versions", ["library", "version"], [[k, v] for k, v in sorted(versions.items())],
                      "Library versions the run was made with"),
                Table("artifacts", ["file", "stage", "bytes", "sha256 (first 16)"], files,
                      "Artifacts listed in manifest.json (sha256 verified when read)"))
    config_text = view.text("config.toml")
    if config_text is not None:
        section.add(Text("Resolved config (`config.toml`):"), Code(config_text))
    return section
