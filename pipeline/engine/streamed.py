"""LightGBM's view of a streamed matrix (pipeline/data/stream.py): a `lightgbm.Sequence`, so LightGBM bins the
table as it reads it, with bin boundaries from the same seeded sample of rows as from an array.

A table read in batches is one too large to hold in several copies, so its folds never share one binned Dataset:
the whole table is binned once, only to fix the bins (`bin_plan`), and each fold's rows are then binned from the
file against those bins (`bin_rows`), so a fold holds its own rows' bins and nothing else. The bins are the whole
Dataset's, so each fold's Dataset holds the values its subset of the whole Dataset would."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from pipeline.data.memory import map_large_allocations, release_memory
from pipeline.data.stream import StreamedMatrix, increasing

from .spec import TrainSpec


class MatrixSequence(lgb.Sequence):
    """Single rows while LightGBM samples bin boundaries (in increasing order, so one cached block serves them in
    turn), then consecutive slices of `batch_size` rows while it pushes them into bins."""

    def __init__(self, matrix: StreamedMatrix):
        self.matrix = matrix
        self.batch_size = matrix.batch_rows
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.matrix)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            self._cached = None  # sampling is over: its last block would be held beside every batch pushed
            return self.matrix[idx]
        k = int(idx) // self.batch_size
        if self._cached is None or self._cached[0] != k:
            start = k * self.batch_size
            self._cached = (k, self.matrix[start : min(start + self.batch_size, len(self))])
        return self._cached[1][int(idx) - k * self.batch_size]

    def clear(self) -> None:
        """Drop the cached block: the binned Dataset keeps this object for as long as it lives."""
        self._cached = None


def bin_whole(X: StreamedMatrix, y: np.ndarray, spec: TrainSpec) -> lgb.Dataset:
    """The whole table binned, a block at a time."""
    return _binned(X, y, spec, None)


def bin_plan(X: StreamedMatrix, y: np.ndarray, spec: TrainSpec) -> lgb.Dataset:
    """The whole table's bins without its rows: a one-row Dataset that takes the bin boundaries, the features
    LightGBM keeps and their order from the whole table binned once, which is then let go."""
    map_large_allocations()  # what each fold frees goes back to the system, not to the next fold's heap
    whole = bin_whole(X, y, spec)
    plan = _binned(X.take(np.arange(min(1, len(X)))), y[:1], spec, whole)
    plan.reference = None  # all it needs of the whole Dataset is copied: let that go
    del whole
    release_memory()
    return plan


def bin_rows(reference: lgb.Dataset, X: StreamedMatrix, y: np.ndarray, rows: np.ndarray, spec: TrainSpec):
    """The rows `rows` of X, read from the file and binned with `reference`'s bins (a bin plan, or the fold's
    training Dataset for its early-stopping rows)."""
    rows = rows if increasing(rows) else np.sort(rows)  # a fold's rows are sorted
    return _binned(X.take(rows), y[rows], spec, reference)


def _binned(X: StreamedMatrix, y: np.ndarray, spec: TrainSpec, reference: lgb.Dataset | None) -> lgb.Dataset:
    sequence = MatrixSequence(X)
    dataset = lgb.Dataset(
        sequence,
        label=y,
        reference=reference,
        feature_name=list(spec.feature_names) or "auto",
        categorical_feature=list(spec.categorical) or "auto",
        params=sampling_params(spec.params),
        free_raw_data=True,  # the rows' file positions would stay with the Dataset for as long as it trains
    ).construct()
    # Constructing leaves a float32 copy of the labels in Python beside LightGBM's own: 4 bytes a row, held while
    # the fold trains. get_label() reads LightGBM's back when something asks.
    dataset.label = None
    sequence.clear()
    X.release()
    return dataset


def sampling_params(params: dict) -> dict:
    """`params` with the seed LightGBM samples bin boundaries with, spelled out.

    From an array, LightGBM's C++ samples `bin_construct_sample_cnt` rows with data_random_seed, which its
    `seed` parameter derives; from a Sequence, the Python package samples with only the Dataset's own parameters,
    where `seed` is not one, so past that many rows it would pick other rows and other bin boundaries. LightGBM
    derives the seed with its own generator (utils/random.h; config.cpp, Config::Set); the same value given
    explicitly makes both paths sample alike."""
    if "seed" not in params or any(k in params for k in ("data_random_seed", "data_seed")):
        return params
    state = (214013 * (int(params["seed"]) & 0xFFFFFFFF) + 2531011) & 0xFFFFFFFF
    return {**params, "data_random_seed": ((state >> 16) & 0x7FFF) % 32767}
