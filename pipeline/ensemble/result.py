"""One trained ensemble member, whatever its family: what the combiners, the store and the scores read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
