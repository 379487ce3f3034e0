"""A read-only view of a finished run for reports and comparisons.

Every file is read through `RunReader` (sha256 checked); files a stage did not write read as
None, so each report section appears exactly when its stage ran.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config, validate_config
from pipeline.core.errors import ArtifactError, GbpipeError
from pipeline.core.run_folder import RunReader


@dataclass(frozen=True)
class Predictions:
    """Scored predictions of one row set: encoded target, predictions and (for OOF) the fold."""

    ids: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    fold: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.y)


class RunView:
    """The artifacts of one published run, each read (and verified) at most once."""

    def __init__(self, run_dir: Path):
        self.reader = RunReader(Path(run_dir), allow_version_mismatch=True)
        self.dir = self.reader.dir
        self.manifest = self.reader.manifest

    def json(self, name: str) -> Any | None:
        return self.reader.read_json(name) if self.reader.has(name) else None

    def parquet(self, name: str) -> pd.DataFrame | None:
        return self.reader.read_parquet(name) if self.reader.has(name) else None

    def text(self, name: str) -> str | None:
        return self.reader.read_bytes(name).decode() if self.reader.has(name) else None

    def files(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.reader.files if n.startswith(prefix))

    @cached_property
    def scores(self) -> dict[str, Any] | None:
        return self.json("scores.json")

    @property
    def is_ensemble(self) -> bool:
        return self.manifest.get("kind") == "ensemble" or (
            not self.reader.has("scores.json") and self.reader.has("ensemble/scores.json")
        )

    @cached_property
    def summary(self) -> dict[str, Any] | None:
        """scores.json of a training run; for an ensemble run, the same keys for its selected model."""
        if self.scores is not None:
            return self.scores
        doc = self.json("ensemble/scores.json")
        if not isinstance(doc, dict) or self.oof is None:
            return None
        return ensemble_summary(
            doc, self.oof, self.config, len(((self.schema or {}).get("features") or {}).get("columns", []))
        )

    @cached_property
    def schema(self) -> dict[str, Any] | None:
        return self.json("schema.json")

    @cached_property
    def config_dict(self) -> dict[str, Any] | None:
        text = self.text("config.toml")
        return tomllib.loads(text) if text is not None else None

    @cached_property
    def config(self) -> Config | None:
        """The run's validated config, or None when it no longer validates (e.g. an older format)."""
        if self.config_dict is None:
            return None
        try:
            return validate_config(self.config_dict, source=str(self.dir / "config.toml"))
        except GbpipeError:
            return None

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.dir.name))

    @property
    def experiment(self) -> str:
        return str(self.manifest.get("experiment") or (self.scores or {}).get("experiment") or self.dir.parent.name)

    @property
    def task(self) -> str:
        return (self.scores or {}).get("task") or (self.schema or {}).get("task", "")

    @property
    def metric(self) -> str:
        return (self.scores or {}).get("metric") or (self.schema or {}).get("metric", "")

    @property
    def classes(self) -> list[Any]:
        return list(((self.schema or {}).get("labels") or {}).get("classes", []))

    @property
    def stages(self) -> list[str]:
        return sorted({str(e.get("stage", "train")) for e in self.reader.files.values()})

    @cached_property
    def oof(self) -> Predictions | None:
        """The run's OOF predictions (training's oof.parquet, else an ensemble's), validated rows only."""
        for name in ("oof.parquet", "ensemble/oof.parquet"):
            frame = self.parquet(name)
            if frame is not None and "target" in frame.columns:
                return self._predictions(frame, name)
        return None

    @cached_property
    def holdout(self) -> Predictions | None:
        """Predictions of the labelled test set, when the experiment has one."""
        for name in ("test_pred.parquet", "ensemble/test_pred.parquet"):
            frame = self.parquet(name)
            if frame is not None and "target" in frame.columns:
                return self._predictions(frame, name)
        return None

    def _predictions(self, frame: pd.DataFrame, source: str) -> Predictions:
        pred = prediction_matrix(frame, self.task, self.classes, source)
        valid = ~np.isnan(pred if pred.ndim == 1 else pred[:, 0])
        y = encode_target(frame["target"], self.task, self.classes, source)
        fold = frame["fold"].to_numpy(dtype="int64") if "fold" in frame.columns else None
        return Predictions(
            ids=frame.iloc[:, 0].to_numpy()[valid],
            y=y[valid],
            pred=pred[valid],
            fold=None if fold is None else fold[valid],
            source=source,
        )


def prediction_matrix(frame: pd.DataFrame, task: str, classes: list[Any], source: str) -> np.ndarray:
    """`pred` (binary, regression) or the `pred_<class>` columns in label order (multiclass)."""
    if task == "multiclass":
        columns = [f"pred_{c}" for c in classes]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ArtifactError(f"{source} lacks the class columns {missing}; it does not match schema.json")
        return frame[columns].to_numpy(dtype="float64")
    if "pred" not in frame.columns:
        raise ArtifactError(f"{source} has no `pred` column; columns are {list(frame.columns)}")
    return frame["pred"].to_numpy(dtype="float64")


def encode_target(target: pd.Series, task: str, classes: list[Any], source: str) -> np.ndarray:
    """Targets as training encoded them: floats, or class codes in the order of schema.json."""
    if task == "regression":
        return target.to_numpy(dtype="float64")
    lookup = {str(c): i for i, c in enumerate(classes)}
    codes = target.map(lambda v: lookup.get(str(v), -1)).to_numpy(dtype="int64")
    if (codes < 0).any():
        unknown = sorted({str(v) for v, c in zip(target, codes) if c < 0})[:5]
        raise ArtifactError(
            f"{source}: {int((codes < 0).sum())} targets are not among the run's classes {classes}: {unknown}"
        )
    return codes


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and scalars kept as JSON text for comparison."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = obj if isinstance(obj, (str, int, float, bool)) or obj is None else json.dumps(obj, sort_keys=True)
    return {prefix.rstrip("."): value}


def fold_records(metric: str, oof: Predictions) -> list[dict[str, Any]]:
    """Per-fold rows and scores recomputed from OOF predictions (for runs without a fold table)."""
    from pipeline.core.metrics import score

    records = []
    for k in np.unique(oof.fold[oof.fold >= 0]) if oof.fold is not None else []:
        valid = oof.fold == k
        try:
            value = score(metric, oof.y[valid], oof.pred[valid])
        except ValueError:  # e.g. AUC of a fold holding one class
            value = float("nan")
        records.append(
            {
                "repeat": 0,
                "fold": int(k),
                "n_train": None,
                "n_valid": int(valid.sum()),
                "best_iteration": None,
                "score": value,
                "seconds": None,
            }
        )
    return records


def ensemble_summary(doc: dict[str, Any], oof: Predictions, cfg: Config | None, n_features: int) -> dict[str, Any]:
    """An ensemble's scores.json in the shape of a training run's: the selected model's numbers,
    fold scores recomputed from its OOF predictions."""
    selected = doc.get("selected") or doc.get("recommended")
    model = (doc.get("models") or {}).get(selected, {})
    folds = fold_records(doc["metric"], oof)
    fold_scores = [f["score"] for f in folds]
    summary = {
        key: doc[key]
        for key in (
            "experiment",
            "task",
            "metric",
            "greater_is_better",
            "oof_score",
            "oof_metrics",
            "holdout_score",
            "holdout_metrics",
            "n_holdout",
            "n_test",
            "scoring_cutoff",
            "n_rows",
            "seconds",
        )
        if key in doc
    }
    summary.update(
        {
            "n_validated": doc.get("n_compared", len(oof)),
            "folds": folds,
            "fold_scores": fold_scores,
            "fold_score_mean": float(np.nanmean(fold_scores)) if folds else float("nan"),
            "fold_score_std": float(np.nanstd(fold_scores)) if folds else float("nan"),
            "score_source": f"ensemble model {selected}: {model.get('score_source', 'oof')}",
            "selected_model": selected,
            "n_features": n_features,
        }
    )
    if cfg is not None:
        summary.update({"splitter": cfg.splitter, "n_splits": cfg.cv.n_splits, "n_repeats": cfg.cv.n_repeats})
    return summary
