"""Scores of an experiment's predictions beyond the pooled OOF score: the holdout's, each training
cutoff's, and the like-for-like score over a holdout's short label window. Training and ensembles
write them the same way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.core.metrics import all_metrics, score
from pipeline.data.prepare import Prepared


def cutoff_dates(cfg: Config, prep: Prepared) -> np.ndarray:
    """Each training row's cutoff as naive datetime64 (local time of a zoned cutoff column)."""
    column = cfg.features.cutoff_column
    return pd.to_datetime(prep.tables.train[column]).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def test_entries(cfg: Config, prep: Prepared, test_pred: np.ndarray | None) -> dict[str, Any]:
    """The holdout's scores when the test rows have labels, else `unlabelled_test`."""
    if test_pred is None:
        return {}
    if prep.y_test is None:
        return unlabelled_test(prep)
    window = (prep.tables.summary or {}).get("test_label_window")
    entries = {
        "holdout_score": score(cfg.metric, prep.y_test, test_pred),
        "holdout_metrics": all_metrics(cfg.data.task, prep.y_test, test_pred),
        "n_holdout": int(len(prep.y_test)),
    }
    if window is not None:
        entries["holdout_label_window"] = window
    return entries


def unlabelled_test(prep: Prepared) -> dict[str, Any]:
    """How many test rows were predicted without labels, and the scoring cutoff when they are a
    features experiment's rows after the data's end."""
    entries: dict[str, Any] = {"n_test": int(len(prep.X_test))}
    summary = prep.tables.summary or {}
    if not summary.get("test_label_window", {}).get("labels_known", True):
        entries["scoring_cutoff"] = summary["test_cutoff"]
    return entries


def scores_by_cutoff(
    cfg: Config, prep: Prepared, y: np.ndarray, oof_pred: np.ndarray, validated: np.ndarray
) -> dict[str, float]:
    """The OOF score of each training cutoff of a features experiment: pooled OOF mixes cutoffs with
    short and long histories, so this is what to hold a forward holdout's score against."""
    if cfg.features is None:
        return {}
    cutoffs = np.datetime_as_string(cutoff_dates(cfg, prep), unit="D")
    out = {}
    for cutoff in sorted(set(cutoffs[validated])):
        rows = validated & (cutoffs == cutoff)
        try:
            out[cutoff] = score(cfg.metric, y[rows], oof_pred[rows])
        except ValueError:  # one class only at this cutoff: AUC undefined
            continue
    return out


def holdout_window_scores(cfg: Config, prep: Prepared, oof_pred: np.ndarray, validated: np.ndarray) -> dict[str, Any]:
    """The OOF predictions scored against the training rows' labels over the first days of their windows, as
    many as the data leaves the holdout: the like-for-like counterpart of a holdout cut short."""
    labels = prep.tables.holdout_window_labels
    if labels is None:
        return {}
    y = labels.to_numpy()
    if len(y) != len(oof_pred):
        raise RuntimeError(f"{len(y)} short-window labels for {len(oof_pred)} training rows: they must be aligned")
    by_cutoff = scores_by_cutoff(cfg, prep, y, oof_pred, validated)
    return {
        "oof_at_holdout_window": {
            "days": prep.tables.summary["test_label_window"]["training_label_days"],
            "oof_score": score(cfg.metric, y[validated], oof_pred[validated]),
            "mean_by_cutoff": float(np.mean(list(by_cutoff.values()))),
            "by_cutoff": by_cutoff,
        }
    }
