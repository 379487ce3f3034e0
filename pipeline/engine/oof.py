"""The one out-of-fold accumulator: every fold loop (training, tuning, selection, ensemble members) adds
each fold's validation predictions here, and the OOF prediction of a row is their mean over repeats."""

from __future__ import annotations

import numpy as np

from pipeline.core.metrics import score


class OOFAccumulator:
    """Sum and count of each row's validation predictions. Folds are added in fold order, so the sums, and
    the files written from them, are the same on every run; rows never validated stay NaN."""

    def __init__(self, n_rows: int, task: str, n_classes: int = 1):
        self.width = n_classes if task == "multiclass" else 1
        self._sum = np.zeros((n_rows, self.width))
        self._count = np.zeros(n_rows, dtype=np.uint16)  # at most one per repeat: 2 bytes a row, not 8

    def add(self, valid_idx: np.ndarray, valid_pred: np.ndarray) -> None:
        self._sum[valid_idx] += np.asarray(valid_pred).reshape(len(valid_idx), self.width)
        self._count[valid_idx] += 1

    @property
    def validated(self) -> np.ndarray:
        """Rows some fold has validated (all of them, except with time folds)."""
        return self._count > 0

    def mean(self) -> np.ndarray:
        """The OOF predictions: one column per class for multiclass, else a vector; NaN where unvalidated."""
        oof = np.full_like(self._sum, np.nan)
        # in place, where validated: no temporary copies of the sums, which are as long as the table
        np.divide(self._sum, self._count[:, None], out=oof, where=self.validated[:, None])
        return oof if self.width > 1 else oof[:, 0]

    def score(self, metric: str, y: np.ndarray) -> float:
        """The metric over the validated rows (the running score while folds are still being added)."""
        return score(metric, *validated_rows(self.validated, y, self.mean()))


def validated_rows(validated: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """`arrays` at the `validated` rows; the arrays themselves when every row is, with no copies as long as
    the table."""
    return arrays if validated.all() else tuple(a[validated] for a in arrays)
