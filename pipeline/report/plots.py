"""Report figures as PNG bytes, drawn with matplotlib's Agg canvas.

No pyplot: figures are built on `matplotlib.figure.Figure` with an Agg canvas, so drawing a
report never switches the backend of a notebook or GUI session that imported gbpipe.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

INK = "#1f2933"
MUTED = "#9aa5b1"
ACCENT = "#2563eb"
SECOND = "#ea580c"
GOOD = "#16a34a"
PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")
DPI = 144
MAX_POINTS = 6000  # scatter plots subsample beyond this many rows


def new_figure(width: float = 5.6, height: float = 3.9) -> tuple[Figure, object]:
    """A figure with one axes in the report's style."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    style_axes(ax)
    return fig, ax


def style_axes(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    ax.xaxis.label.set_size(9)
    ax.yaxis.label.set_size(9)
    ax.title.set_size(10)
    ax.grid(True, color="#e4e7eb", linewidth=0.6)
    ax.set_axisbelow(True)


def png(fig: Figure) -> bytes:
    """PNG bytes of a figure; no timestamp metadata, so the same figure gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _legend(ax) -> None:
    ax.legend(fontsize=7.5, frameon=False, loc="best")


def roc_figure(y: np.ndarray, pred: np.ndarray, fold: np.ndarray, holdout: tuple | None = None) -> bytes:
    """ROC of the OOF predictions (bold), of each fold (thin) and of the holdout (dashed)."""
    fig, ax = new_figure(4.6, 4.2)
    for k in np.unique(fold[fold >= 0]):
        mask = fold == k
        if len(np.unique(y[mask])) == 2:
            fpr, tpr, _ = skm.roc_curve(y[mask], pred[mask])
            ax.plot(fpr, tpr, color=MUTED, linewidth=0.8, alpha=0.8, label="folds" if k == 0 else None)
    fpr, tpr, _ = skm.roc_curve(y, pred)
    ax.plot(fpr, tpr, color=ACCENT, linewidth=2, label=f"OOF (AUC {skm.auc(fpr, tpr):.4f})")
    if holdout is not None:
        fpr, tpr, _ = skm.roc_curve(*holdout)
        ax.plot(fpr, tpr, color=SECOND, linewidth=1.6, linestyle="--", label=f"holdout (AUC {skm.auc(fpr, tpr):.4f})")
    ax.plot([0, 1], [0, 1], color=MUTED, linewidth=0.8, linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
    _legend(ax)
    return png(fig)


def pr_figure(y: np.ndarray, pred: np.ndarray, fold: np.ndarray, holdout: tuple | None = None) -> bytes:
    """Precision-recall of the OOF predictions, each fold and the holdout; the line is the base rate."""
    fig, ax = new_figure(4.6, 4.2)
    for k in np.unique(fold[fold >= 0]):
        mask = fold == k
        if y[mask].any():
            precision, recall, _ = skm.precision_recall_curve(y[mask], pred[mask])
            ax.plot(recall, precision, color=MUTED, linewidth=0.8, alpha=0.8, label="folds" if k == 0 else None)
    precision, recall, _ = skm.precision_recall_curve(y, pred)
    ap = skm.average_precision_score(y, pred)
    ax.plot(recall, precision, color=ACCENT, linewidth=2, label=f"OOF (AP {ap:.4f})")
    if holdout is not None:
        precision, recall, _ = skm.precision_recall_curve(*holdout)
        ax.plot(
            recall,
            precision,
            color=SECOND,
            linewidth=1.6,
            linestyle="--",
            label=f"holdout (AP {skm.average_precision_score(*holdout):.4f})",
        )
    ax.axhline(float(np.mean(y)), color=MUTED, linewidth=0.8, linestyle=":", label=f"base rate {np.mean(y):.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    _legend(ax)
    return png(fig)


def calibration_figure(mean_pred: Sequence[float], observed: Sequence[float], counts: Sequence[int]) -> bytes:
    """Reliability diagram: observed positive rate per bin of predicted probability."""
    fig, ax = new_figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], color=MUTED, linewidth=0.8, linestyle=":", label="perfectly calibrated")
    sizes = 12 + 60 * np.asarray(counts) / max(max(counts), 1)
    ax.plot(mean_pred, observed, color=ACCENT, linewidth=1.4)
    ax.scatter(mean_pred, observed, s=sizes, color=ACCENT, zorder=3, label="OOF, by bin of predicted probability")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        title="Calibration",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    _legend(ax)
    return png(fig)


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str = "Confusion matrix (OOF)") -> bytes:
    """Confusion matrix as a heat map; cells show counts and the share of their true class."""
    size = 2.6 + 0.45 * len(labels)
    fig, ax = new_figure(size + 0.8, size)
    ax.grid(False)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:,}\n{share[i, j]:.1%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.55 else INK,
            )
    ticks = range(len(labels))
    ax.set_xticks(ticks, [str(v) for v in labels], rotation=30 if len(labels) > 3 else 0)
    ax.set_yticks(ticks, [str(v) for v in labels])
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    return png(fig)


def multiclass_roc_figure(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> bytes:
    """One-vs-rest ROC curve of each class."""
    fig, ax = new_figure(4.6, 4.2)
    for k, name in enumerate(classes):
        if 0 < (y == k).sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(y == k, proba[:, k])
            ax.plot(
                fpr, tpr, color=PALETTE[k % len(PALETTE)], linewidth=1.5, label=f"{name} (AUC {skm.auc(fpr, tpr):.4f})"
            )
    ax.plot([0, 1], [0, 1], color=MUTED, linewidth=0.8, linestyle=":")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="One-vs-rest ROC (OOF)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    _legend(ax)
    return png(fig)


def _subsample(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False))


def pred_actual_figure(y: np.ndarray, pred: np.ndarray, title: str = "Predicted vs actual (OOF)") -> bytes:
    """Scatter of predictions against targets, with the identity line."""
    fig, ax = new_figure(4.6, 4.2)
    keep = _subsample(len(y))
    ax.scatter(y[keep], pred[keep], s=4, alpha=0.35, color=ACCENT, linewidths=0)
    low, high = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([low, high], [low, high], color=SECOND, linewidth=1, linestyle="--", label="prediction = actual")
    ax.set(xlabel="actual", ylabel="predicted", title=title)
    _legend(ax)
    return png(fig)


def residual_figure(y: np.ndarray, pred: np.ndarray) -> bytes:
    """Residuals (actual - predicted) against the prediction, with their histogram beside."""
    fig = Figure(figsize=(6.4, 3.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(1, 2, width_ratios=(3, 1), sharey=True)
    for a in (ax, hist):
        style_axes(a)
    residual = y - pred
    keep = _subsample(len(y))
    ax.scatter(pred[keep], residual[keep], s=4, alpha=0.35, color=ACCENT, linewidths=0)
    ax.axhline(0, color=SECOND, linewidth=1, linestyle="--")
    ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals (OOF)")
    hist.hist(residual, bins=50, orientation="horizontal", color=ACCENT, alpha=0.7)
    hist.set(xlabel="rows")
    return png(fig)


def bars_figure(
    labels: Sequence[str],
    values: Sequence[float],
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    title: str = "",
    xlabel: str = "",
) -> bytes:
    """Horizontal bars, largest on top, with optional error bars from `low` to `high`."""
    n = len(labels)
    fig, ax = new_figure(5.6, 1.2 + 0.24 * n)
    pos = np.arange(n)[::-1]
    values = np.asarray(values, dtype=float)
    xerr = None
    if low is not None and high is not None:
        xerr = np.vstack([values - np.asarray(low, float), np.asarray(high, float) - values]).clip(min=0)
    ax.barh(pos, values, color=ACCENT, alpha=0.85, xerr=xerr, error_kw={"ecolor": INK, "elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(pos, [str(v)[:40] for v in labels], fontsize=7.5)
    ax.axvline(0, color=MUTED, linewidth=0.8)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="y", visible=False)
    return png(fig)


def interval_figure(
    labels: Sequence[str],
    scores: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    title: str,
    xlabel: str,
    highlight: int | None = None,
) -> bytes:
    """Forest plot: one score with its interval per row, `highlight` drawn in the accent colour."""
    n = len(labels)
    fig, ax = new_figure(5.6, 1.3 + 0.32 * n)
    pos = np.arange(n)[::-1]
    for i in range(n):
        color = ACCENT if i == highlight else INK
        if np.isfinite(low[i]) and np.isfinite(high[i]):
            ax.plot([low[i], high[i]], [pos[i], pos[i]], color=color, linewidth=1.6)
        ax.plot(scores[i], pos[i], "o", color=color, markersize=5)
    ax.set_yticks(pos, [str(v)[:40] for v in labels], fontsize=8)
    ax.set(title=title, xlabel=xlabel)
    ax.margins(y=0.15)
    ax.grid(axis="y", visible=False)
    return png(fig)


def fold_scores_figure(scores: Sequence[float], oof: float, interval: tuple[float, float] | None, metric: str) -> bytes:
    """Each fold's score as a dot, the OOF score as a line and its bootstrap interval as a band."""
    fig, ax = new_figure(5.6, 2.4)
    if interval is not None and np.all(np.isfinite(interval)):
        ax.axvspan(*interval, color=ACCENT, alpha=0.12, label="OOF 95% bootstrap interval")
    ax.axvline(oof, color=ACCENT, linewidth=1.6, label=f"OOF {oof:.5g}")
    jitter = np.linspace(-0.15, 0.15, len(scores)) if len(scores) > 1 else np.zeros(1)
    ax.scatter(scores, jitter, color=SECOND, s=28, zorder=3, label="folds")
    ax.set_yticks([])
    ax.set_ylim(-0.6, 0.6)
    ax.set(xlabel=metric, title="Fold scores")
    _legend(ax)
    return png(fig)


def histogram_figure(values: np.ndarray, title: str, xlabel: str) -> bytes:
    fig, ax = new_figure(4.6, 3.2)
    ax.hist(values[np.isfinite(values)], bins=50, color=ACCENT, alpha=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel="rows")
    return png(fig)


def error_by_range_figure(labels: Sequence[str], mae: Sequence[float], bias: Sequence[float]) -> bytes:
    """Mean absolute error and mean residual per target range."""
    fig, ax = new_figure(5.6, 3.4)
    pos = np.arange(len(labels))
    ax.bar(pos - 0.2, mae, width=0.4, color=ACCENT, label="mean absolute error")
    ax.bar(pos + 0.2, bias, width=0.4, color=SECOND, label="mean residual (actual - predicted)")
    ax.axhline(0, color=MUTED, linewidth=0.8)
    ax.set_xticks(pos, labels, rotation=30, ha="right", fontsize=7)
    ax.set(title="Error by target range (OOF)", xlabel="target range (deciles)")
    _legend(ax)
    return png(fig)


def history_figure(values: Sequence[float], greater_is_better: bool, metric: str) -> bytes:
    """Optimisation history: each trial's value and the best so far."""
    fig, ax = new_figure(5.6, 3.4)
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    ax.scatter(np.flatnonzero(ok), values[ok], s=12, color=MUTED, label="trial")
    filled = np.where(ok, values, -np.inf if greater_is_better else np.inf)
    best = np.maximum.accumulate(filled) if greater_is_better else np.minimum.accumulate(filled)
    ax.plot(
        np.arange(len(values)),
        np.where(np.isfinite(best), best, np.nan),
        color=ACCENT,
        linewidth=1.6,
        label="best so far",
    )
    ax.set(xlabel="trial", ylabel=metric, title="Optimisation history")
    _legend(ax)
    return png(fig)


def cutoffs_figure(
    cutoffs: Sequence[str], rows: Sequence[int], rates: Sequence[float | None], rate_label: str, test_cutoff: str | None
) -> bytes:
    """Rows per cutoff as bars (the test cutoff in the second colour), the positive rate as a line."""
    fig, ax = new_figure(5.6, 3.4)
    pos = np.arange(len(cutoffs))
    ax.bar(pos, rows, color=[SECOND if c == test_cutoff else ACCENT for c in cutoffs], alpha=0.8)
    ax.set_xticks(pos, cutoffs, rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="rows", title=f"Rows and {rate_label} per cutoff")
    if any(r is not None for r in rates):
        twin = ax.twinx()
        twin.plot(pos, [np.nan if r is None else r for r in rates], color=INK, marker="o", markersize=3, linewidth=1.2)
        twin.set_ylabel(rate_label, fontsize=9)
        twin.tick_params(labelsize=8)
        twin.spines["top"].set_visible(False)
    return png(fig)
