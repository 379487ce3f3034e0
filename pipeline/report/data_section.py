"""The report's data section: the tables, the point-in-time features that built them, the target, missing
values and categories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import plots
from .page import Facts, Figure, Section, Table, Text
from .runview import Predictions, RunView
from .sections import cutoff_score_columns
from .stage_files import generic_blocks


def test_rows(scores: dict[str, Any]) -> dict[str, Any]:
    """Test rows predicted without labels (a scoring cutoff's rows), beside the holdout's count."""
    return {"test rows (labels unknown)": scores["n_test"]} if "n_test" in scores else {}


def data_section(
    view: RunView, oof: Predictions, holdout: Predictions | None, tables: Any, note: str | None
) -> Section:
    """Rows, columns, target balance or distribution, missing shares, categorical cardinalities."""
    scores, schema = view.summary or {}, view.schema or {}
    features = schema.get("features", {})
    kinds = features.get("kinds", {})
    section = Section("data", "Data")
    section.add(
        Facts(
            {
                "training rows": scores.get("n_rows"),
                "validated rows": scores.get("n_validated"),
                "holdout rows": scores.get("n_holdout"),
                **test_rows(scores),
                "features": len(kinds),
                "numeric features": sum(k == "numeric" for k in kinds.values()),
                "categorical features": sum(k == "categorical" for k in kinds.values()),
                "target": schema.get("target"),
                "data fingerprint": str(view.manifest.get("data_fingerprint", ""))[:16],
            }
        )
    )
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
    facts = {
        "source": summary.get("source"),
        "entity": summary.get("entity"),
        "time column": summary.get("time"),
        "label": label.get("definition") if isinstance(label, dict) else label,
        "event lines": summary.get("event_lines"),
        "lines without an entity (left out)": summary.get("excluded_lines_without_entity"),
        "event lines used": summary.get("event_lines_used"),
        "entities": summary.get("entities"),
        "features built": summary.get("n_features"),
        "windows": ", ".join(map(str, summary.get("windows") or [])) or None,
        "build time (s)": summary.get("build_seconds"),
    }
    nan_share = sorted((summary.get("nan_share_per_feature") or {}).items(), key=lambda kv: -kv[1])
    blocks: list[Any] = [
        Text("**Feature building**: one row per entity and cutoff, built only from lines dated before the cutoff."),
        Facts({k: v for k, v in facts.items() if v is not None}),
        Figure(
            "cutoffs",
            plots.cutoffs_figure([r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows], rate_label, test),
            f"Rows and {rate_label} per cutoff",
        ),
        Table(
            "cutoffs",
            columns,
            rows,
            f"Rows, {rate_label} and score per cutoff",
            {rate_label: "{:.2%}" if rate_label == "positive rate" else "{:.4g}", **formats},
        ),
    ]
    if nan_share:
        blocks.append(
            Table(
                "nan_share",
                ["feature", "NaN share"],
                [[k, v] for k, v in nan_share[:30]],
                "NaN share of the built features (largest first)",
                {"NaN share": "{:.1%}"},
            )
        )
    return blocks


def target_blocks(view: RunView, oof: Predictions, holdout: Predictions | None) -> list[Any]:
    if view.task == "regression":
        stats = pd.Series(oof.y).describe()
        rows = [[k, float(v)] for k, v in stats.items()]
        if holdout is not None:
            held = pd.Series(holdout.y).describe()
            rows = [[k, float(v), float(held[k])] for k, v in stats.items()]
        columns = ["statistic", "training"] + (["holdout"] if holdout is not None else [])
        return [
            Table("target", columns, rows, "Target distribution"),
            Figure(
                "target_histogram",
                plots.histogram_figure(
                    oof.y, "Target distribution (training rows)", str((view.schema or {}).get("target", "target"))
                ),
                "Histogram of the target",
            ),
        ]
    classes = view.classes
    counts = np.bincount(oof.y, minlength=len(classes))
    rows = [[str(c), int(counts[k]), float(counts[k] / counts.sum())] for k, c in enumerate(classes)]
    columns = ["class", "training rows", "training share"]
    if holdout is not None:
        held = np.bincount(holdout.y, minlength=len(classes))
        rows = [r + [int(held[k]), float(held[k] / max(held.sum(), 1))] for k, r in enumerate(rows)]
        columns += ["holdout rows", "holdout share"]
    return [Table("target", columns, rows, "Target balance", {"training share": "{:.2%}", "holdout share": "{:.2%}"})]


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
        blocks.append(
            Facts(
                {
                    "features with missing values": f"{len(with_missing)} of {len(share)}",
                    "training rows with any missing feature": float(train[list(share)].isna().any(axis=1).mean()),
                },
                {"training rows with any missing feature": "{:.2%}"},
            )
        )
        if with_missing:
            rows = [[c, share[c], test_share.get(c)] for c in with_missing]
            blocks.append(
                Table(
                    "missing",
                    ["feature", "missing share (training)", "missing share (holdout)"],
                    rows,
                    "Features with missing values",
                    {"missing share (training)": "{:.2%}", "missing share (holdout)": "{:.2%}"},
                )
            )
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
    return Table(
        "categorical", columns, rows, "Categorical features and their cardinality", {"missing share": "{:.2%}"}
    )
