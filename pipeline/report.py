"""Run reports: `report.md` written by every training run."""
from __future__ import annotations

from typing import Any

from .config import Config


def render_markdown(cfg: Config, scores: dict[str, Any], params: dict[str, Any]) -> str:
    """Fold table, OOF (and holdout) score and parameters of one run, as Markdown."""
    lines = [f"# {cfg.experiment.name}: {cfg.data.task}, {scores['metric']}", ""]
    lines.append(f"- OOF {scores['metric']}: **{scores['oof_score']:.5f}** "
                 f"(folds: mean {scores['fold_score_mean']:.5f}, std {scores['fold_score_std']:.5f})")
    if "holdout_score" in scores:
        lines.append(f"- Holdout {scores['metric']}: **{scores['holdout_score']:.5f}** on {scores['n_holdout']} rows")
    lines.append(f"- Splitter: {scores['splitter']}, {scores['n_splits']} folds x {scores['n_repeats']} repeats; "
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
