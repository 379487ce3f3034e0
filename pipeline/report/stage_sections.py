"""Report sections of the later stages (importance, selection, tuning, ensembles), read from the
files those stages document; a stage that did not run gives no section.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import GbpipeError
from pipeline.core.metrics import GREATER_IS_BETTER

from . import plots
from .page import Facts, Figure, Section, Table, Text
from .runview import RunView
from .stage_files import MAX_ROWS, StageFolder, stage_dirs

TOP_FEATURES = 25
MAX_STUDIES = 3


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
SUMMARY_FACTS = {"n_models": "fold models", "n_repeats": "shuffles per feature and fold", "confidence": "interval level",
                 "rows_predicted_share": "share of shuffled rows predicted again (the rest provably unchanged)",
                 "not_above_zero": "features whose interval reaches zero", "seconds": "seconds"}


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
        section.add(Text("**Permutation importance** (importance stage): the drop in the OOF metric when a "
                         "feature's values are shuffled on each fold's validation rows, mean over folds and "
                         "repeats with its interval."),
                    Facts({label: _listed(summary[key]) for key, label in SUMMARY_FACTS.items() if key in summary},
                          {"share of shuffled rows predicted again (the rest provably unchanged)": "{:.1%}",
                           "seconds": "{:.1f}"}))
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
                section.add(Figure("importance_" + Path(name).stem, view.reader.read_bytes(name),
                                   f"From the importance stage: `{name}`"))
    section.add(*selection_blocks(view))
    return section


def _listed(value: Any) -> Any:
    return (", ".join(map(str, value)) or "none") if isinstance(value, list) else value


def _null_blocks(frame: pd.DataFrame) -> list[Any]:
    """Real gain against the gain of models trained on a shuffled target (null importance)."""
    real = per_feature(frame[frame["kind"] == "null_real_gain"]).set_index("feature")
    null = per_feature(frame[frame["kind"] == "null_gain"]).set_index("feature")
    score = per_feature(frame[frame["kind"] == "null_score"]).set_index("feature") \
        if (frame["kind"] == "null_score").any() else None
    rows = []
    for feature in real.index:
        rows.append([feature, _num(real.at[feature, "value"]), _num(null["value"].get(feature)),
                     _num(null["ci_high"].get(feature)) if "ci_high" in null else None,
                     _num(real["p_value"].get(feature)) if "p_value" in real else None,
                     _num(score["value"].get(feature)) if score is not None else None])
    top = rows[:TOP_FEATURES]
    return [Text("**Null importance**: the same models trained on a shuffled target give each feature's gain "
                 "by chance; a feature matters when its real gain lies above that band (small p-value)."),
            Figure("importance_null", plots.interval_figure(
                [r[0] for r in top], [r[1] for r in top],
                [_nan(null["ci_low"].get(r[0])) if "ci_low" in null else float("nan") for r in top],
                [_nan(r[3]) for r in top], "Real gain (dot) against the null-gain band (line)", "gain"),
                "Null importance: real gain of each feature against the range of gains with a shuffled target"),
            Table("importance_null", ["feature", "real gain", "null gain (mean)", "null gain (upper)", "p-value",
                                      "score log(real / (1 + null q75))"], rows[:MAX_ROWS], "Null importance")]


def _gain_split_blocks(frame: pd.DataFrame) -> list[Any]:
    gain, split = per_feature(frame[frame["kind"] == "gain"]), per_feature(frame[frame["kind"] == "split"])
    split_by = dict(zip(split["feature"], split["value"]))
    total = float(gain["value"].sum()) or 1.0
    rows = [[r.feature, float(r.value), float(r.value) / total, _num(r.std), split_by.get(r.feature)]
            for r in gain.itertuples()]
    top = gain.head(TOP_FEATURES)
    std = top["std"].fillna(0).to_numpy(float) if "std" in top else np.zeros(len(top))
    return [Figure("importance_gain", plots.bars_figure(top["feature"].tolist(), top["value"].to_numpy(float),
                                                        top["value"] - std, top["value"] + std,
                                                        "Gain importance (mean over folds ± std)", "total gain"),
                   "Gain importance of each feature, mean over fold models with ± one standard deviation"),
            Table("gain_split", ["feature", "gain", "gain share", "gain std over folds", "splits"], rows[:MAX_ROWS],
                  "Gain and split importance (mean over fold models)", {"gain share": "{:.2%}"})]


def _kind_blocks(kind: str, rows: pd.DataFrame) -> list[Any]:
    top = rows.head(TOP_FEATURES)
    if {"ci_low", "ci_high"} <= set(top.columns):
        low, high, band = top["ci_low"], top["ci_high"], "interval"
    else:
        std = top["std"].fillna(0) if "std" in top.columns else pd.Series(0.0, index=top.index)
        low, high, band = top["value"] - std, top["value"] + std, "± std"
    columns = ["feature", "value"] + [c for c in ("std", "ci_low", "ci_high", "p_value")
                                      if c in rows.columns and rows[c].notna().any()]
    title = f"{kind.replace('_', ' ').capitalize()} importance"
    return [Figure(f"importance_{kind}", plots.bars_figure(top["feature"].tolist(), top["value"].to_numpy(float),
                                                           low.to_numpy(float), high.to_numpy(float),
                                                           f"{title} ({band})", kind),
                   f"{title} per feature with error bars ({band})"),
            Table(f"importance_{kind}", [COLUMN_LABELS.get(c, c) for c in columns],
                  [[_num(v) for v in r] for r in rows[columns].head(MAX_ROWS).itertuples(index=False)], title)]


COLUMN_LABELS = {"value": "mean", "std": "std over folds", "ci_low": "CI low", "ci_high": "CI high",
                 "p_value": "p-value"}


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
    note = ("this run was trained on its features" if mine else
            "the experiment's newest selection; this run was not trained on its list")
    final = doc.get("final") or {}
    stability = doc.get("stability") or {}
    kept = set(final.get("features") or chosen.get("features") or [])
    rows = [[name, share, name in kept] for name, share in sorted(stability.items(), key=lambda kv: -kv[1])]
    dropped = "; ".join(f"{reason}: {', '.join(cols)}" for reason, cols in (final.get("dropped") or {}).items() if cols)
    return [Text(f"**Feature selection** `{folder.name}` ({note}). The nested OOF score repeats the whole "
                 "selection inside each outer fold, so it is honest; the naive score selects once on all rows."),
            Facts({"nested OOF score": doc.get("nested_oof_score"), "naive OOF score": doc.get("naive_oof_score"),
                   "all features OOF score": doc.get("all_features_oof_score"), "optimism (naive − nested)":
                   doc.get("optimism"), "features kept": f"{len(kept)} of {doc.get('n_features_total', '?')}",
                   "stability (mean Jaccard between folds)": doc.get("stability_mean_jaccard"),
                   "dropped": dropped or None}),
            Table("selection_stability", ["feature", "share of outer folds keeping it", "in the final list"], rows,
                  "Selection stability per feature", {"share of outer folds keeping it": "{:.0%}"})]


def selection_score(view: RunView) -> float | None:
    """The nested OOF score of the selection this run was trained on, if any."""
    found = selections(view)
    if found and trained_on(view, found[0][2]) and isinstance(found[0][1].get("nested_oof_score"), (int, float)):
        return float(found[0][1]["nested_oof_score"])
    return None


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
    blocks: list[Any] = [Text(f"**Study `{folder.name}`**" + (" — this run used its best parameters." if applied else ""))]
    blocks.append(Facts(study_facts(summary, best)))
    if isinstance(params, dict) and params:
        blocks.append(Table(f"best_params_{folder.name}", ["parameter", "best value"],
                            [[k, v if isinstance(v, (int, float, str)) else json.dumps(v)] for k, v in sorted(params.items())],
                            "Best parameters"))
    pngs = stage.names("plots/", ".png")
    for name in pngs:
        blocks.append(Figure(f"tune_{folder.name}_{Path(name).stem}", stage.bytes(name),
                             f"{Path(name).stem.replace('_', ' ').capitalize()} (study `{folder.name}`)"))
    trials = stage.parquet("trials.parquet") if not pngs else None
    if trials is not None and "value" in trials.columns:
        metric = view.metric or "value"
        blocks.append(Figure(f"tune_{folder.name}_history", plots.history_figure(
            trials["value"].to_numpy(float), GREATER_IS_BETTER.get(metric, False), metric),
            f"Optimisation history (study `{folder.name}`)"))
    return blocks


def study_facts(summary: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one study: trials, best value against the default parameters, time."""
    counts = summary.get("counts") or {}
    top = summary.get("best") or {}
    default = summary.get("default_trial") or {}
    facts = {"metric": summary.get("metric", best.get("metric")), "direction": summary.get("direction"),
             "finished trials": summary.get("n_finished", counts.get("complete")), "pruned trials": counts.get("pruned"),
             "failed trials": counts.get("failed"), "best value": top.get("value", best.get("value")),
             "best trial": top.get("trial", best.get("trial")), "value with the default parameters": default.get("value"),
             "workers": summary.get("workers"), "seconds": summary.get("seconds")}
    if isinstance(facts["best value"], float) and isinstance(facts["value with the default parameters"], float):
        sign = 1.0 if summary.get("direction", "maximize") == "maximize" else -1.0
        facts["gain over the default parameters"] = sign * (facts["best value"] - facts["value with the default parameters"])
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
    section.add(Facts({"ensemble run": str(source.dir) if source is not view else None,
                       "recommended model": doc.get("recommended"), "why": doc.get("recommendation"),
                       "selected for predict": doc.get("selected"), "best single member": doc.get("best_member"),
                       "best model on OOF": doc.get("best_model"), "rows compared": doc.get("n_compared"),
                       "bootstrap resamples": (doc.get("bootstrap") or {}).get("n_boot")}))
    if rows:
        names = [f"{r[0]} ({r[1]})" for r in rows]
        best = next((i for i, r in enumerate(rows) if r[0] == doc.get("recommended")), None)
        section.add(Figure("ensemble_scores", plots.interval_figure(
            names, [r[2] for r in rows], [_nan(r[3]) for r in rows], [_nan(r[4]) for r in rows],
            f"Members and combiners: OOF {metric} (95% CI)", metric, highlight=best),
            "OOF score of every member and combiner with its paired-bootstrap interval; the recommended one "
            "highlighted"),
            Table("ensemble_models", ["model", "kind", f"OOF {metric}", "CI low", "CI high", "gain vs best member",
                                      "gain CI low", "gain CI high", "verdict", "holdout", "score source"], rows,
                  "Members and combiners on the same OOF rows; gain is better-is-positive"))
    section.add(*weights_blocks(source.json("ensemble/weights.json")))
    return section


def ensemble_rows(models: dict[str, Any]) -> list[list[Any]]:
    """One row per member and combiner of ensemble/scores.json's `models`."""
    rows = []
    for name, m in models.items():
        if not isinstance(m, dict) or not isinstance(m.get("oof_score"), (int, float)):
            continue
        ci = m.get("oof_ci") or [None, None]
        gain = m.get("gain_over_best_member") or {}
        rows.append([name, m.get("family", m.get("kind")), m["oof_score"], ci[0], ci[1], gain.get("gain"),
                     gain.get("low"), gain.get("high"), gain.get("verdict"), m.get("holdout_score"),
                     m.get("score_source")])
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
        text = (", ".join(f"{m} {w:.3f}" for m, w in shares.items()) if isinstance(shares, dict)
                else "meta-model over " + ", ".join(map(str, comb.get("members", []))))
        rows.append([name, comb.get("kind"), comb.get("on"), text])
    if not rows:
        return []
    return [Table("ensemble_weights", ["combiner", "kind", "combines", "weights"], rows,
                  f"Combiner weights (selected for predict: {weights.get('selected')})")]


def _nan(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")
