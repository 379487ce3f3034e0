"""LightGBM's view of a streamed matrix (pipeline/data/stream.py): a `lightgbm.Sequence`, so LightGBM bins the
table as it reads it, with bin boundaries from the same seeded sample of rows as from an array."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from pipeline.data.stream import StreamedMatrix


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
        if isinstance(idx, list | np.ndarray):  # Dataset.subset keeps a fold's rows: as a view, never a copy
            return MatrixSequence(self.matrix.take(np.asarray(idx)))
        if isinstance(idx, slice):
            return self.matrix[idx]
        k = int(idx) // self.batch_size
        if self._cached is None or self._cached[0] != k:
            start = k * self.batch_size
            self._cached = (k, self.matrix[start : min(start + self.batch_size, len(self))])
        return self._cached[1][int(idx) - k * self.batch_size]

    def clear(self) -> None:
        """Drop the cached block: the binned Dataset keeps this object for as long as it lives."""
        self._cached = None


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
