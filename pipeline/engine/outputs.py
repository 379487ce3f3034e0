"""What a K-fold run leaves on disk, whichever stage ran it: fold model files (LightGBM text up to the
best iteration) and prediction tables (id, one column per class or a value, and the decoded label)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from pipeline.config import ROW_ID
from pipeline.core.metrics import to_labels

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.data.prepare import Prepared


def model_name(repeat: int, fold: int) -> str:
    return f"models/fold_{fold}.txt" if repeat == 0 else f"models/fold_{fold}_r{repeat}.txt"


# How many threads trained a model is not part of the model: the trees are the same for any count
# (deterministic=True, force_col_wise=True), so the saved text leaves it out and is byte-identical.
_THREADS_LINE = re.compile(r"^\[num_threads: \d+\]\n", re.MULTILINE)


def model_text(booster: lgb.Booster, best_iteration: int) -> str:
    """The fold model as LightGBM text up to its best iteration, without the thread count it ran with."""
    return _THREADS_LINE.sub("", booster.model_to_string(num_iteration=best_iteration))


def prediction_frame(pred: np.ndarray, prep: Prepared, ids: pd.Series) -> pd.DataFrame:
    """id, `pred` (or `pred_<class>` per class) and, for classifiers, the decoded `label_pred`."""
    frame = pd.DataFrame({prep.id_name: ids.to_numpy()})
    if pred.ndim == 2:
        for k, cls in enumerate(prep.labels.classes):
            frame[f"pred_{cls}"] = pred[:, k]
    else:
        frame["pred"] = pred
    if prep.labels.task != "regression":
        valid = ~np.isnan(pred if pred.ndim == 1 else pred[:, 0])
        labels = np.full(len(pred), None, dtype=object)
        labels[valid] = prep.labels.decode(to_labels(pred[valid]))
        frame["label_pred"] = labels
    return frame


def schema_document(cfg: Config, prep: Prepared) -> dict[str, Any]:
    """schema.json's common part: what `gbpipe predict` needs to turn a table into X and predictions into
    labels. Training adds its parameters and the data's fingerprint, an ensemble its kind."""
    return {
        "task": cfg.data.task,
        "metric": cfg.metric,
        "target": cfg.data.target,
        "id": prep.id_name,
        "id_source": "position" if cfg.data.id is None else "column",
        "features": prep.schema.to_dict(),
        "model_names": prep.schema.model_names,
        "labels": prep.labels.to_dict(),
    }


def id_is_position(doc: dict[str, Any]) -> bool:
    """Whether a run numbers rows by position (no data.id) rather than reading an id column; runs written
    before schema.json said so used positions exactly when the id was named row_id."""
    return doc.get("id_source", "position" if doc["id"] == ROW_ID else "column") == "position"
