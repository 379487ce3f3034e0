"""Report sections of the importance and selection stages, read from the files those stages document in the run
and beside it; a stage that did not run gives no section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import GbpipeError

from . import plots
from .page import Facts, Figure, Section, Table, Text, as_float
from .runview import RunView
from .stage_files import MAX_ROWS, StageFolder, stage_dirs

TOP_FEATURES = 25


def per_feature(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per feature: the fold-mean rows (fold = -1) when present, else mean and std over rows."""
    if "fold" in frame.columns and (frame["fold"] == -1).any():
        rows = frame[frame["fold"] == -1].copy()
    else:
        grouped = frame.groupby("feature", sort=False)["value"]
        rows = grouped.agg(["mean", "std"]).rename(columns={"mean": "value"}).reset_index()
        for extra in ("ci_low", "ci_high", "p_value"):
            if extra in frame.columns:
                rows[extra] = frame.groupby("feature", sort=False)[extra].mean().to_numpy()
    return rows.sort_values("value", ascending=False).reset_index(drop=True)


NULL_KINDS = ("null_gain", "null_real_gain", "null_score")


SUMMARY_FACTS = {
    "n_models": "fold models",
    "n_repeats": "shuffles per feature and fold",
    "confidence": "interval level",
    "rows_predicted_share": "share of shuffled rows predicted again (the rest provably unchanged)",
    "not_above_zero": "features whose interval reaches zero",
    "seconds": "seconds",
}


def importance_section(view: RunView) -> Section | None:
    """Gain and split (training), permutation with error bars and null importance (importance stage)."""
    base = view.parquet("importance.parquet")
    extra = view.parquet("importance/importance.parquet")
    if base is None and extra is None:
        return None
    section = Section("importance", "Importance")
    if base is not None:
        section.add(*_gain_split_blocks(base))
    summary = view.json("importance/summary.json")
    if isinstance(summary, dict):
        section.add(
            Text(
                "**Permutation importance** (importance stage): the drop in the OOF metric when a "
                "feature's values are shuffled on each fold's validation rows, mean over folds and "
                "repeats with its interval."
            ),
            Facts(
                {label: _listed(summary[key]) for key, label in SUMMARY_FACTS.items() if key in summary},
                {"share of shuffled rows predicted again (the rest provably unchanged)": "{:.1%}", "seconds": "{:.1f}"},
            ),
        )
    if extra is not None:
        kinds = [str(k) for k in extra["kind"].unique()]
        for kind in kinds:
            if kind not in NULL_KINDS and (kind not in ("gain", "split") or base is None):
                section.add(*_kind_blocks(kind, per_feature(extra[extra["kind"] == kind])))
        if "null_real_gain" in kinds and "null_gain" in kinds:
            section.add(*_null_blocks(extra))
    else:
        for name in view.files("importance/"):
            if name.endswith(".png"):
                section.add(
                    Figure(
                        "importance_" + Path(name).stem,
                        view.reader.read_bytes(name),
                        f"From the importance stage: `{name}`",
                    )
                )
    section.add(*selection_blocks(view))
    return section


def _listed(value: Any) -> Any:
    return (", ".join(map(str, value)) or "none") if isinstance(value, list) else value


def _null_blocks(frame: pd.DataFrame) -> list[Any]:
    """Real gain against the gain of models trained on a shuffled target (null importance)."""
    real = per_feature(frame[frame["kind"] == "null_real_gain"]).set_index("feature")
    null = per_feature(frame[frame["kind"] == "null_gain"]).set_index("feature")
    score = (
        per_feature(frame[frame["kind"] == "null_score"]).set_index("feature")
        if (frame["kind"] == "null_score").any()
        else None
    )
    rows = []
    for feature in real.index:
        rows.append(
            [
                feature,
                _num(real.at[feature, "value"]),
                _num(null["value"].get(feature)),
                _num(null["ci_high"].get(feature)) if "ci_high" in null else None,
                _num(real["p_value"].get(feature)) if "p_value" in real else None,
                _num(score["value"].get(feature)) if score is not None else None,
            ]
        )
    top = rows[:TOP_FEATURES]
    return [
        Text(
            "**Null importance**: the same models trained on a shuffled target give each feature's gain "
            "by chance; a feature matters when its real gain lies above that band (small p-value)."
        ),
        Figure(
            "importance_null",
            plots.interval_figure(
                [r[0] for r in top],
                [r[1] for r in top],
                [as_float(null["ci_low"].get(r[0])) if "ci_low" in null else float("nan") for r in top],
                [as_float(r[3]) for r in top],
                "Real gain (dot) against the null-gain band (line)",
                "gain",
            ),
            "Null importance: real gain of each feature against the range of gains with a shuffled target",
        ),
        Table(
            "importance_null",
            [
                "feature",
                "real gain",
                "null gain (mean)",
                "null gain (upper)",
                "p-value",
                "score log(real / (1 + null q75))",
            ],
            rows[:MAX_ROWS],
            "Null importance",
        ),
    ]


def _gain_split_blocks(frame: pd.DataFrame) -> list[Any]:
    gain, split = per_feature(frame[frame["kind"] == "gain"]), per_feature(frame[frame["kind"] == "split"])
    split_by = dict(zip(split["feature"], split["value"]))
    total = float(gain["value"].sum()) or 1.0
    rows = [
        [r.feature, float(r.value), float(r.value) / total, _num(r.std), split_by.get(r.feature)]
        for r in gain.itertuples()
    ]
    top = gain.head(TOP_FEATURES)
    std = top["std"].fillna(0).to_numpy(float) if "std" in top else np.zeros(len(top))
    return [
        Figure(
            "importance_gain",
            plots.bars_figure(
                top["feature"].tolist(),
                top["value"].to_numpy(float),
                top["value"] - std,
                top["value"] + std,
                "Gain importance (mean over folds ± std)",
                "total gain",
            ),
            "Gain importance of each feature, mean over fold models with ± one standard deviation",
        ),
        Table(
            "gain_split",
            ["feature", "gain", "gain share", "gain std over folds", "splits"],
            rows[:MAX_ROWS],
            "Gain and split importance (mean over fold models)",
            {"gain share": "{:.2%}"},
        ),
    ]


def _kind_blocks(kind: str, rows: pd.DataFrame) -> list[Any]:
    top = rows.head(TOP_FEATURES)
    if {"ci_low", "ci_high"} <= set(top.columns):
        low, high, band = top["ci_low"], top["ci_high"], "interval"
    else:
        std = top["std"].fillna(0) if "std" in top.columns else pd.Series(0.0, index=top.index)
        low, high, band = top["value"] - std, top["value"] + std, "± std"
    columns = ["feature", "value"] + [
        c for c in ("std", "ci_low", "ci_high", "p_value") if c in rows.columns and rows[c].notna().any()
    ]
    title = f"{kind.replace('_', ' ').capitalize()} importance"
    return [
        Figure(
            f"importance_{kind}",
            plots.bars_figure(
                top["feature"].tolist(),
                top["value"].to_numpy(float),
                low.to_numpy(float),
                high.to_numpy(float),
                f"{title} ({band})",
                kind,
            ),
            f"{title} per feature with error bars ({band})",
        ),
        Table(
            f"importance_{kind}",
            [COLUMN_LABELS.get(c, c) for c in columns],
            [[_num(v) for v in r] for r in rows[columns].head(MAX_ROWS).itertuples(index=False)],
            title,
        ),
    ]


COLUMN_LABELS = {
    "value": "mean",
    "std": "std over folds",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "p_value": "p-value",
}


def _num(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    return value.item() if hasattr(value, "item") else value


def selections(view: RunView) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """The experiment's feature selections on this run's data: (folder, selection.json, selected_features.json),
    the one whose list this run was trained on first, then newest first."""
    found = []
    for folder in stage_dirs(view, "select"):
        try:
            stage = StageFolder(folder)
            doc, chosen = stage.json("selection.json"), stage.json("selected_features.json") or {}
        except (GbpipeError, OSError, ValueError):
            continue
        fingerprint = view.manifest.get("data_fingerprint")
        if isinstance(doc, dict) and (not fingerprint or doc.get("data_fingerprint") in (None, fingerprint)):
            found.append((folder, doc, chosen if isinstance(chosen, dict) else {}))
    return sorted(found, key=lambda f: not trained_on(view, f[2]))


def trained_on(view: RunView, chosen: dict[str, Any]) -> bool:
    """True when the run's features are exactly the selection's list."""
    features = (view.config_dict or {}).get("data", {}).get("features")
    return bool(features) and list(features) == list(chosen.get("features") or [])


def selection_blocks(view: RunView) -> list[Any]:
    """The feature selection behind this run (or the experiment's newest), summarised."""
    found = selections(view)
    if not found:
        return []
    folder, doc, chosen = found[0]
    mine = trained_on(view, chosen)
    note = (
        "this run was trained on its features"
        if mine
        else "the experiment's newest selection; this run was not trained on its list"
    )
    final = doc.get("final") or {}
    stability = doc.get("stability") or {}
    kept = set(final.get("features") or chosen.get("features") or [])
    rows = [[name, share, name in kept] for name, share in sorted(stability.items(), key=lambda kv: -kv[1])]
    dropped = "; ".join(f"{reason}: {', '.join(cols)}" for reason, cols in (final.get("dropped") or {}).items() if cols)
    return [
        Text(
            f"**Feature selection** `{folder.name}` ({note}). The nested OOF score repeats the whole "
            "selection inside each outer fold, so it is honest; the naive score selects once on all rows."
        ),
        Facts(
            {
                "nested OOF score": doc.get("nested_oof_score"),
                "naive OOF score": doc.get("naive_oof_score"),
                "all features OOF score": doc.get("all_features_oof_score"),
                "optimism (naive − nested)": doc.get("optimism"),
                "features kept": f"{len(kept)} of {doc.get('n_features_total', '?')}",
                "stability (mean Jaccard between folds)": doc.get("stability_mean_jaccard"),
                "dropped": dropped or None,
            }
        ),
        Table(
            "selection_stability",
            ["feature", "share of outer folds keeping it", "in the final list"],
            rows,
            "Selection stability per feature",
            {"share of outer folds keeping it": "{:.0%}"},
        ),
    ]


def selection_score(view: RunView) -> float | None:
    """The nested OOF score of the selection this run was trained on, if any."""
    found = selections(view)
    if found and trained_on(view, found[0][2]) and isinstance(found[0][1].get("nested_oof_score"), (int, float)):
        return float(found[0][1]["nested_oof_score"])
    return None
