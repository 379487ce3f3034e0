"""Point in time: a cutoff's feature rows never see events dated on or after the cutoff, and its
labels see only the label window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers.retail import (
    day_spec,
    day_table,
    retail_slice,
    retail_spec,
    slice_table,
    stacked,
    tamper_with_future,
    value_spec,
    value_table,
)

CUTOFFS = pd.date_range("2011-01-01", "2011-12-01", freq="MS")


def rows_of(table: pd.DataFrame, cutoff: pd.Timestamp, columns: list[str]) -> pd.DataFrame:
    rows = table[table["cutoff"] == cutoff]
    return rows.set_index("row_key")[columns].sort_index()


# The shipped spec (windows of months), one with windows of days and a trend over 14 days, and one with
# values as features (first, last and mode of text and numbers).
SPECS = [
    *(("months", seed) for seed in range(6)),
    *(("days", seed) for seed in range(6, 9)),
    *(("values", seed) for seed in range(9, 12)),
]
TABLES = {"months": (retail_spec, slice_table), "days": (day_spec, day_table), "values": (value_spec, value_table)}


@pytest.mark.parametrize("windows,seed", SPECS)
def test_changing_or_deleting_events_on_or_after_a_cutoff_leaves_its_rows_unchanged(windows, seed):
    rng = np.random.default_rng(seed)
    spec, base = (make() for make in TABLES[windows])
    features = spec.feature_names()
    for cutoff in rng.choice(CUTOFFS, size=2, replace=False):
        cutoff = pd.Timestamp(cutoff)
        tampered = stacked(tamper_with_future(retail_slice(), cutoff, rng), spec)
        before, after = rows_of(base, cutoff, features), rows_of(tampered, cutoff, features)
        assert list(after.index) == list(before.index), f"cutoff {cutoff.date()}: eligible customers changed"
        # Equal up to float rounding: Polars' parallel sums may add in another order (~1e-15 relative);
        # a leak changes values by whole events (the tampered amounts are up to 500 x 100).
        pd.testing.assert_frame_equal(
            after, before, check_exact=False, rtol=1e-9, atol=1e-9, obj=f"rows at cutoff {cutoff.date()}"
        )
        later = tampered[tampered["cutoff"] > cutoff]
        assert later.empty or not rows_of(later, later["cutoff"].max(), features).equals(
            rows_of(base, later["cutoff"].max(), features)
        ), "the tampering should change some later cutoff"


def test_an_event_just_before_the_cutoff_is_seen_and_one_at_the_cutoff_is_not():
    spec, cutoff = retail_spec(), pd.Timestamp("2011-09-01")
    events = retail_slice().copy()
    customer = events["CustomerID"].dropna().iloc[0]
    line = events[events["CustomerID"] == customer].iloc[[0]]
    at = line.assign(InvoiceDate=cutoff, Quantity=1000, UnitPrice=1.0)
    just_before = line.assign(InvoiceDate=cutoff - pd.Timedelta(seconds=1), Quantity=1000, UnitPrice=1.0)
    base = rows_of(slice_table(), cutoff, ["total_sum_1m"]).loc[f"{int(customer)}@2011-09-01", "total_sum_1m"]
    with_at = stacked(pd.concat([events, at], ignore_index=True), spec)
    with_before = stacked(pd.concat([events, just_before], ignore_index=True), spec)
    assert rows_of(with_at, cutoff, ["total_sum_1m"]).loc[f"{int(customer)}@2011-09-01", "total_sum_1m"] == base
    assert rows_of(with_before, cutoff, ["total_sum_1m"]).loc[
        f"{int(customer)}@2011-09-01", "total_sum_1m"
    ] == pytest.approx(base + 1000)


def spend_in(events: pd.DataFrame, start: pd.Timestamp, months: int = 1) -> pd.Series:
    lines = events[(events["InvoiceDate"] >= start) & (events["InvoiceDate"] < start + pd.DateOffset(months=months))]
    return (lines["Quantity"] * lines["UnitPrice"]).groupby(lines["CustomerID"]).sum()


def test_labels_are_spend_in_the_month_from_the_cutoff_above_300():
    table, events = slice_table(), retail_slice()
    for cutoff in (pd.Timestamp("2011-03-01"), pd.Timestamp("2011-12-01")):
        rows = table[table["cutoff"] == cutoff].set_index("CustomerID")
        spend = spend_in(events, cutoff).reindex(rows.index.astype("float64")).fillna(0.0).to_numpy()
        np.testing.assert_array_equal(rows["label"].to_numpy(), (spend.round(9) > 300).astype("int8"))
        assert 0 < rows["label"].sum() < len(rows)


def test_labels_use_only_the_label_window():
    spec, cutoff = retail_spec(), pd.Timestamp("2011-06-01")
    events = retail_slice().copy()
    outside = (events["InvoiceDate"] < cutoff) | (events["InvoiceDate"] >= cutoff + pd.DateOffset(months=1))
    events.loc[outside, "Quantity"] = events.loc[outside, "Quantity"] * 50  # every line outside June
    tampered = stacked(events, spec)
    assert rows_of(tampered, cutoff, ["label"]).equals(rows_of(slice_table(), cutoff, ["label"]))
    inside = (~outside) & events["CustomerID"].notna()
    events.loc[inside, "Quantity"] = 0  # nobody spends anything in June
    assert rows_of(stacked(events, spec), cutoff, ["label"])["label"].eq(0).all()
