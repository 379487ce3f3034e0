"""Bad event tables and bad feature specs: a clear error naming the problem, and nothing written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from tests.helpers.retail import CONFIG_ERROR, DATA_ERROR, retail_config, retail_slice, write_events


def as_text_dates(frame: pd.DataFrame, bad: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    return frame.assign(InvoiceDate=bad(frame["InvoiceDate"].dt.strftime("%Y-%m-%d %H:%M:%S")))


def unparseable(dates: pd.Series) -> pd.Series:
    dates = dates.copy()
    dates.iloc[[5, 500, 5000]] = ["not a date", "2011-13-45 10:00:00", "yesterday"]
    return dates


def mixed_zones(dates: pd.Series) -> pd.Series:
    half = np.arange(len(dates)) < len(dates) // 2
    return dates.where(~half, dates + "+00:00").where(half, dates + "+01:00")


BAD_TABLES = [
    ("missing entity", lambda f: f.drop(columns=["CustomerID"]), ".parquet", r"lacks column\(s\) \['CustomerID'\]"),
    ("missing time", lambda f: f.drop(columns=["InvoiceDate"]), ".parquet", r"lacks column\(s\) \['InvoiceDate'\]"),
    ("unparseable dates", lambda f: as_text_dates(f, unparseable), ".csv", "3 values that are not dates"),
    ("mixed time zones", lambda f: as_text_dates(f, mixed_zones), ".csv", "mixes time zones"),
    (
        "missing times",
        lambda f: f.assign(InvoiceDate=f["InvoiceDate"].where(f.index % 1000 != 0)),
        ".parquet",
        r"time column 'InvoiceDate' .* has \d+ missing values",
    ),
    ("no line has a customer", lambda f: f.assign(CustomerID=np.nan), ".parquet", "all .* lines lack the entity"),
    ("both name sets", lambda f: f.assign(Invoice=f["InvoiceNo"]), ".parquet", "both the column"),
]


@pytest.mark.parametrize("name,corrupt,suffix,message", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_event_tables_fail_clearly_and_write_nothing(tmp_path, capsys, name, corrupt, suffix, message):
    events = write_events(tmp_path, corrupt(retail_slice().copy()), suffix)
    code = main(["features", "--config", str(retail_config(tmp_path, events)), "-q"])
    assert code == DATA_ERROR, name
    assert re.search(message, capsys.readouterr().err), name
    assert not (tmp_path / "runs").exists()


BAD_SPECS = [
    ("empty window", {"features.windows": [0, 3]}, CONFIG_ERROR, "an empty window has no events"),
    (
        "empty window of days",
        {"features.windows": ["0d", 3]},
        CONFIG_ERROR,
        r"features.windows: '0d' is not a window; give whole months >= 1 or days \(1, \"3m\", \"30d\" or \"all\"\)",
    ),
    (
        "no window for the aggregations",
        {"features.windows": []},
        CONFIG_ERROR,
        r"features.windows is empty, so features.aggregations \(total, Quantity, .*\) make no feature; give windows",
    ),
    ("window in weeks", {"features.windows": ["2w"]}, CONFIG_ERROR, r"'2w' is not a window"),
    (
        "the same window twice",
        {"features.windows": [1, "1m", "30d"]},
        CONFIG_ERROR,
        r"features.windows repeats \['1'\]",
    ),
    (
        "all history as a trend",
        {"features.trends": [{"column": "total", "windows": ["all"]}]},
        CONFIG_ERROR,
        r"features.trends.windows: 'all' is not a window; give whole months >= 1 or days \(1, \"3m\", \"30d\"\)",
    ),
    (
        "cutoff before the data",
        {"features.cutoffs.first": "2010-06-01"},
        DATA_ERROR,
        r"cutoff 2010-06-01 is outside the data's range .* no event is dated before it",
    ),
    (
        "scoring cutoff long after the data",
        {"features.cutoffs.test": "2012-03-01"},
        DATA_ERROR,
        r"test cutoff 2012-03-01 is 82 days after the data's last event \(2011-12-09 [0-9:]+\).* "
        r"read it as inactivity; "
        r"a scoring cutoff may follow the data's end by at most 3 days: set features.cutoffs.test to 2011-12-12 or "
        r"earlier",
    ),
    (
        "test cutoff neither a date nor end",
        {"features.cutoffs.test": "latest"},
        CONFIG_ERROR,
        r"features.cutoffs.test: give a date \(2011-12-01\) or \"end\" \(the day after the data's last event\) "
        r"\(got 'latest'\)",
    ),
    (
        "last training cutoff after the end",
        {"features.cutoffs.test": "end", "features.cutoffs.last": "2011-12-10"},
        DATA_ERROR,
        r"last training cutoff 2011-12-10 must be before test; test = \"end\" is 2011-12-10, the day after "
        r"the data's last event: move last earlier",
    ),
    (
        "training cutoff after the data",
        {"features.cutoffs.test": None, "features.cutoffs.first": "2012-01-01", "features.cutoffs.last": "2012-01-01"},
        DATA_ERROR,
        r"training cutoff 2012-01-01 is outside the data's range .* label window holds no event",
    ),
    (
        "training label window cut short by the data's end",
        {"features.cutoffs.test": None, "features.cutoffs.last": "2011-12-01"},
        DATA_ERROR,
        r"training cutoff 2011-12-01: the data ends at 2011-12-09 [0-9:]+, 2[78]% of the way through its 1-month label "
        r"window.* set features.cutoffs.last \(or test\) earlier",
    ),
    (
        "time folds' gap shorter than the labels",
        {
            "cv.splitter": "time",
            "cv.time": "cutoff",
            "cv.backtest": 0,
            "cv.gap": 0,
            "features.cutoffs.last": "2011-09-01",
            "features.label.months": 2,
        },
        CONFIG_ERROR,
        r"cv.gap = 0 is too small for 2-month labels at cutoffs 1 month\(s\) apart: a fold would train on "
        r"the 1 cutoff\(s\) just before the ones it validates.* set cv.gap = 1 or more, or leave it out",
    ),
    (
        "label window past the test cutoff",
        {"features.cutoffs.last": "2011-11-01", "features.label.months": 2},
        CONFIG_ERROR,
        "label window ends after the test cutoff",
    ),
    (
        "target named like a feature",
        {"data.target": "days_since_last"},
        CONFIG_ERROR,
        r"feature name collision: \['days_since_last'\]",
    ),
    (
        "derived column named like an event column",
        {"features.derive.Quantity": "UnitPrice * 2"},
        CONFIG_ERROR,
        r"\['Quantity'\] already exist .*\(feature name collision\)",
    ),
    (
        "numeric function of text",
        {"features.aggregations.Country": ["mean"]},
        DATA_ERROR,
        "column 'Country' .* not numeric, but features ask for \\['mean'\\] of it; use only count, nunique, first, "
        "last or mode on text",
    ),
    (
        "recency of text",
        {"features.recency_of": ["Country"]},
        DATA_ERROR,
        r"column 'Country' .* not numeric, but features ask for \['recency_of'\] of it",
    ),
    (
        "recency of an unknown column",
        {"features.recency_of": ["is_refund"]},
        DATA_ERROR,
        r"lacks column\(s\) \['is_refund'\]",
    ),
    (
        "recency of a column twice",
        {"features.recency_of": ["is_cancel", "is_cancel"]},
        CONFIG_ERROR,
        r"feature name collision: \['days_since_first_is_cancel', 'days_since_last_is_cancel'\]",
    ),
    (
        "a value in a trend",
        {"features.trends": [{"column": "total", "aggregate": "last", "windows": [1]}]},
        CONFIG_ERROR,
        r"features.trends.0.aggregate: Input should be 'mean', .* or 'nunique' \(got 'last'\)",
    ),
    (
        "bad expression",
        {"features.derive.total": "Quantity ** UnitPrice"},
        CONFIG_ERROR,
        r"features.derive.total: expected a number, a text, a column or '\(' at position 10",
    ),
    (
        "no eval",
        {"features.derive.total": "__import__('os').system('touch pwned')"},
        CONFIG_ERROR,
        "features.derive.total: unexpected character '.' at position 16",
    ),
    (
        "only known functions",
        {"features.derive.total": "exec(Quantity)"},
        CONFIG_ERROR,
        "unknown function 'exec' .* available: abs, log1p",
    ),
    (
        "entity would be a feature",
        {"data.keep": ["cutoff"], "cv.splitter": "time", "cv.time": "cutoff", "cv.group": "cutoff"},
        CONFIG_ERROR,
        "'CustomerID' .* would be a model feature",
    ),
    (
        "a numeric label on a binary task",
        {"features.label.above": None},
        CONFIG_ERROR,
        "the label is a number: set data.task = 'regression'",
    ),
    ("unknown aggregate", {"features.aggregations.total": ["sum", "median"]}, CONFIG_ERROR, "median"),
    ("data.train beside features", {"data.train": "x.csv"}, CONFIG_ERROR, "remove data.train"),
]


@pytest.mark.parametrize("name,changes,code,message", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_specs_fail_clearly_and_write_nothing(tmp_path, capsys, name, changes, code, message):
    events = write_events(tmp_path, retail_slice())
    assert main(["features", "--config", str(retail_config(tmp_path, events, changes)), "-q"]) == code
    assert re.search(message, capsys.readouterr().err), name
    assert not (tmp_path / "runs").exists()
    assert not (Path.cwd() / "pwned").exists()
