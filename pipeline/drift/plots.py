"""The drift stage's charts (PNG bytes, matplotlib's Agg backend): the most drifting features by PSI against
the [drift] bands, what the adversarial classifier separates by, and drift over the cutoffs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from pipeline.config.sections import DriftSection

from .cutoffs import TRAINING

TOP = 20  # features per bar chart

PSI_PLOT = "drift/plots/psi.png"
ADVERSARIAL_PLOT = "drift/plots/adversarial.png"
CUTOFFS_PLOT = "drift/plots/cutoffs.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    return buffer.getvalue()


def _bands(ax, settings: DriftSection, vertical: bool) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(settings.psi_moderate, color="tab:orange", linestyle="--", linewidth=1, label="moderate")
    line(settings.psi_major, color="tab:red", linestyle="--", linewidth=1, label="major")


def psi_plot(features: pd.DataFrame, settings: DriftSection) -> bytes:
    """The top features by PSI, coloured by their flag, with the bands."""
    part = features.sort_values("psi", ascending=False, kind="stable").head(TOP).iloc[::-1]
    colors = part["flag"].map({"none": "tab:gray", "moderate": "tab:orange", "major": "tab:red"}).tolist()
    fig, ax = _pyplot().subplots(figsize=(8, 0.3 * len(part) + 1.5))
    ax.barh(part["feature"].astype(str), part["psi"].to_numpy(dtype="float64"), color=colors)
    _bands(ax, settings, vertical=True)
    ax.set_xlabel("population stability index (new rows against the training rows' bins)")
    ax.set_title("Most drifting features", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def adversarial_plot(features: pd.DataFrame, auc: float) -> bytes:
    """What the train-vs-new classifier separates by: gain share and permutation AUC drop, side by side."""
    part = features.sort_values("adversarial_gain_share", ascending=False, kind="stable").head(TOP).iloc[::-1]
    plt = _pyplot()
    fig, (gain, perm) = plt.subplots(1, 2, sharey=True, figsize=(10, 0.3 * len(part) + 1.5))
    names = part["feature"].astype(str)
    gain.barh(names, part["adversarial_gain_share"].to_numpy(dtype="float64"), color="tab:blue")
    gain.set_xlabel("share of the classifier's gain")
    perm.barh(names, part["adversarial_permutation"].to_numpy(dtype="float64"), color="tab:purple")
    perm.axvline(0.0, color="black", linewidth=0.8)
    perm.set_xlabel("AUC lost when shuffled")
    fig.suptitle(f"Adversarial validation: training rows against new rows, OOF AUC {auc:.3f}", fontsize=9)
    return _png(fig)


def cutoffs_plot(cutoffs: pd.DataFrame, settings: DriftSection) -> bytes:
    """Mean and largest PSI per cutoff, against earlier cutoffs (training) or all training rows (test)."""
    fig, ax = _pyplot().subplots(figsize=(9, 4))
    x = np.arange(len(cutoffs))
    ax.plot(x, cutoffs["max_psi"].to_numpy(dtype="float64"), marker="o", label="largest PSI of a feature")
    ax.plot(x, cutoffs["mean_psi"].to_numpy(dtype="float64"), marker=".", label="mean PSI over features")
    test = np.flatnonzero((cutoffs["reference"] == TRAINING).to_numpy())
    if len(test):
        ax.axvspan(test[0] - 0.5, len(cutoffs) - 0.5, color="tab:gray", alpha=0.15, label="test cutoff")
    _bands(ax, settings, vertical=False)
    ax.set_xticks(x, cutoffs["cutoff"].astype(str), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("population stability index")
    ax.set_title("Drift over time: each cutoff against the earlier ones (test: against all training rows)", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)
