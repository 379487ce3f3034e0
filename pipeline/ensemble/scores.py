"""The ensemble's honesty guard: every member and combiner scored on the same OOF rows, gains over the
best single member with paired bootstrap intervals, and the simplest model within noise of the best.

A gain counts only when its interval excludes zero; intervals resample OOF rows (the fitted models
are held fixed), with no correction for comparing several models, so read a bare "better" with care.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.core.bootstrap import bootstrap_scores, percentile_interval
from pipeline.core.metrics import GREATER_IS_BETTER, all_metrics, score
from pipeline.data.prepare import Prepared
from pipeline.engine.scoring import unlabelled_test

from .combiners import COMPLEXITY, Combiner


@dataclass(frozen=True)
class Candidate:
    """A model the guard compares: a member or a combiner, with its honest OOF and its test predictions."""

    name: str
    kind: str  # member | hard_vote | soft_vote | greedy | optimized | stack
    oof_pred: np.ndarray
    test_pred: np.ndarray | None
    score_source: str
    in_sample_oof: np.ndarray | None = None  # a combiner fitted on all OOF labels, scored on them (optimistic)
    combiner: Combiner | None = None
    family: str | None = None


def compare(cfg: Config, prep: Prepared, candidates: list[Candidate]) -> dict[str, Any]:
    """scores.json of the ensemble: per model OOF score, interval, gain over the best member, verdict,
    holdout score when the test set has labels, and the recommended (simplest within noise) model."""
    section = cfg.ensemble
    rows = _common_rows(prep, candidates)
    y = prep.y[rows]
    oof_part = _scored_part(cfg, y, [c.oof_pred[rows] for c in candidates], section)
    members = [i for i, c in enumerate(candidates) if c.kind == "member"]
    best_member = _best(oof_part["scores"], members, cfg.metric)
    best = _best(oof_part["scores"], range(len(candidates)), cfg.metric)
    models = {}
    for i, c in enumerate(candidates):
        entry = {
            "kind": c.kind,
            "complexity": COMPLEXITY[c.kind],
            "score_source": c.score_source,
            "oof_score": oof_part["scores"][i],
            "oof_ci": oof_part["ci"][i],
            "gain_over_best_member": _gain(oof_part, i, best_member, section.confidence),
            "within_noise_of_best": i == best or _gain(oof_part, i, best, section.confidence)["high"] >= 0,
        }
        if c.family:
            entry["family"] = c.family
        if c.in_sample_oof is not None:
            entry["in_sample_oof_score"] = score(cfg.metric, y, c.in_sample_oof[rows])
        if c.combiner is not None and c.combiner.weights:
            entry["weights"] = dict(zip(c.combiner.members, c.combiner.weights))
        models[c.name] = entry
    if prep.tables.holdout_window_labels is not None:  # the training rows' labels over a holdout's short window
        y_short = prep.tables.holdout_window_labels.to_numpy()[rows]
        for c in candidates:
            models[c.name]["oof_at_holdout_window"] = score(cfg.metric, y_short, c.oof_pred[rows])
    holdout = _holdout(cfg, prep, candidates, members, models)
    recommended = _recommend(candidates, models, cfg.metric)
    selected = recommended if section.use == "recommended" else section.use
    doc = {
        "experiment": cfg.experiment.name,
        "task": cfg.data.task,
        "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric],
        "n_rows": int(len(prep.y)),
        "n_compared": int(rows.sum()),
        "members": [candidates[i].name for i in members],
        "combiners": [c.name for c in candidates if c.kind != "member"],
        "bootstrap": {
            "n_boot": section.bootstrap_n,
            "seed": section.bootstrap_seed,
            "confidence": section.confidence,
            "paired": True,
            "rows": "OOF rows every model predicted (held-out rows for holdout_*)",
        },
        "best_member": candidates[best_member].name,
        "best_model": candidates[best].name,
        "recommended": recommended,
        "recommendation": _reason(models, recommended, candidates[best].name),
        "selected": selected,
        "models": models,
        **holdout,
    }
    chosen = next(c for c in candidates if c.name == selected)
    doc["oof_score"] = models[selected]["oof_score"]
    doc["oof_metrics"] = all_metrics(cfg.data.task, y, chosen.oof_pred[rows])
    if "holdout_score" in models[selected]:
        doc["holdout_score"] = models[selected]["holdout_score"]
        doc["holdout_metrics"] = all_metrics(cfg.data.task, prep.y_test, chosen.test_pred)
    return doc


def _common_rows(prep: Prepared, candidates: list[Candidate]) -> np.ndarray:
    rows = prep.folds.validated().copy()
    for c in candidates:
        rows &= np.isfinite(c.oof_pred).all(axis=1) if c.oof_pred.ndim == 2 else np.isfinite(c.oof_pred)
    return rows


def _scored_part(cfg: Config, y: np.ndarray, preds: list[np.ndarray], section) -> dict[str, Any]:
    """Scores on all rows and on shared bootstrap resamples (so any two models are compared paired)."""
    boot = bootstrap_scores(cfg.metric, y, preds, section.bootstrap_n, section.bootstrap_seed)
    return {
        "scores": [score(cfg.metric, y, p) for p in preds],
        "boot": boot,
        "ci": [list(percentile_interval(boot[:, i], section.confidence)) for i in range(len(preds))],
        "sign": 1.0 if GREATER_IS_BETTER[cfg.metric] else -1.0,
    }


def _gain(part: dict[str, Any], i: int, ref: int, confidence: float) -> dict[str, Any]:
    """Model i minus model ref, oriented so that positive means better, with its paired interval."""
    sign = part["sign"]
    gain = sign * (part["scores"][i] - part["scores"][ref])
    low, high = percentile_interval(sign * (part["boot"][:, i] - part["boot"][:, ref]), confidence)
    if i == ref:
        verdict = "reference"
    elif low > 0:
        verdict = "better"
    elif high < 0:
        verdict = "worse"
    else:
        verdict = "within noise"
    return {"gain": float(gain) + 0.0, "low": low + 0.0, "high": high + 0.0, "verdict": verdict}  # no -0.0


def _best(scores: list[float], indices, metric: str) -> int:
    indices = list(indices)
    values = [scores[i] for i in indices]
    pick = int(np.argmax(values) if GREATER_IS_BETTER[metric] else np.argmin(values))
    return indices[pick]


def _recommend(candidates: list[Candidate], models: dict[str, Any], metric: str) -> str:
    """The simplest model within noise of the best (ties in simplicity: the better score). A combiner
    must also score at least as well as the best member: a wide interval (e.g. the log-loss of hard
    votes) must not carry a poor combiner past the members."""
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    eligible = [
        c.name
        for c in candidates
        if models[c.name]["within_noise_of_best"]
        and (c.kind == "member" or models[c.name]["gain_over_best_member"]["gain"] >= 0)
    ]
    return min(eligible, key=lambda name: (models[name]["complexity"], -sign * models[name]["oof_score"]))


def _reason(models: dict[str, Any], recommended: str, best: str) -> str:
    if recommended == best:
        return f"{best} has the best OOF score and no simpler model is within noise of it"
    return (
        f"{recommended} is the simplest model whose OOF score is within noise of the best ({best}); "
        f"the extra complexity of {best} is not supported by the OOF rows"
    )


def _holdout(
    cfg: Config, prep: Prepared, candidates: list[Candidate], members: list[int], models: dict[str, Any]
) -> dict[str, Any]:
    """Scores on the labelled test set (a forward holdout when the split is by time), beside the OOF ones;
    for test rows without labels, how many were predicted (`unlabelled_test`)."""
    if any(c.test_pred is None for c in candidates):
        return {}
    if prep.y_test is None:
        return unlabelled_test(prep)
    section = cfg.ensemble
    part = _scored_part(cfg, prep.y_test, [c.test_pred for c in candidates], section)
    best_member = _best(part["scores"], members, cfg.metric)
    for i, c in enumerate(candidates):
        models[c.name]["holdout_score"] = part["scores"][i]
        models[c.name]["holdout_ci"] = part["ci"][i]
        models[c.name]["holdout_gain_over_best_member"] = _gain(part, i, best_member, section.confidence)
    return {"n_holdout": int(len(prep.y_test)), "best_member_holdout": candidates[best_member].name}


def render_markdown(cfg: Config, scores: dict[str, Any]) -> str:
    """A table of members and combiners: OOF (and holdout) score, interval, gain over the best member."""
    pct = int(round(100 * scores["bootstrap"]["confidence"]))
    metric = scores["metric"]
    has_holdout = "n_holdout" in scores
    has_short = all("oof_at_holdout_window" in m for m in scores["models"].values())
    lines = [
        f"# {cfg.experiment.name}: ensemble ({scores['task']}, {metric})",
        "",
        f"Compared on {scores['n_compared']} OOF rows; intervals: {pct}% paired bootstrap, "
        f"{scores['bootstrap']['n_boot']} resamples. Gain = better-is-positive difference to the best "
        f"member ({scores['best_member']}).",
        "",
        "| model | kind | OOF | interval | gain vs best member | gain interval | verdict |"
        + (" holdout |" if has_holdout else "")
        + (" OOF, holdout's label window |" if has_short else ""),
        "|---|---|---:|---|---:|---|---|" + ("---:|" if has_holdout else "") + ("---:|" if has_short else ""),
    ]
    for name, m in scores["models"].items():
        g = m["gain_over_best_member"]
        row = (
            f"| {name} | {m.get('family', m['kind'])} | {m['oof_score']:.5f} | "
            f"[{m['oof_ci'][0]:.5f}, {m['oof_ci'][1]:.5f}] | {g['gain']:+.5f} | [{g['low']:+.5f}, {g['high']:+.5f}] "
            f"| {g['verdict']} |"
        )
        lines.append(
            row
            + (f" {m['holdout_score']:.5f} |" if has_holdout else "")
            + (f" {m['oof_at_holdout_window']:.5f} |" if has_short else "")
        )
    lines += [
        "",
        f"- Best model on OOF: **{scores['best_model']}**; recommended: **{scores['recommended']}** "
        f"({scores['recommendation']}).",
        f"- Selected for `gbpipe predict`: **{scores['selected']}**.",
    ]
    nested = [n for n, m in scores["models"].items() if "in_sample_oof_score" in m]
    if nested:
        lines.append(
            f"- {', '.join(nested)}: fitted on labels, so their OOF scores are nested (refitted per fold); "
            "in-sample scores, optimistic: "
            + ", ".join(f"{n} {scores['models'][n]['in_sample_oof_score']:.5f}" for n in nested)
            + "."
        )
    return "\n".join(lines) + "\n"
