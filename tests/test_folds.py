"""Fold assignment invariants on real labels."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import DataError
from pipeline.data import folds as folds_module
from pipeline.data.folds import make_folds


@pytest.fixture(scope="module")
def labels(adult):
    train = adult[adult["split"] == "train"].head(6000)
    y = (train["income"] == ">50K").to_numpy().astype(int)
    groups = train["native-country"].fillna("?").to_numpy()
    return y, groups


@pytest.mark.parametrize("splitter", ["stratified", "kfold", "group", "stratified_group"])
@pytest.mark.parametrize("n_repeats", [1, 2])
def test_every_row_in_exactly_one_validation_fold(labels, splitter, n_repeats):
    y, groups = labels
    folds = make_folds(splitter, 5, n_repeats, 7, y, groups)
    assert folds.assignments.shape == (n_repeats, len(y))
    for r in range(n_repeats):
        valid_rows = np.concatenate([folds.split(r, k)[1] for k in range(5)])
        assert np.array_equal(np.sort(valid_rows), np.arange(len(y)))
        for k in range(5):
            train, valid = folds.split(r, k)
            assert not np.intersect1d(train, valid).size and len(train) + len(valid) == len(y)
            if splitter in ("group", "stratified_group"):
                assert not set(groups[train]) & set(groups[valid])


def test_fold_ids_take_a_byte_a_row_and_hash_as_they_always_did(labels, monkeypatch):
    """Held as int8, the fold ids still digest as the int64 array they were: model keys and tuning fingerprints of
    earlier runs stay valid, so their cached folds and trials are reused, not retrained."""
    y, groups = labels
    folds = make_folds("stratified_group", 5, 2, 7, y, groups)
    assert folds.assignments.dtype == np.int8
    as_before = folds.assignments.astype("int64").tobytes()
    assert folds.digest() == hashlib.sha256(as_before).hexdigest()
    assert folds.digest(b"stratified_group") == hashlib.sha256(as_before + b"stratified_group").hexdigest()
    monkeypatch.setattr(folds_module, "DIGEST_CHUNK", 1000)  # hashed a chunk at a time: the same digest
    assert folds.digest() == hashlib.sha256(as_before).hexdigest()
    with pytest.raises(ValueError, match=r"fold ids run from -1 to 200; they must lie in -1 \.\. 127"):
        folds_module.Folds(np.array([[0, 200, -1]]), "kfold")


def test_stratified_folds_keep_the_class_balance(labels):
    y, _ = labels
    folds = make_folds("stratified", 5, 1, 0, y)
    rates = [y[folds.split(0, k)[1]].mean() for k in range(5)]
    assert max(rates) - min(rates) < 0.01


def test_repeats_differ_and_seed_reproduces(labels):
    y, _ = labels
    a, b = make_folds("stratified", 5, 2, 3, y), make_folds("stratified", 5, 2, 3, y)
    assert np.array_equal(a.assignments, b.assignments)
    assert not np.array_equal(a.assignments[0], a.assignments[1])


def test_time_split_trains_only_on_the_past():
    times = np.repeat(np.arange(12), 10)
    folds = make_folds("time", 3, 1, 0, np.zeros(len(times)), times=times)
    assert (folds.assignments[0][times < 3] == -1).all()
    for k in range(3):
        train, valid = folds.split(0, k)
        assert times[train].max() < times[valid].min()
    assert folds.validated().sum() == len(times) - 30


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_time_split_purges_the_gap_before_each_validated_block(gap):
    rng = np.random.default_rng(gap)
    times = rng.permutation(np.repeat(np.arange(12), 10))  # row order must not matter
    folds = make_folds("time", 3, 1, 0, np.zeros(len(times)), times=times, gap=gap)
    for k in range(3):
        train, valid = folds.split(0, k)
        first = times[valid].min()
        # exactly the times before the block's first one, minus the `gap` just before it
        assert set(times[train]) == set(range(first - gap))
    again = type(folds).from_frame(folds.to_frame(pd.Series(np.arange(len(times)), name="row")), "time", gap)
    assert all(np.array_equal(again.split(0, k)[0], folds.split(0, k)[0]) for k in range(3))
    kept = np.flatnonzero(rng.random(len(times)) < 0.6)  # a subset keeps each row's fold and the gap
    subset = folds.restrict(kept)
    for k in range(3):
        assert np.array_equal(kept[subset.split(0, k)[0]], np.intersect1d(folds.split(0, k)[0], kept))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"splitter": "group", "groups": np.array(["a", None, "b", "c"] * 5, dtype=object)},
            "1 missing values|5 missing",
        ),
        ({"splitter": "group", "groups": np.array(["a", "b"] * 10)}, "2 distinct groups, fewer than cv.n_splits=3"),
        ({"splitter": "time", "times": np.array([1, 2, 3] * 6 + [1, 2])}, "3 distinct values; .* at least .* 4"),
        (
            {"splitter": "time", "times": np.arange(20) // 2, "gap": 4},
            r"10 distinct values: the first of cv.n_splits = 3 time folds validates from distinct value no. 5, "
            r"so with a "
            r"gap of 4 it has nothing to train on; add earlier time values",
        ),
        ({"splitter": "time", "times": np.arange(20), "gap": 5}, r"gap of 5 .*; set cv.n_splits to at most 2"),
    ],
)
def test_bad_fold_inputs(kwargs, match):
    splitter = kwargs.pop("splitter")
    with pytest.raises(DataError, match=match):
        make_folds(splitter, 3, 1, 0, np.zeros(20), **kwargs)
