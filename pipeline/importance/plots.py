"""Bar charts with error bars for the importance stage (PNG bytes, matplotlib's Agg backend)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def importance_plots(table: pd.DataFrame, metric: str, top: int) -> dict[str, bytes]:
    """importance/<kind>.png for every kind present in the table."""
    agg = table[table["fold"] == -1]
    plots = {}
    titles = {
        "permutation": (f"Permutation importance: drop in {metric} (mean, CI over folds x repeats)", "ci"),
        "permutation_group": (f"Permutation importance of feature groups: drop in {metric}", "ci"),
        "gain": ("Gain importance (mean over folds, +- std)", "std"),
        "split": ("Split importance (mean over folds, +- std)", "std"),
        "null_score": ("Null importance score: log(real gain / (1 + 75th pct of null gain))", None),
    }
    for kind, (title, error) in titles.items():
        part = agg[agg["kind"] == kind].sort_values("value", ascending=False).head(top)
        if len(part):
            plots[f"importance/{kind}.png"] = _bar_chart(part, title, error)
    return plots


def _bar_chart(part: pd.DataFrame, title: str, error: str | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    part = part.iloc[::-1]  # largest at the top
    values = part["value"].to_numpy(dtype="float64")
    xerr = None
    if error == "ci":
        xerr = np.vstack([values - part["ci_low"].to_numpy(), part["ci_high"].to_numpy() - values])
    elif error == "std":
        xerr = part["std"].fillna(0.0).to_numpy(dtype="float64")
    colors = None
    if "p_value" in part and part["p_value"].notna().any():
        colors = np.where(part["p_value"].to_numpy() <= 0.05, "tab:blue", "tab:gray")
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(part) + 1.5))
    ax.barh(part["feature"].astype(str), values, xerr=xerr, color=colors, capsize=2)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
