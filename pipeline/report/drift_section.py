"""The report's "Drift" section, read from the files `gbpipe drift` adds to a run (drift/summary.json,
drift/features.parquet, drift/cutoffs.parquet and its plots); a run without them gives no section.

It answers one question for the reader of the OOF score: do the rows to predict look like the rows the
score was measured on, and if not, does what differs matter to the model?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .page import Facts, Figure, Section, Table, Text, as_float
from .runview import RunView

TOP_FEATURES = 15
# Adversarial AUC bands for the sentence: below the first the two sets are hard to tell apart.
AUC_SIMILAR, AUC_DIFFERENT = 0.6, 0.75


def drift_section(view: RunView) -> Section | None:
    """Adversarial AUC with its interval, the most drifting features with their importance, drift over time."""
    summary = view.json("drift/summary.json")
    if not isinstance(summary, dict):
        return None
    features = view.parquet("drift/features.parquet")
    section = Section("drift", "Drift")
    section.add(Text(meaning_sentence(summary, features)), Facts(summary_facts(summary), FACT_FORMATS))
    if features is not None and len(features):
        section.add(feature_table(features, summary))
    cutoffs = view.parquet("drift/cutoffs.parquet")
    if cutoffs is not None and len(cutoffs):
        section.add(*cutoff_blocks(cutoffs, view.scores or {}))
    for name in view.files("drift/plots/"):
        if name.endswith(".png"):
            section.add(Figure("drift_" + Path(name).stem, view.reader.read_bytes(name), f"`{name}`"))
    section.data["drift"] = {k: summary.get(k) for k in ("adversarial", "top_features", "thresholds", "n_new")}
    return section


FACT_FORMATS = {
    "adversarial AUC (0.5: indistinguishable)": "{:.3f}",
    "training rows that look like the new rows": "{:.1%}",
}


def summary_facts(summary: dict[str, Any]) -> dict[str, Any]:
    adv = summary.get("adversarial") or {}
    thresholds = summary.get("thresholds") or {}
    facts = {
        "new rows": f"{summary.get('n_new')} ({summary.get('new_rows_source')})",
        "training rows": summary.get("n_train"),
        "adversarial AUC (0.5: indistinguishable)": as_float(adv.get("auc")),
        "its interval": _interval(adv),
        "training rows that look like the new rows": as_float(adv.get("share_train_like_new")),
        "PSI thresholds (moderate, major)": f"{thresholds.get('psi_moderate')}, {thresholds.get('psi_major')}",
    }
    return {k: v for k, v in facts.items() if v is not None}


def _interval(adv: dict[str, Any]) -> str | None:
    low, high = as_float(adv.get("ci_low")), as_float(adv.get("ci_high"))
    return None if np.isnan(low) or np.isnan(high) else f"{low:.3f} .. {high:.3f}"


def meaning_sentence(summary: dict[str, Any], features: pd.DataFrame | None) -> str:
    """What the numbers mean for the OOF score, in one sentence."""
    auc = as_float((summary.get("adversarial") or {}).get("auc"))
    flagged = _flagged(features)
    important = _important_drifters(features)
    if np.isnan(auc):
        how = "No adversarial score was computed"
    elif auc < AUC_SIMILAR:
        how = f"A classifier barely tells the new rows from the training rows (AUC {auc:.3f})"
    elif auc < AUC_DIFFERENT:
        how = f"A classifier tells the new rows from the training rows moderately well (AUC {auc:.3f})"
    else:
        how = f"A classifier tells the new rows from the training rows easily (AUC {auc:.3f})"
    if not flagged:
        return how + ", and no feature drifts past the moderate PSI threshold: the OOF score should carry over."
    if important:
        return (
            how + f"; {len(flagged)} feature(s) drift past the PSI threshold, and the model leans on "
            f"{', '.join(important)}: expect the score on the new rows to differ from the OOF score."
        )
    return (
        how + f"; {len(flagged)} feature(s) drift past the PSI threshold, none of them among the model's most "
        "used, so the OOF score should mostly carry over."
    )


def _flagged(features: pd.DataFrame | None) -> list[str]:
    if features is None or "flag" not in features:
        return []
    return features.loc[features["flag"] != "none", "feature"].astype(str).tolist()


def _important_drifters(features: pd.DataFrame | None, share: float = 0.05) -> list[str]:
    """Flagged features that carry at least `share` of the run's gain: the ones to look at."""
    if features is None or "train_gain_share" not in features:
        return []
    mask = (features["flag"] != "none") & (features["train_gain_share"].fillna(0) >= share)
    return features.loc[mask, "feature"].astype(str).tolist()[:5]


def feature_table(features: pd.DataFrame, summary: dict[str, Any]) -> Table:
    top = features.sort_values("psi", ascending=False).head(TOP_FEATURES)
    columns = ["feature", "kind", "psi", "kl", "ks_p_adjusted", "missing_train", "missing_new", "unseen_new"]
    columns += ["train_gain_share", "adversarial_gain_share", "flag"]
    present = [c for c in columns if c in top.columns]
    rows = [[_cell(row[c]) for c in present] for _, row in top.iterrows()]
    correction = summary.get("ks_correction", "a multiple-testing")
    return Table(
        "drift_features",
        present,
        rows,
        f"The {len(rows)} most drifting features by PSI on the training run's bins (KL on the same bins; KS "
        f"p-values with the {correction} correction); train_gain_share is the feature's share of the model's "
        "gain: a drifting feature that matters is the one to look at.",
        {c: "{:.3f}" for c in present if c not in ("feature", "kind", "flag")},
    )


def cutoff_blocks(cutoffs: pd.DataFrame, scores: dict[str, Any]) -> list[Any]:
    """Drift over time beside the per-cutoff OOF scores: a cutoff that drifts is one whose score to doubt."""
    by_cutoff = scores.get("oof_score_by_cutoff") or {}
    holdout = scores.get("holdout_score")
    rows = []
    for _, row in cutoffs.iterrows():
        cutoff = str(row["cutoff"])[:10]
        score = by_cutoff.get(cutoff, holdout if row.get("reference") == "training rows" else None)
        rows.append(
            [cutoff, row.get("reference"), _cell(row["n_rows"]), _cell(row["mean_psi"]), _cell(row["max_psi"])]
            + [row.get("top_feature"), _cell(row.get("n_moderate")), _cell(row.get("n_major")), _cell(score)]
        )
    metric = scores.get("metric", "score")
    columns = ["cutoff", "against", "rows", "mean PSI", "max PSI", "top feature", "moderate", "major", metric]
    return [
        Text(
            "**Drift over time**: each cutoff's rows against the rows of all earlier cutoffs (the test cutoff "
            f"against all training rows), beside its OOF {metric} (the holdout score at the test cutoff)."
        ),
        Table("drift_cutoffs", columns, rows, "", {c: "{:.3f}" for c in ("mean PSI", "max PSI", metric)}),
    ]


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number
