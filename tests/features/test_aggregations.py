"""Every aggregation against a plain pandas group-by on a real slice of Online Retail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.spec import AGGREGATES
from tests.helpers.retail import day_spec, day_table, retail_slice, retail_spec, slice_table, stacked

CUTOFF = pd.Timestamp("2011-07-01")


def past_lines(months: int | None, cutoff: pd.Timestamp = CUTOFF, end_months: int = 0) -> pd.DataFrame:
    """Plain pandas: the slice's customer lines in [cutoff - months, cutoff - end_months), with total and is_cancel."""
    events = retail_slice()
    events = events[events["CustomerID"].notna()].assign(
        total=lambda d: d["Quantity"] * d["UnitPrice"],
        is_cancel=lambda d: d["InvoiceNo"].str.startswith("C").astype("int8"),
    )
    high = cutoff - pd.DateOffset(months=end_months)
    mask = events["InvoiceDate"] < high
    if months is not None:
        mask &= events["InvoiceDate"] >= cutoff - pd.DateOffset(months=months)
    return events[mask]


def rows_at(cutoff: pd.Timestamp = CUTOFF) -> pd.DataFrame:
    table = slice_table()
    return table[table["cutoff"] == cutoff].set_index("CustomerID")


def expected(groups: pd.Series, rows: pd.DataFrame, zero_when_empty: bool) -> pd.Series:
    """The pandas result on every eligible row: the documented value where a customer had no line."""
    values = groups.reindex(rows.index.astype("float64")).to_numpy("float64")
    return pd.Series(np.where(np.isnan(values) & zero_when_empty, 0.0, values), index=rows.index)


@pytest.mark.parametrize("window", [1, 3, 12, "all"])
@pytest.mark.parametrize(
    "column,function",
    [
        *[("total", f) for f in ("sum", "mean", "max", "min", "std", "skew", "count")],
        *[("Quantity", f) for f in ("sum", "mean", "max", "min", "std")],
        *[("UnitPrice", f) for f in ("mean", "max", "min")],
        ("InvoiceNo", "nunique"),
        ("StockCode", "nunique"),
        ("is_cancel", "mean"),
    ],
)
def test_aggregation_matches_pandas_groupby(column, function, window):
    rows = rows_at()
    months = None if window == "all" else window
    groups = past_lines(months).groupby("CustomerID")[column].agg(function)
    suffix = "all" if window == "all" else f"{window}m"
    want = expected(groups, rows, function in ("sum", "count", "nunique"))
    got = rows[f"{column}_{function}_{suffix}"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-7, atol=1e-9, equal_nan=True)


def test_the_retail_spec_uses_all_seed_functions():
    used = {f for functions in retail_spec().aggregations.values() for f in functions}
    assert used == set(AGGREGATES)


def test_eligible_customers_are_those_with_a_line_before_the_cutoff():
    rows = rows_at()
    assert set(rows.index) == set(past_lines(None)["CustomerID"].astype("int64"))


def test_recency_and_active_months_match_pandas():
    rows = rows_at()
    lines = past_lines(None).groupby("CustomerID")["InvoiceDate"]
    day = pd.Timedelta(days=1)
    np.testing.assert_allclose(rows["days_since_last"], expected((CUTOFF - lines.max()) / day, rows, False))
    np.testing.assert_allclose(rows["days_since_first"], expected((CUTOFF - lines.min()) / day, rows, False))
    for months in (3, None):
        recent = past_lines(months)
        active = recent.groupby("CustomerID")["InvoiceDate"].agg(lambda t: t.dt.to_period("M").nunique())
        suffix = "all" if months is None else f"{months}m"
        np.testing.assert_array_equal(rows[f"active_months_{suffix}"], expected(active, rows, True))


def test_lags_are_month_by_month_sums():
    rows = rows_at()
    for k in range(1, 7):
        month = past_lines(k, end_months=k - 1).groupby("CustomerID")["total"].sum()
        np.testing.assert_allclose(rows[f"total_sum_lag{k}"], expected(month, rows, True), rtol=1e-9, atol=1e-9)


def test_trends_compare_the_last_window_with_the_one_before():
    rows = rows_at()
    for w in (1, 3):
        now = expected(past_lines(w).groupby("CustomerID")["total"].sum(), rows, True)
        before = expected(past_lines(2 * w, end_months=w).groupby("CustomerID")["total"].sum(), rows, True)
        np.testing.assert_allclose(rows[f"total_sum_{w}m_trend_diff"], now - before, rtol=1e-9, atol=1e-6)
        ratio = np.where(before != 0, now / before.replace(0, np.nan), np.nan)
        np.testing.assert_allclose(rows[f"total_sum_{w}m_trend_ratio"], ratio, rtol=1e-9, equal_nan=True)


def test_customers_without_events_in_a_window_get_the_documented_value():
    rows = rows_at()
    quiet = rows[rows["total_count_1m"] == 0]
    assert len(quiet) > 20, "the slice should have customers with no line in the month before the cutoff"
    for name in ("total_sum_1m", "total_count_1m", "InvoiceNo_nunique_1m", "active_months_1m", "total_sum_lag1"):
        assert (quiet[name] == 0).all(), name
    for name in ("total_mean_1m", "total_max_1m", "total_min_1m", "total_std_1m", "total_skew_1m", "is_cancel_mean_1m"):
        assert quiet[name].isna().all(), name
    no_previous = rows[(rows["total_sum_lag2"] == 0)]
    assert no_previous["total_sum_1m_trend_ratio"].isna().all()


def test_feature_names_are_stable_and_explain_themselves():
    names = retail_spec().feature_names()
    for name in (
        "total_sum_3m",
        "InvoiceNo_nunique_all",
        "days_since_last",
        "days_since_first",
        "active_months_12m",
        "is_cancel_mean_6m",
        "total_sum_lag6",
        "total_sum_3m_trend_ratio",
    ):
        assert name in names
    assert list(slice_table().columns) == ["row_key", "CustomerID", "cutoff", *names, "label"]


def test_nunique_and_count_ignore_missing_values():
    events = retail_slice().copy()
    some = events.index[events["CustomerID"].notna()][::7]
    events.loc[some, "StockCode"] = None  # every 7th customer line loses its product code
    spec = retail_spec().model_copy(update={"aggregations": {"StockCode": ("nunique", "count")}})
    rows = stacked(events, spec)
    rows = rows[rows["cutoff"] == CUTOFF].set_index("CustomerID")
    lines = events[(events["InvoiceDate"] < CUTOFF) & events["CustomerID"].notna()]
    for function in ("nunique", "count"):
        want = expected(lines.groupby("CustomerID")["StockCode"].agg(function), rows, True)
        np.testing.assert_array_equal(rows[f"StockCode_{function}_all"], want)


def past_days(days: int, end_days: int = 0, cutoff: pd.Timestamp = CUTOFF) -> pd.DataFrame:
    """Plain pandas: the slice's customer lines in [cutoff - days, cutoff - end_days)."""
    lines = past_lines(None, cutoff)
    times = lines["InvoiceDate"]
    return lines[(times >= cutoff - pd.Timedelta(days=days)) & (times < cutoff - pd.Timedelta(days=end_days))]


def day_rows(cutoff: pd.Timestamp = CUTOFF) -> pd.DataFrame:
    table = day_table()
    return table[table["cutoff"] == cutoff].set_index("CustomerID")


@pytest.mark.parametrize("days", [7, 30])
@pytest.mark.parametrize(
    "column,function",
    [
        *[("total", f) for f in ("sum", "mean", "max", "min", "std", "skew", "count")],
        ("Quantity", "sum"),
        ("UnitPrice", "mean"),
        ("InvoiceNo", "nunique"),
        ("StockCode", "nunique"),
    ],
)
def test_windows_of_days_match_pandas_groupby(column, function, days):
    rows = day_rows()
    groups = past_days(days).groupby("CustomerID")[column].agg(function)
    want = expected(groups, rows, function in ("sum", "count", "nunique"))
    np.testing.assert_allclose(
        rows[f"{column}_{function}_{days}d"].to_numpy(), want.to_numpy(), rtol=1e-7, atol=1e-9, equal_nan=True
    )


def test_windows_of_days_count_active_days_and_trend_over_days():
    rows = day_rows()
    assert (rows["total_count_7d"] > 0).sum() >= 10, "the slice should have customers active in the last week"
    for days in (7, 30):
        active = past_days(days).groupby("CustomerID")["InvoiceDate"].agg(lambda t: t.dt.normalize().nunique())
        np.testing.assert_array_equal(rows[f"active_days_{days}d"], expected(active, rows, True))
    now = expected(past_days(14).groupby("CustomerID")["total"].sum(), rows, True)
    before = expected(past_days(28, end_days=14).groupby("CustomerID")["total"].sum(), rows, True)
    np.testing.assert_allclose(rows["total_sum_14d_trend_diff"], now - before, rtol=1e-9, atol=1e-6)
    # months and days side by side: the month windows are the same as without the day windows
    np.testing.assert_allclose(rows["total_sum_1m"], rows_at()["total_sum_1m"], rtol=1e-12)


def test_window_names_say_days_and_months():
    names = day_spec().feature_names()
    for name in (
        "total_sum_7d",
        "InvoiceNo_nunique_30d",
        "active_days_30d",
        "active_months_1m",
        "total_sum_14d_trend_ratio",
        "total_sum_all",
    ):
        assert name in names
    assert day_spec().windows == ("7d", "30d", 1, "all")
