"""Year-ago features on two years of real data (`[[features.year_ago]]`): the same window one year earlier,
the label's window one year earlier, and the changes since, against a plain pandas computation; missing,
not 0, where the data does not reach back; and, like every feature, blind to events on or after the cutoff.
Also the months of the twelve monthly lags above a threshold (`lags.above`), which two years fill."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from features.spec import FeaturesSection
from tests.helpers.retail import stacked, tamper_with_future, two_year_slice

ROOT_SPEC = {
    "events": "two-years.parquet", "entity": "CustomerID", "time": "InvoiceDate",
    "derive": {"total": "Quantity * UnitPrice"}, "windows": [1, 3], "aggregations": {"total": ["sum"]},
    "lags": [{"column": "total", "aggregate": "sum", "months": 12, "above": 300}],
    "year_ago": [{"column": "total", "aggregate": "sum", "windows": [1, 3], "label_window": True},
                 {"column": "InvoiceNo", "aggregate": "nunique", "windows": [2], "label_window": False}],
    "cutoffs": {"first": "2010-06-01", "test": "2011-12-01"},
    "label": {"column": "total", "aggregate": "sum", "months": 1, "above": 300},
}  # fmt: skip
CUTOFFS = [pd.Timestamp(c) for c in ("2010-06-01", "2010-12-01", "2011-01-01", "2011-07-01", "2011-12-01")]


@lru_cache(maxsize=1)
def spec() -> FeaturesSection:
    return FeaturesSection.model_validate(ROOT_SPEC)


@lru_cache(maxsize=1)
def table() -> pd.DataFrame:
    return stacked(two_year_slice(), spec())


def pandas_agg(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, function: str) -> pd.Series:
    lines = events[(events["InvoiceDate"] >= start) & (events["InvoiceDate"] < end)]
    if function == "sum":
        return (lines["Quantity"] * lines["UnitPrice"]).groupby(lines["CustomerID"]).sum()
    return lines.groupby("CustomerID")["InvoiceNo"].nunique()


def rows_at(cutoff: pd.Timestamp) -> pd.DataFrame:
    return table()[table()["cutoff"] == cutoff].set_index("CustomerID")


def expected(cutoff: pd.Timestamp, months_back: int, months: int, function: str, index: pd.Index) -> np.ndarray:
    start = cutoff - pd.DateOffset(months=months_back)
    values = pandas_agg(two_year_slice(), start, start + pd.DateOffset(months=months), function)
    if start < two_year_slice()["InvoiceDate"].min().normalize():
        return np.full(len(index), np.nan)  # the data does not reach back to that day: missing, not 0
    return values.reindex(index).fillna(0.0).to_numpy(dtype="float64")


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=[f"{c:%Y-%m}" for c in CUTOFFS])
def test_year_ago_windows_match_pandas(cutoff):
    rows = rows_at(cutoff)
    for window, function, column in ((1, "sum", "total_sum_1m"), (3, "sum", "total_sum_3m"),
                                     (2, "nunique", "InvoiceNo_nunique_2m")):  # fmt: skip
        year_ago = expected(cutoff, 12 + window, window, function, rows.index)
        np.testing.assert_allclose(rows[f"{column}_year_ago"], year_ago, rtol=1e-9, atol=1e-6, err_msg=column)
        now = expected(cutoff, window, window, function, rows.index)
        np.testing.assert_allclose(rows[f"{column}_year_ago_yoy_diff"], now - year_ago, rtol=1e-9, atol=1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(year_ago != 0, now / year_ago, np.nan)
        np.testing.assert_allclose(rows[f"{column}_year_ago_yoy_ratio"], ratio, rtol=1e-9, atol=1e-9)
    label_month = expected(cutoff, 12, 1, "sum", rows.index)  # the cutoff's own month, a year earlier
    np.testing.assert_allclose(rows["total_sum_next1m_year_ago"], label_month, rtol=1e-9, atol=1e-6)


def test_the_label_month_a_year_earlier_is_the_twelfth_lag_where_the_data_reaches_back():
    rows = table()[table()["cutoff"] >= pd.Timestamp("2010-12-01")]
    np.testing.assert_allclose(rows["total_sum_next1m_year_ago"], rows["total_sum_lag12"], rtol=1e-9, atol=1e-6)
    early = table()[table()["cutoff"] < pd.Timestamp("2010-12-01")]
    assert early["total_sum_next1m_year_ago"].isna().all()  # a window before 2009-12-01: unknown, not 0
    assert (early["total_sum_lag12"] == 0).all()  # lags keep their documented 0 for no events


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=[f"{c:%Y-%m}" for c in CUTOFFS])
def test_months_above_the_threshold_match_pandas(cutoff):
    """Of the twelve monthly spends before the cutoff: how many exceed 300, and the latest that does."""
    rows = rows_at(cutoff)
    monthly = np.column_stack([
        pandas_agg(two_year_slice(), cutoff - pd.DateOffset(months=k), cutoff - pd.DateOffset(months=k - 1), "sum")
        .reindex(rows.index).fillna(0.0).to_numpy() for k in range(1, 13)
    ])  # fmt: skip
    over = monthly > 300
    np.testing.assert_array_equal(rows["total_sum_lags12_above300"], over.sum(axis=1))
    latest = np.where(over.any(axis=1), over.argmax(axis=1) + 1.0, np.nan)
    np.testing.assert_array_equal(rows["total_sum_lag_above300"], latest)
    assert 0 < np.isnan(latest).sum() < len(latest) or cutoff == CUTOFFS[0]


def test_missing_only_where_the_data_does_not_reach_back():
    december, january = rows_at(pd.Timestamp("2010-12-01")), rows_at(pd.Timestamp("2011-01-01"))
    assert december["total_sum_next1m_year_ago"].notna().all()  # December 2009: from the data's first day
    assert december["total_sum_1m_year_ago"].isna().all()  # November 2009: before the data
    assert january["total_sum_1m_year_ago"].notna().all() and january["total_sum_3m_year_ago"].isna().all()
    assert (january["total_sum_1m_year_ago"] == 0).any()  # customers who bought nothing a year before: 0


@pytest.mark.parametrize("seed", range(3))
def test_events_on_or_after_a_cutoff_change_no_year_ago_feature(seed):
    rng = np.random.default_rng(seed)
    features = spec().feature_names()
    for cutoff in rng.choice(CUTOFFS[1:], size=2, replace=False):
        cutoff = pd.Timestamp(cutoff)
        tampered = stacked(tamper_with_future(two_year_slice(), cutoff, rng), spec())
        before = table()[table()["cutoff"] == cutoff].set_index("row_key")[features].sort_index()
        after = tampered[tampered["cutoff"] == cutoff].set_index("row_key")[features].sort_index()
        pd.testing.assert_frame_equal(after, before, check_exact=False, rtol=1e-9, atol=1e-9)


def test_names_say_a_year_earlier():
    names = spec().feature_names()
    assert {"total_sum_1m_year_ago", "total_sum_1m_year_ago_yoy_diff", "total_sum_3m_year_ago_yoy_ratio",
            "total_sum_next1m_year_ago", "InvoiceNo_nunique_2m_year_ago"} <= set(names)  # fmt: skip
    assert "InvoiceNo_nunique_next1m_year_ago" not in names  # label_window = false
    assert spec().feature_families()["year ago"]


@pytest.mark.parametrize("change, message", [
    ({"label": {"column": "total", "months": 13, "above": 300}}, r"label window \(13-month\) is longer than a year"),
    ({"year_ago": [{"column": "total", "windows": ["all"]}]}, r"features.year_ago.windows: 'all' is not a window"),
    ({"year_ago": [{"column": "total", "windows": [1], "lag": 2}]}, r"lag\s+Extra inputs are not permitted"),
])  # fmt: skip
def test_bad_year_ago_specs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        FeaturesSection.model_validate({**ROOT_SPEC, **change})
