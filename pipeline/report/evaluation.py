"""Report sections computed from predictions: classification, regression and the holdout."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from pipeline.core.intervals import Interval
from pipeline.core.metrics import GREATER_IS_BETTER, score, to_labels

from . import plots
from .page import Facts, Figure, Section, Table, Text
from .runview import Predictions

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
N_CALIBRATION_BINS = 10
N_RANGE_BINS = 10


def binary_section(oof: Predictions, holdout: Predictions | None, classes: list[Any]) -> Section:
    """ROC and PR curves (OOF, per fold, holdout), calibration, confusion matrix, threshold table."""
    y, p = oof.y, oof.pred
    fold = oof.fold if oof.fold is not None else np.zeros(len(y), dtype=int)
    held = (holdout.y, holdout.pred) if holdout is not None else None
    fold_auc = [
        skm.roc_auc_score(y[fold == k], p[fold == k])
        for k in np.unique(fold[fold >= 0])
        if len(np.unique(y[fold == k])) == 2
    ]
    calibration = calibration_table(y, p)
    facts = {
        "ROC AUC (OOF)": skm.roc_auc_score(y, p),
        "ROC AUC per fold, mean": float(np.mean(fold_auc)),
        "ROC AUC per fold, std": float(np.std(fold_auc)),
        "average precision (OOF)": skm.average_precision_score(y, p),
        "Brier score": float(np.mean((p - y) ** 2)),
        "expected calibration error": expected_calibration_error(calibration),
        "positive class": str(classes[1]),
        "positive rate": float(np.mean(y)),
    }
    section = Section("classification", "Classification", data={"fold_auc": fold_auc})
    section.add(
        Facts(facts, {"positive rate": "{:.2%}"}),
        Figure(
            "roc",
            plots.roc_figure(y, p, fold, held),
            "ROC curve: OOF (bold), each fold (grey)" + (", holdout (dashed)" if held else ""),
        ),
        Figure("precision_recall", plots.pr_figure(y, p, fold, held), "Precision-recall curve"),
        Figure(
            "calibration",
            plots.calibration_figure(*[[r[i] for r in calibration] for i in (2, 3, 1)]),
            "Calibration: observed positive rate per decile of predicted probability",
        ),
        Figure(
            "confusion",
            plots.confusion_figure(confusion(y, to_labels(p), 2), classes),
            "Confusion matrix at threshold 0.5 (what `label_pred` uses)",
        ),
    )
    section.add(
        Table(
            "thresholds",
            ["threshold", "flagged share", "precision", "recall", "false positive rate", "F1", "accuracy", "note"],
            threshold_table(y, p),
            f"Decision thresholds on P({classes[1]}): a row is flagged when its probability is at least the threshold",
            {"threshold": "{:.3f}", "flagged share": "{:.2%}"},
        ),
        Table(
            "calibration",
            ["bin", "rows", "mean predicted", "observed rate"],
            calibration,
            "Calibration bins (deciles of the predicted probability)",
        ),
    )
    return section


def threshold_table(y: np.ndarray, p: np.ndarray) -> list[list[Any]]:
    """Precision, recall, FPR, F1 and accuracy at fixed thresholds and at the F1-optimal one."""
    candidates = np.unique(np.quantile(p, np.linspace(0.01, 0.99, 197)))
    best = candidates[int(np.argmax([_threshold_row(y, p, t)[5] for t in candidates]))]
    rows = [_threshold_row(y, p, t) + ["label_pred" if t == 0.5 else ""] for t in THRESHOLDS]
    return rows + [_threshold_row(y, p, float(best)) + ["F1-optimal"]]


def _threshold_row(y: np.ndarray, p: np.ndarray, threshold: float) -> list[float]:
    flagged = p >= threshold
    tp, fp = float(np.sum(flagged & (y == 1))), float(np.sum(flagged & (y == 0)))
    fn, tn = float(np.sum(~flagged & (y == 1))), float(np.sum(~flagged & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return [
        float(threshold),
        float(flagged.mean()),
        precision,
        recall,
        fp / (fp + tn) if fp + tn else float("nan"),
        f1,
        (tp + tn) / len(y),
    ]


def calibration_table(y: np.ndarray, p: np.ndarray) -> list[list[Any]]:
    """Rows per decile of predicted probability: bin, rows, mean prediction, observed rate."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, N_CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(bins):
        mask = bins == b
        rows.append([int(b) + 1, int(mask.sum()), float(p[mask].mean()), float(y[mask].mean())])
    return rows


def expected_calibration_error(rows: list[list[Any]]) -> float:
    total = sum(r[1] for r in rows)
    return float(sum(r[1] * abs(r[2] - r[3]) for r in rows) / total) if total else float("nan")


def confusion(y: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    return skm.confusion_matrix(y, labels, labels=np.arange(n_classes))


def multiclass_section(oof: Predictions, classes: list[Any]) -> Section:
    """Per-class precision, recall, F1 and one-vs-rest AUC; confusion matrix; one-vs-rest ROC."""
    y, proba = oof.y, oof.pred
    labels = to_labels(proba)
    names = [str(c) for c in classes]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, labels, labels=np.arange(len(classes)), zero_division=0
    )
    rows = []
    for k, name in enumerate(names):
        auc = skm.roc_auc_score(y == k, proba[:, k]) if 0 < support[k] < len(y) else float("nan")
        rows.append(
            [
                name,
                int(support[k]),
                float(support[k] / len(y)),
                float(precision[k]),
                float(recall[k]),
                float(f1[k]),
                float(auc),
                float(proba[:, k].mean()),
            ]
        )
    matrix = confusion(y, labels, len(classes))
    section = Section("classification", "Classification (multiclass)")
    section.add(
        Facts(
            {
                "accuracy": float(np.mean(labels == y)),
                "macro F1": float(np.mean(f1)),
                "log loss": score("logloss", y, proba),
                "macro one-vs-rest ROC AUC": float(np.nanmean([r[6] for r in rows])),
            }
        ),
        Table(
            "per_class",
            [
                "class",
                "rows",
                "share",
                "precision",
                "recall",
                "F1",
                "ROC AUC (one-vs-rest)",
                "mean predicted probability",
            ],
            rows,
            "Per-class scores (OOF)",
            {"share": "{:.2%}"},
        ),
        Figure("roc_ovr", plots.multiclass_roc_figure(y, proba, names), "One-vs-rest ROC curve per class"),
        Figure("confusion", plots.confusion_figure(matrix, names), "Confusion matrix (arg-max class)"),
        Table(
            "confusion",
            ["actual \\ predicted", *names],
            [[names[i], *map(int, matrix[i])] for i in range(len(names))],
            "Confusion matrix (OOF rows)",
        ),
    )
    return section


def regression_section(oof: Predictions) -> Section:
    """Predicted vs actual, residuals and error by target range."""
    y, pred = oof.y, oof.pred
    residual = y - pred
    ranges = range_table(y, pred)
    section = Section("regression", "Regression")
    section.add(
        Facts(
            {
                "RMSE": score("rmse", y, pred),
                "MAE": score("mae", y, pred),
                "R²": score("r2", y, pred),
                "median absolute error": float(np.median(np.abs(residual))),
                "mean residual (actual - predicted)": float(residual.mean()),
            }
        ),
        Figure("pred_vs_actual", plots.pred_actual_figure(y, pred), "Predicted vs actual (OOF)"),
        Figure("residuals", plots.residual_figure(y, pred), "Residuals against the prediction"),
        Figure(
            "error_by_range",
            plots.error_by_range_figure([r[0] for r in ranges], [r[5] for r in ranges], [r[4] for r in ranges]),
            "Error by decile of the actual target",
        ),
        Table(
            "error_by_range",
            ["target range", "rows", "mean actual", "mean predicted", "mean residual", "MAE", "RMSE"],
            ranges,
            "Error by decile of the target",
        ),
    )
    return section


def range_table(y: np.ndarray, pred: np.ndarray) -> list[list[Any]]:
    edges = np.unique(np.quantile(y, np.linspace(0, 1, N_RANGE_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(bins):
        mask = bins == b
        err = y[mask] - pred[mask]
        label = f"{_short(edges[b])} – {_short(edges[min(b + 1, len(edges) - 1)])}"
        rows.append(
            [
                label,
                int(mask.sum()),
                float(y[mask].mean()),
                float(pred[mask].mean()),
                float(err.mean()),
                float(np.abs(err).mean()),
                float(np.sqrt(np.mean(err**2))),
            ]
        )
    return rows


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def holdout_section(
    scores: dict[str, Any],
    holdout: Predictions,
    test_folds: dict[str, np.ndarray],
    oof_interval: Interval,
    holdout_interval: Interval,
    how: str,
    forward: bool = False,
) -> Section:
    """The holdout (test set) beside OOF: every metric, intervals, and each fold model alone."""
    metric = scores["metric"]
    oof_metrics, held_metrics = scores.get("oof_metrics", {}), scores.get("holdout_metrics", {})
    rows = [
        [m, oof_metrics.get(m), held_metrics.get(m), _diff(held_metrics.get(m), oof_metrics.get(m))]
        for m in held_metrics
    ]
    fold_rows = [[name, score(metric, holdout.y, pred)] for name, pred in test_folds.items()]
    labels = ["OOF", "holdout (fold-model mean)", *[r[0] for r in fold_rows]]
    values = [oof_interval.score, holdout_interval.score, *[r[1] for r in fold_rows]]
    nan = float("nan")
    section = Section("holdout", "Forward holdout beside OOF" if forward else "Holdout beside OOF")
    section.add(
        Text(how),
        Facts(
            {
                f"OOF {metric}": oof_interval.score,
                "OOF 95% interval": _interval_text(oof_interval),
                f"holdout {metric}": holdout_interval.score,
                "holdout 95% interval": _interval_text(holdout_interval),
                "holdout rows": len(holdout),
                "holdout − OOF": holdout_interval.score - oof_interval.score,
            }
        ),
        Figure(
            "holdout_vs_oof",
            plots.interval_figure(
                labels,
                values,
                [oof_interval.low, holdout_interval.low] + [nan] * len(fold_rows),
                [oof_interval.high, holdout_interval.high] + [nan] * len(fold_rows),
                f"{metric}: OOF and holdout ({'higher' if GREATER_IS_BETTER[metric] else 'lower'} is better)",
                metric,
                highlight=1,
            ),
            "OOF and holdout scores with 95% bootstrap intervals; each fold model alone on the holdout",
        ),
        Table("metrics", ["metric", "OOF", "holdout", "holdout − OOF"], rows, "Every metric, OOF and holdout"),
        Table(
            "fold_models",
            ["fold model", f"holdout {metric}"],
            fold_rows,
            "Each fold model alone on the holdout (the run predicts with their mean)",
        )
        if fold_rows
        else None,
    )
    if holdout.pred.ndim == 1 and scores.get("task") == "regression":
        section.add(
            Figure(
                "holdout_pred_vs_actual",
                plots.pred_actual_figure(holdout.y, holdout.pred, "Predicted vs actual (holdout)"),
                "Predicted vs actual on the holdout",
            )
        )
    return section


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _interval_text(interval: Interval) -> str:
    return f"{interval.low:.5g} – {interval.high:.5g}"
