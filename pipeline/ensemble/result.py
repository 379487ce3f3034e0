"""One trained ensemble member, whatever its family: what the combiners, the store and the scores read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.budget import Clock
from pipeline.core.metrics import score
from pipeline.core.progress import Progress
from pipeline.engine.oof import OOFAccumulator


@dataclass(frozen=True)
class MemberResult:
    """One trained member: its OOF and fold-averaged test predictions, scores and fold models."""

    name: str
    family: str
    oof_pred: np.ndarray
    oof_score: float
    fold_scores: tuple[float, ...]
    test_pred: np.ndarray | None
    seconds: float
    params: dict[str, Any]
    model_files: dict[str, bytes] = field(default_factory=dict)
    best_iterations: tuple[int, ...] = ()


class MemberFolds:
    """What a member's own fold loop collects (families trained outside the engine's run_cv), turned into its
    MemberResult once every fold is in."""

    def __init__(
        self,
        name: str,
        metric: str,
        y: np.ndarray,
        task: str,
        n_classes: int,
        n_folds: int,
        stop: Clock | None = None,
    ):
        self.name, self.metric, self.y, self.n_folds = name, metric, y, n_folds
        self.stop, self.started = stop, time.time()
        self.oof = OOFAccumulator(len(y), task, n_classes)
        self.fold_scores: list[float] = []
        self.test_preds: list[np.ndarray] = []
        self.files: dict[str, bytes] = {}
        self.best_iterations: list[int] = []

    def add(
        self,
        valid_idx: np.ndarray,
        valid_pred: np.ndarray,
        test_pred: np.ndarray | None,
        model_file: tuple[str, bytes],
        progress: Progress,
        best_iteration: int | None = None,
    ) -> None:
        """One finished fold: its validation and test predictions, its saved model, its progress line."""
        self.oof.add(valid_idx, valid_pred)
        self.fold_scores.append(score(self.metric, self.y[valid_idx], valid_pred))
        if test_pred is not None:
            self.test_preds.append(test_pred)
        self.files[model_file[0]] = model_file[1]
        if best_iteration is not None:
            self.best_iterations.append(best_iteration)
        progress.step(
            f"  {self.name} fold", len(self.fold_scores), self.n_folds, f"{self.metric} {self.fold_scores[-1]:.5f}"
        )
        if self.stop is not None:  # may stop the member here, between two folds
            self.stop.pace(f"member {self.name}", self.started, len(self.fold_scores), self.n_folds)

    def result(self, family: str, params: dict[str, Any]) -> MemberResult:
        return MemberResult(
            self.name,
            family,
            self.oof.mean(),
            self.oof.score(self.metric, self.y),
            tuple(self.fold_scores),
            np.mean(self.test_preds, axis=0) if self.test_preds else None,
            0.0,
            params,
            self.files,
            tuple(self.best_iterations),
        )
