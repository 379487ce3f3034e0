"""The drift measures against direct computations: PSI and KL on the same bins, their smoothing, their
stability for extreme counts and values, the reference bins and the chunked counter, the Holm correction."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from pipeline.config.sections import DriftSection
from pipeline.data.feature_bins import (
    ReferenceBins,
    category_counts,
    fit_reference,
    numeric_counts,
    numeric_edges,
)
from pipeline.data.schema import FeatureSchema
from pipeline.drift.measures import SMOOTHING, BinCounter, divergences, flag, holm, kl_divergence, psi

COUNTS = [
    ([10, 20, 30, 40], [40, 30, 20, 10]),
    ([0, 5, 5, 0], [3, 0, 0, 7]),  # empty bins on both sides
    ([1, 1, 1, 1], [0, 0, 0, 4]),
    ([1000, 0, 0], [0, 0, 1000]),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
]


def direct(train: list[float], new: list[float]) -> tuple[float, float]:
    """PSI and KL(new || train) straight from their definitions, on shares smoothed as documented."""
    p = np.asarray(new, dtype="float64") / np.sum(new)
    q = np.asarray(train, dtype="float64") / np.sum(train)
    k = len(p)
    p, q = (p + SMOOTHING) / (1 + k * SMOOTHING), (q + SMOOTHING) / (1 + k * SMOOTHING)
    return float(np.sum((p - q) * np.log(p / q))), float(np.sum(p * np.log(p / q)))


@pytest.mark.parametrize("train, new", COUNTS)
def test_psi_and_kl_match_a_direct_numpy_computation(train, new):
    expected_psi, expected_kl = direct(train, new)
    assert psi(np.array(train), np.array(new)) == pytest.approx(expected_psi, rel=1e-12)
    assert kl_divergence(np.array(train), np.array(new)) == pytest.approx(expected_kl, rel=1e-12)
    assert expected_psi > 0 and expected_kl > 0  # the cases differ: a measure stuck at 0 would fail


@pytest.mark.parametrize(
    "train, new",
    [
        ([0, 5, 5, 0], [0, 5, 5, 0]),  # empty bins on both sides
        ([0, 5, 5, 0], [0, 10, 10, 0]),  # the same shares from other counts
        ([3, 0, 7], [3, 0, 7]),
        ([1e12, 0, 1], [1e12, 0, 1]),
    ],
)
def test_kl_and_psi_of_identical_distributions_are_exactly_zero(train, new):
    assert divergences(np.array(train), np.array(new)) == (0.0, 0.0)


def test_kl_and_psi_equal_the_textbook_sums_of_smoothed_shares():
    """PSI = sum((q - p) ln(q / p)) and KL = sum(q ln(q / p)) over shares smoothed as (c / n + e) / (1 + k e),
    computed directly on random counts with many empty bins on either side; never negative."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        k = int(rng.integers(2, 30))
        train = rng.integers(0, 5, k) * rng.integers(0, 2, k)
        new = train * int(rng.integers(1, 4)) + rng.integers(0, 2, k) * rng.integers(0, 2)
        if not (train.sum() and new.sum()):
            continue
        p = (train / train.sum() + SMOOTHING) / (1 + k * SMOOTHING)
        q = (new / new.sum() + SMOOTHING) / (1 + k * SMOOTHING)
        value, kl = divergences(train, new)
        assert value == pytest.approx(max(float(np.sum((q - p) * np.log(q / p))), 0.0), rel=1e-9, abs=1e-12)
        assert kl == pytest.approx(max(float(np.sum(q * np.log(q / p))), 0.0), rel=1e-9, abs=1e-12)
        assert value >= 0.0 and kl >= 0.0


@pytest.mark.parametrize(
    "train, new",
    [
        ([0, 1e12], [1e12, 0]),
        ([1e12, 1, 0, 0], [0, 0, 1, 1e12]),
        ([1e300, 1e300], [1e300, 0]),  # sums of counts past the float range do not overflow
        ([1, 0], [0, 1]),
    ],
)
def test_extreme_counts_stay_finite_and_bounded_by_the_smoothing(train, new):
    value, kl = divergences(np.array(train, dtype="float64"), np.array(new, dtype="float64"))
    assert np.isfinite(value) and np.isfinite(kl) and value > 0
    # the smoothing caps every log ratio, so PSI never exceeds twice the largest one
    assert value <= 2 * np.log(1 / SMOOTHING) + 1e-9


def test_nothing_counted_gives_nan_not_an_error():
    assert np.isnan(psi(np.array([0, 0]), np.array([1, 2])))


def test_values_near_the_float_range_bin_and_compare_finitely():
    rng = np.random.default_rng(1)
    train = np.concatenate([rng.normal(size=1000), [1e308, -1e308, 1.7e308, np.nan, np.nan]])
    new = np.concatenate([rng.normal(size=500) * 1e307, [1e308] * 50, [-1e308] * 50, [np.nan] * 10])
    edges = numeric_edges(train, 10)
    assert np.isfinite(edges).all() and np.all(np.diff(edges) > 0)
    train_counts, new_counts = numeric_counts(train, edges), numeric_counts(new, edges)
    assert train_counts.sum() == len(train) and new_counts.sum() == len(new)
    assert train_counts[-1] == 2 and new_counts[-1] == 10  # the missing bin
    value = psi(train_counts, new_counts)
    assert np.isfinite(value) and value > 1.0  # values scaled by 1e307 sit in the outer bins


@pytest.mark.parametrize("n_bins", [2, 5, 10, 40])
def test_numeric_bins_count_as_a_direct_count_does(n_bins):
    rng = np.random.default_rng(n_bins)
    column = np.round(rng.exponential(size=5000), 1)  # ties: edges must be distinct
    column[rng.random(5000) < 0.05] = np.nan
    edges = numeric_edges(column, n_bins)
    assert len(edges) == len(np.unique(edges)) <= n_bins - 1
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    expected = [int(((column > lo) & (column <= hi)).sum()) for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert numeric_counts(column, edges).tolist() == [*expected, int(np.isnan(column).sum())]


def test_category_counts_move_unseen_values_out_of_the_missing_bin():
    codes = np.array([0, 2, 2, np.nan, np.nan, np.nan, 1])
    assert category_counts(codes, 3).tolist() == [1, 1, 2, 3, 0]
    assert category_counts(codes, 3, unseen=2).tolist() == [1, 1, 2, 1, 2]


def schema_of_two() -> FeatureSchema:
    return FeatureSchema(("x", "c"), {"x": "numeric", "c": "categorical"}, {"c": ("a", "b", "c")})


def test_the_reference_round_trips_and_the_counter_adds_chunks_as_one_count():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=3000), rng.integers(0, 3, 3000).astype("float64")])
    X[rng.random(3000) < 0.1, 1] = np.nan
    reference = fit_reference(X, schema_of_two(), 10)
    again = ReferenceBins.from_dict(reference.to_dict())
    assert again.to_dict() == reference.to_dict()
    new = X[:1000] + np.array([0.5, 0.0])
    counter = BinCounter(again)
    for start in range(0, 1000, 128):
        counter.add(new[start : start + 128], {"c": 3})
    whole = again.counts(new, {"c": 3 * 8})
    assert all(np.array_equal(a, b) for a, b in zip(counter.counts, whole)) and counter.rows == 1000
    measures = counter.measures().set_index("feature")
    assert measures.loc["x", "psi"] > measures.loc["c", "psi"]  # only x was shifted
    assert measures.loc["c", "unseen_new"] == pytest.approx(24 / 1000) and np.isnan(measures.loc["x", "unseen_new"])


def test_holm_adjusts_step_down_and_keeps_the_order():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted: 0.005 * 4, 0.01 * 3, 0.03 * 2, 0.04 * 1, each at least the one before
    assert holm(p)[[4, 0, 2, 1]].tolist() == pytest.approx([0.02, 0.03, 0.06, 0.06])
    assert np.isnan(holm(p)[3])
    assert holm(np.array([0.5, 0.6])).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("value, expected", [(0.0, "none"), (0.0999, "none"), (0.1, "moderate"), (0.25, "major")])
def test_flags_follow_the_configured_bands(value, expected):
    assert flag(value, DriftSection()) == expected


def test_the_bands_must_be_ordered():
    with pytest.raises(ValueError, match="psi_major .* must be above drift.psi_moderate"):
        DriftSection(psi_moderate=0.3, psi_major=0.2)


def test_the_drift_facade_resolves_every_name():
    facade = importlib.import_module("pipeline.drift")
    assert facade.__all__ and all(getattr(facade, name) is not None for name in facade.__all__)
