"""Values as features (first, last and mode of text and number columns) and the recency of marked events,
against plain pandas on real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.feature_cache import cached_features
from tests.helpers.retail import (
    FAST,
    only_run,
    retail_config,
    retail_slice,
    retail_spec,
    stacked,
    value_spec,
    value_table,
    write_events,
)

CUTOFFS = [pd.Timestamp("2011-07-01"), pd.Timestamp("2011-11-01")]


def customer_lines(events: pd.DataFrame, cutoff: pd.Timestamp, window: int | str) -> pd.DataFrame:
    """Plain pandas: the customer lines of a window before the cutoff, in time order (ties in file order)."""
    lines = events[events["CustomerID"].notna()].assign(total=lambda d: d["Quantity"] * d["UnitPrice"])
    if window == "all":
        start = pd.Timestamp.min
    else:
        start = cutoff - (pd.Timedelta(days=30) if window == "30d" else pd.DateOffset(months=window))
    lines = lines[(lines["InvoiceDate"] >= start) & (lines["InvoiceDate"] < cutoff)]
    return lines.sort_values("InvoiceDate", kind="stable")


def pandas_value(lines: pd.DataFrame, column: str, function: str) -> pd.Series:
    groups = lines.groupby("CustomerID")[column]
    if function == "mode":  # Series.mode drops missing values and sorts: iloc[0] is the smallest tied value
        return groups.agg(lambda s: s.mode().iloc[0] if s.notna().any() else None)
    return groups.first() if function == "first" else groups.last()  # both skip missing values


def assert_values_equal(got: pd.Series, want: pd.Series, column: str) -> None:
    if column == "total":
        np.testing.assert_allclose(got.to_numpy("float64"), want.to_numpy("float64"), rtol=1e-9, equal_nan=True)
    else:
        assert got.fillna("<none>").tolist() == want.fillna("<none>").tolist()


def rows_at(table: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    return table[table["cutoff"] == cutoff].set_index("CustomerID")


CASES = [
    *(("total", f) for f in ("first", "last", "mode")),
    ("Country", "mode"),
    ("Country", "last"),
    *(("StockCode", f) for f in ("first", "last", "mode")),
]


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=[str(c.date()) for c in CUTOFFS])
@pytest.mark.parametrize("window", [1, "30d", "all"])
@pytest.mark.parametrize("column,function", CASES)
def test_values_match_pandas(column, function, window, cutoff):
    rows = rows_at(value_table(), cutoff)
    want = pandas_value(customer_lines(retail_slice(), cutoff, window), column, function)
    suffix = window if window in ("all", "30d") else f"{window}m"
    # Customers with no line in the window get the documented missing value.
    want = want.reindex(rows.index.astype("float64"))
    assert_values_equal(rows[f"{column}_{function}_{suffix}"], want, column)


def test_the_tie_and_type_rules_are_exercised():
    rows = rows_at(value_table(), CUTOFFS[0])
    lines = customer_lines(retail_slice(), CUTOFFS[0], "all")
    tied = lines.groupby("CustomerID")["StockCode"].agg(lambda s: len(s.mode()) > 1)
    assert tied.sum() > 20, "the slice should have customers whose most frequent products tie"
    assert pd.api.types.is_string_dtype(rows["Country_mode_all"]) and rows["Country_mode_all"].notna().all()
    assert rows["total_last_1m"].dtype == "float64" and rows["total_last_1m"].isna().sum() > 20
    assert set(rows["Country_last_all"]) <= set(retail_slice()["Country"])


def test_first_and_last_skip_missing_values():
    events = retail_slice().copy()
    some = events.index[events["CustomerID"].notna()][::5]
    events.loc[some, "Country"] = None  # every 5th customer line loses its country
    spec = retail_spec().model_copy(update={"aggregations": {"Country": ("first", "last", "mode")}})
    rows = rows_at(stacked(events, spec), CUTOFFS[1])
    lines = customer_lines(events, CUTOFFS[1], "all")
    for function in ("first", "last", "mode"):
        want = pandas_value(lines, "Country", function).reindex(rows.index.astype("float64"))
        assert_values_equal(rows[f"Country_{function}_all"], want, "Country")


def test_a_text_value_trains_as_a_category_and_predicts_the_same(tmp_path):
    changes = {
        "features.aggregations.Country": ["mode", "last"],
        "features.aggregations.StockCode": ["nunique", "last"],
    }
    config = retail_config(tmp_path, write_events(tmp_path, retail_slice()), changes)
    first, again = cached_features(load_config(config)), cached_features(load_config(config))
    assert again.reused
    pd.testing.assert_frame_equal(again.table.train, first.table.train)
    assert main(["train", "--config", str(config), "--set", "cv.backtest=0", *FAST]) == 0
    run = only_run(tmp_path / "runs" / "retail_1y")
    kinds = json.loads((run / "schema.json").read_text())["features"]["kinds"]
    assert {kinds[n] for n in ("Country_mode_all", "Country_last_3m", "StockCode_last_1m")} == {"categorical"}
    rows = tmp_path / "rows.parquet"
    assert main(["features", "--config", str(config), "--test-rows", str(rows), "-q"]) == 0
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "p.csv"), "-q"]) == 0
    test_pred = pd.read_parquet(run / "test_pred.parquet")
    assert np.allclose(pd.read_csv(tmp_path / "p.csv")["pred"], test_pred["pred"], rtol=1e-12)


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=[str(c.date()) for c in CUTOFFS])
def test_recency_of_cancellations_matches_pandas(cutoff):
    rows = rows_at(value_table(), cutoff)
    lines = customer_lines(retail_slice(), cutoff, "all")
    cancels = lines[lines["InvoiceNo"].str.startswith("C")].groupby("CustomerID")["InvoiceDate"]
    day = pd.Timedelta(days=1)
    for name, moment in (("last", cancels.max()), ("first", cancels.min())):
        want = ((cutoff - moment) / day).reindex(rows.index.astype("float64"))  # no cancellation: missing
        np.testing.assert_allclose(rows[f"days_since_{name}_is_cancel"], want, rtol=1e-12, equal_nan=True)
    assert rows["days_since_last_is_cancel"].notna().sum() > 20 and rows["days_since_last_is_cancel"].isna().any()
    assert (
        rows["days_since_last_is_cancel"].dropna()
        >= rows.loc[rows["days_since_last_is_cancel"].notna(), "days_since_last"]
    ).all()


def test_value_names_follow_the_pattern():
    names = value_spec().feature_names()
    for name in (
        "Country_mode_all",
        "Country_last_30d",
        "StockCode_first_3m",
        "total_mode_1m",
        "days_since_last_is_cancel",
    ):
        assert name in names
