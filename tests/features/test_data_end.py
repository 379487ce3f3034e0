"""The data's end is decided robustly: one stray late event (a mistyped 2099) does not move it.

Taken as the last event, a line dated 2099 made Online Retail's cut-short December look complete (no caveat,
no like-for-like labels) and put test = "end" in 2099 with cutoffs up to 2098. Now a dated test cutoff ignores
events after its label window (with a warning when they stray from the data), and test = "end" refuses a stray
tail; the real tables, which end on 2011-12-09 with ordinary daily activity, trigger neither.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from features.build import build_features
from features.data_end import decide_end
from features.events import prepare_events
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.core.errors import DataError
from tests.helpers.paths import ROOT
from tests.helpers.retail import (
    DATA_ERROR,
    retail_config,
    retail_events,
    retail_slice,
    retail_spec,
    two_year_events,
    two_year_slice,
    with_test,
    write_events,
)

SLICE_ENDS = "2011-12-09 12:20:00"


def with_late_lines(events: pd.DataFrame, *dates: str) -> pd.DataFrame:
    """The events and copies of their first customer line, dated `dates` (appended, as a stray line would be)."""
    line = events[events["CustomerID"].notna()].iloc[[0]]
    late = pd.concat([line.assign(InvoiceDate=pd.Timestamp(day)) for day in dates], ignore_index=True)
    return pd.concat([events, late], ignore_index=True)


def built(events: pd.DataFrame, test: str = "2011-12-01"):
    """The feature table and the warnings the build gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = build_features(events, with_test(retail_spec(), test), "label")
    return table, [str(w.message) for w in caught]


def test_a_stray_event_after_the_label_window_keeps_the_end_and_the_december_caveat():
    clean, _ = built(retail_slice())
    table, said = built(with_late_lines(retail_slice(), "2099-01-01"))
    window = table.summary["test_label_window"]
    assert window["data_ends"] == SLICE_ENDS and window["coverage"] < 1 and not window["complete"]
    assert window == clean.summary["test_label_window"] and window["training_label_days"] == 9
    pd.testing.assert_frame_equal(table.train, clean.train)
    pd.testing.assert_frame_equal(table.test, clean.test)
    pd.testing.assert_series_equal(table.holdout_window_labels, clean.holdout_window_labels)
    (warning,) = [w for w in said if "2099" in w]
    assert "1 event of 1 CustomerID value, dated 2099-01-01" in warning and "ignored" in warning
    assert table.summary["events_after_label_windows"]["stray"]["events"] == 1


def test_data_that_goes_on_past_the_label_window_is_no_stray():
    """A holdout of November on data to December 9: December is the data going on, not a stray (no warning), and
    November's window is complete; a 2099 line beside it is the only one warned about."""
    table, said = built(retail_slice(), "2011-11-01")
    assert not said and table.summary["test_label_window"]["coverage"] == 1.0
    assert table.summary["test_label_window"]["data_ends"] == SLICE_ENDS
    assert "stray" not in table.summary["events_after_label_windows"]
    table, said = built(with_late_lines(retail_slice(), "2099-01-01", "2099-03-01"), "2011-11-01")
    assert table.summary["test_label_window"]["data_ends"] == SLICE_ENDS
    (warning,) = said
    assert "2 events of 1 CustomerID value, dated 2099-01-01 00:00:00 .. 2099-03-01 00:00:00" in warning


def test_a_stray_event_is_refused_when_the_test_cutoff_is_the_end():
    with pytest.raises(DataError, match=r"ends with 1 event of 1 CustomerID value, dated 2099-01-01") as caught:
        built(with_late_lines(retail_slice(), "2099-01-01"), "end")
    assert "drop or correct those lines" in str(caught.value) and "2011-12-10" in str(caught.value)


def test_the_cli_refuses_a_stray_event_at_the_end_with_exit_3(tmp_path, capsys):
    events = write_events(tmp_path, with_late_lines(retail_slice(), "2099-01-01"))
    config = retail_config(tmp_path, events, {"features.cutoffs.test": "end"})
    assert main(["features", "--config", str(config), "-q"]) == DATA_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: event table {events} ends with 1 event") and "2099-01-01" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_the_cli_warns_of_a_stray_event_after_a_dated_test_cutoff(tmp_path, capsys):
    config = retail_config(tmp_path, write_events(tmp_path, with_late_lines(retail_slice(), "2099-01-01")))
    assert main(["features", "--config", str(config), "-q"]) == 0
    assert "warning: event table" in capsys.readouterr().err


@pytest.mark.parametrize("gap_days,refused", [(20, False), (42, True)])
def test_a_tail_is_stray_after_a_gap_longer_than_a_month(gap_days, refused):
    """Three lines 42 days after the slice's daily activity are a stray tail; 20 days later, they are data."""
    day = str((pd.Timestamp(SLICE_ENDS) + pd.Timedelta(days=gap_days)).date())
    events = with_late_lines(retail_slice(), day, day, day)
    if refused:
        with pytest.raises(DataError, match=rf"ends with 3 events of 1 CustomerID value, dated {day}"):
            built(events, "end")
    else:
        table, said = built(events, "end")
        assert not said and table.summary["test_cutoff"] == str((pd.Timestamp(day) + pd.Timedelta(days=1)).date())


@pytest.mark.parametrize("test", ["2011-12-01", "end"])
def test_the_real_slices_report_nothing(test):
    for events in (retail_slice(), two_year_slice()):
        table, said = built(events, test)
        assert not said and "events_after_label_windows" not in table.summary


@pytest.mark.parametrize("table,config", [(retail_events, "retail_1y"), (two_year_events, "retail")])
def test_the_whole_real_tables_end_on_their_last_day(table, config):
    """Each real table, whole, with test = "end": no stray tail, the end is its last line (2011-12-09 12:50)."""
    spec = load_config(ROOT / "configs" / f"{config}.toml").features
    spec = with_test(spec, "end")
    prepared = prepare_events(table(), spec, config)
    decided = decide_end(prepared, spec, config)
    assert decided.late is None and decided.events is prepared and decided.end_ns == prepared.last_ns
    assert str(pd.Timestamp(decided.end_ns)) == "2011-12-09 12:50:00"
