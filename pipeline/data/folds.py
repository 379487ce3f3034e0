"""Fold assignment: computed once per experiment, saved, and reused by every model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import model_selection as ms

from pipeline.core.errors import DataError

NOT_VALIDATED = -1
FOLD_ID = np.int8
DIGEST_CHUNK = 1 << 20


@dataclass(frozen=True)
class Folds:
    """assignments[r, i] is the validation fold of row i in repeat r (-1: never validated).

    Time splits also keep each row's rank among the distinct times and the gap: a fold trains on the
    rows ranked before its first validated time minus `gap` (the purged times sit in neither part).
    """

    assignments: np.ndarray
    splitter: str
    time_rank: np.ndarray | None = None
    gap: int = 0

    def __post_init__(self) -> None:
        if self.gap and self.time_rank is None:
            raise ValueError("a time split with a gap needs each row's time rank")
        # Fold ids are small (cv.n_splits <= 100, -1 not validated): one byte a row, where int64 took eight.
        assignments = np.asarray(self.assignments)
        if assignments.dtype != FOLD_ID and assignments.size:
            low, high = int(assignments.min()), int(assignments.max())
            if low < NOT_VALIDATED or high > np.iinfo(FOLD_ID).max:
                raise ValueError(f"fold ids run from {low} to {high}; they must lie in -1 .. 127")
        object.__setattr__(self, "assignments", assignments.astype(FOLD_ID, copy=False))

    def digest(self, extra: bytes = b"") -> str:
        """sha256 of the fold ids, then `extra`: hashed as int64, the dtype they were held in before, so that model
        keys and tuning fingerprints stay as they were; a chunk at a time, with no copy of the whole."""
        digest = hashlib.sha256()
        flat = self.assignments.reshape(-1)
        for start in range(0, len(flat), DIGEST_CHUNK):
            digest.update(flat[start : start + DIGEST_CHUNK].astype("int64").tobytes())
        digest.update(extra)
        return digest.hexdigest()

    @property
    def n_repeats(self) -> int:
        return self.assignments.shape[0]

    @property
    def n_splits(self) -> int:
        return int(self.assignments.max()) + 1

    def split(self, repeat: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted train and validation row indices of one fold."""
        a = self.assignments[repeat]
        valid = np.flatnonzero(a == fold)
        if self.splitter != "time":
            return np.flatnonzero((a != fold) & (a != NOT_VALIDATED)), valid
        if self.time_rank is None:  # saved before gaps existed (gap 0): blocks are contiguous, earlier = lower fold
            return np.flatnonzero(a < fold), valid
        return np.flatnonzero(self.time_rank < self.time_rank[valid].min() - self.gap), valid

    def pairs(self) -> list[tuple[int, int]]:
        return [(r, k) for r in range(self.n_repeats) for k in range(self.n_splits)]

    def validated(self) -> np.ndarray:
        """Rows that are in a validation fold (all rows, except the first block of a time split)."""
        return (self.assignments != NOT_VALIDATED).all(axis=0)

    def restrict(self, rows: np.ndarray) -> Folds:
        """The same fold ids (and time ranks) on a subset of the rows (a boolean mask or indices)."""
        rank = self.time_rank[rows] if self.time_rank is not None else None
        return Folds(self.assignments[:, rows], self.splitter, rank, self.gap)

    def to_frame(self, ids: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame({ids.name: ids.to_numpy()})
        for r in range(self.n_repeats):
            frame["fold" if r == 0 else f"fold_r{r}"] = self.assignments[r].astype("int16")
        if self.time_rank is not None:
            frame["time_rank"] = self.time_rank.astype("int32")
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, splitter: str, gap: int = 0) -> Folds:
        cols = ["fold"] + sorted((c for c in frame.columns if c.startswith("fold_r")), key=lambda c: int(c[6:]))
        rank = frame["time_rank"].to_numpy(dtype="int64") if "time_rank" in frame.columns else None
        return cls(np.vstack([frame[c].to_numpy(dtype="int64") for c in cols]), splitter, rank, gap)


def make_folds(
    splitter: str,
    n_splits: int,
    n_repeats: int,
    seed: int,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    times: np.ndarray | None = None,
    gap: int = 0,
) -> Folds:
    """Assign every row to a validation fold, per repeat, with the named splitter (`gap`: time only)."""
    n = len(y)
    if splitter == "time":
        if n_repeats > 1:
            raise DataError("cv.n_repeats > 1 makes no sense with the time splitter: its folds are fixed by time")
        block, rank = _time_folds(times, n_splits, gap)
        return Folds(block[None, :], splitter, rank, gap)
    if n < n_splits:
        raise DataError(
            f"the training table has {n} rows, fewer than cv.n_splits = {n_splits}: every fold needs at least "
            "one validation row; lower cv.n_splits or give more rows"
        )
    _check_groups(splitter, groups, n_splits)
    assignments = np.full((n_repeats, n), NOT_VALIDATED, dtype="int64")
    for r in range(n_repeats):
        cv = _splitter(splitter, n_splits, seed + r)
        split_groups = groups if splitter in ("group", "stratified_group") else None
        for k, (_, valid) in enumerate(cv.split(np.zeros(n), y, split_groups)):
            assignments[r, valid] = k
    return Folds(assignments, splitter)


def _splitter(name: str, n_splits: int, seed: int):
    if name == "stratified":
        return ms.StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    if name == "kfold":
        return ms.KFold(n_splits, shuffle=True, random_state=seed)
    if name == "group":
        return ms.GroupKFold(n_splits, shuffle=True, random_state=seed)
    if name == "stratified_group":
        return ms.StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    raise ValueError(f"unknown splitter {name!r}")


def _check_groups(splitter: str, groups: np.ndarray | None, n_splits: int) -> None:
    if splitter not in ("group", "stratified_group"):
        return
    n_missing = int(pd.isna(groups).sum())
    if n_missing:
        raise DataError(f"group column has {n_missing} missing values; every row needs a group for {splitter} folds")
    n_groups = len(pd.unique(groups))
    if n_groups < n_splits:
        raise DataError(f"group column has {n_groups} distinct groups, fewer than cv.n_splits={n_splits}")


def _time_folds(times: np.ndarray, n_splits: int, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward split: the sorted distinct times are cut into n_splits+1 blocks; fold k validates
    block k+1 and trains on the earlier times but the last `gap`. Returns each row's fold and time rank."""
    if pd.isna(times).any():
        raise DataError(f"time column has {int(pd.isna(times).sum())} missing values; the time splitter needs all")
    distinct, inverse = np.unique(times, return_inverse=True)
    if len(distinct) < n_splits + 1:
        raise DataError(
            f"time column has {len(distinct)} distinct values; the time splitter needs at least "
            f"cv.n_splits + 1 = {n_splits + 1}"
        )
    block_of_time = np.full(len(distinct), NOT_VALIDATED, dtype="int64")
    for k, (_, valid) in enumerate(ms.TimeSeriesSplit(n_splits).split(distinct)):
        block_of_time[valid] = k
    if _first_validated(len(distinct), n_splits) - gap < 1:
        fits = [k for k in range(2, n_splits) if _first_validated(len(distinct), k) - gap >= 1]
        fix = f"set cv.n_splits to at most {fits[-1]}" if fits else "add earlier time values"
        raise DataError(
            f"time column has {len(distinct)} distinct values: the first of cv.n_splits = {n_splits} "
            f"time folds validates from distinct value no. {_first_validated(len(distinct), n_splits) + 1}, "
            f"so with a gap of {gap} it has nothing to train on; {fix}"
        )
    return block_of_time[inverse], inverse.astype("int64")


def _first_validated(n_times: int, n_splits: int) -> int:
    """Rank of the first validated time in TimeSeriesSplit's layout (equal blocks, the first one larger)."""
    return n_times - n_splits * (n_times // (n_splits + 1))
