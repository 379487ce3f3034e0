"""The short `report.md` every training run writes: scores, folds and parameters as Markdown, without the
report stage's plots (so training and tuning never load matplotlib)."""

from __future__ import annotations

from typing import Any

from pipeline.config import Config


def render_markdown(cfg: Config, scores: dict[str, Any], params: dict[str, Any]) -> str:
    """Fold table, OOF (and holdout) score and parameters of one run, as Markdown."""
    lines = [f"# {cfg.experiment.name}: {cfg.data.task}, {scores['metric']}", ""]
    lines.append(
        f"- OOF {scores['metric']}: **{scores['oof_score']:.5f}** "
        f"(folds: mean {scores['fold_score_mean']:.5f}, std {scores['fold_score_std']:.5f})"
    )
    if "holdout_score" in scores:
        lines.append(f"- Holdout {scores['metric']}: **{scores['holdout_score']:.5f}** on {scores['n_holdout']} rows")
        window = scores.get("holdout_label_window")
        if window is not None and not window["complete"]:
            lines.append(
                f"  (its label window is {window['coverage']:.0%} covered: the data ends at {window['data_ends']})"
            )
        short = scores.get("oof_at_holdout_window")
        if short is not None:
            lines.append(
                f"- OOF {scores['metric']} on labels over the first {short['days']} days (as the holdout's): "
                f"**{short['oof_score']:.5f}** (per cutoff mean {short['mean_by_cutoff']:.5f})"
            )
    if "scoring_cutoff" in scores:
        lines.append(
            f"- Scoring cutoff {scores['scoring_cutoff']}: {scores['n_test']} test rows predicted, labels unknown"
        )
    if "backtest" in scores:
        bt = scores["backtest"]
        lines.append(
            f"- Forward backtest ({len(bt['cutoffs'])} cutoffs): OOF {bt['mean_oof_score']:.5f}, forward "
            f"{bt['mean_forward_score']:.5f}; OOF looks better by {bt['mean_gap']:+.5f}"
        )
    gap = f", gap {scores['time_gap']}" if scores.get("time_gap") else ""
    lines.append(
        f"- Splitter: {scores['splitter']}{gap}, {scores['n_splits']} folds x {scores['n_repeats']} repeats; "
        f"early stopping on: {scores['early_stopping']}"
    )
    lines.append(f"- Rows: {scores['n_rows']} ({scores['n_validated']} validated), features: {scores['n_features']}")
    lines += [
        "",
        "| repeat | fold | train rows | valid rows | best iteration | score | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in scores["folds"]:
        lines.append(
            f"| {f['repeat']} | {f['fold']} | {f['n_train']} | {f['n_valid']} | {f['best_iteration']} "
            f"| {f['score']:.5f} | {f['seconds']:.2f} |"
        )
    lines += ["", "## OOF metrics", ""] + [f"- {k}: {v:.5f}" for k, v in scores["oof_metrics"].items()]
    lines += ["", "## Parameters", ""] + [f"- `{k}` = `{v}`" for k, v in sorted(params.items())]
    return "\n".join(lines) + "\n"
