"""Cutoffs every N days and label windows of days: weekly scoring of "will the customer spend in the next 14 days"."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from features.experiment_checks import label_gap
from features.spec import FeaturesSection
from features.timing import Length
from features.windows import offset
from pipeline.cli import main
from tests.helpers.retail import (
    CONFIG_ERROR,
    FAST,
    known_labels_per_fold,
    only_run,
    retail_config,
    retail_slice,
    retail_spec,
    stacked,
    write_events,
)

WEEKLY = {"first": "2011-06-06", "every_days": 7, "test": "2011-11-28"}


def weekly_spec(label_days: int = 14, above: float = 100.0) -> FeaturesSection:
    spec = retail_spec().model_dump()
    spec["cutoffs"] = WEEKLY
    spec["label"] = {**spec["label"], "months": None, "days": label_days, "above": above}
    return FeaturesSection.model_validate(spec)


def test_weekly_cutoffs_and_14_day_labels_match_pandas():
    table = stacked(retail_slice(), weekly_spec())
    cutoffs = sorted(table["cutoff"].unique())
    # weekly from June 6; the last training cutoff is the latest whose 14 days end by the test cutoff (Nov 28)
    assert cutoffs == [*pd.date_range("2011-06-06", "2011-11-14", freq="7D"), pd.Timestamp("2011-11-28")]
    lines = retail_slice().dropna(subset=["CustomerID"]).assign(total=lambda d: d["Quantity"] * d["UnitPrice"])
    for cutoff in (cutoffs[0], cutoffs[10], cutoffs[-1]):
        rows = table[table["cutoff"] == cutoff].set_index("CustomerID")
        window = lines[(lines["InvoiceDate"] >= cutoff) & (lines["InvoiceDate"] < cutoff + pd.Timedelta(days=14))]
        spend = window.groupby("CustomerID")["total"].sum().reindex(rows.index.astype("float64")).fillna(0.0)
        assert rows["label"].to_numpy().tolist() == (spend.round(9) > 100).astype("int8").to_numpy().tolist()
        assert 0 < rows["label"].sum() < len(rows)


@pytest.mark.parametrize(
    "label,cutoffs,gap",
    [
        ({"months": 2}, {"first": "2011-01-01", "every_months": 1}, 1),
        ({"days": 28}, {"first": "2011-01-03", "every_days": 7}, 3),
        ({"days": 7}, {"first": "2011-01-03", "every_days": 7}, 0),
        ({"months": 1}, {"first": "2011-01-03", "every_days": 7}, 4),  # Jan 3 + 1 month: Jan 10, 17, 24, 31 inside
        ({"days": 30}, {"first": "2011-01-01", "every_months": 1}, 1),  # Feb 1 + 30 days passes Mar 1
        ({"days": 28}, {"first": "2011-02-01", "every_months": 1, "last": "2011-02-01", "test": None}, 0),
    ],
)
def test_the_label_gap_counts_later_cutoffs_inside_a_label_window(label, cutoffs, gap):
    spec = retail_spec().model_dump()
    spec["cutoffs"] = {"test": "2011-12-01", **cutoffs}
    spec["label"] = {**spec["label"], "months": None, **label}
    assert label_gap(FeaturesSection.model_validate(spec)) == gap


def test_time_folds_on_weekly_cutoffs_leave_out_the_weeks_whose_labels_reach_the_validated_ones(tmp_path):
    changes = {
        "cv.splitter": "time",
        "cv.time": "cutoff",
        "cv.backtest": 0,
        "features.cutoffs": WEEKLY,
        "features.label.months": None,
        "features.label.days": 28,
        "features.label.above": 200.0,
    }
    assert (
        main(
            ["train", "--config", str(retail_config(tmp_path, write_events(tmp_path, retail_slice()), changes)), *FAST]
        )
        == 0
    )
    run = only_run(tmp_path / "runs" / "retail_1y")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["time_gap"] == 3  # 28-day labels reach the next three weekly cutoffs
    summary = json.loads((run / "features_summary.json").read_text())
    assert "sum of total over the 28 days starting at the cutoff" in summary["label"]["definition"]
    for first_validated, known in known_labels_per_fold(run, scores, pd.DateOffset(days=28)):
        assert known.max() + pd.Timedelta(days=21) < first_validated  # three weekly cutoffs left out


@pytest.mark.parametrize("length", [Length(n=1, unit="months"), Length(n=3, unit="months"), Length(n=7, unit="days")])
def test_date_and_timestamp_arithmetic_agree(length):
    """The spec walks cutoffs on dates (Length.after), the build shifts timestamps (offset): month ends included."""
    for day in pd.date_range("2011-01-25", "2012-03-05", freq="D"):
        assert pd.Timestamp(length.after(day.date())) == day + offset(length)
        # k lengths at once, as the cutoffs are walked (Jan 31 + 2 months is Mar 31, not Feb 28 + 1 month)
        assert pd.Timestamp(length.after(day.date(), 2)) == day + pd.DateOffset(**{length.unit: 2 * length.n})


BAD = [
    (
        "both spacings",
        {"features.cutoffs.every_days": 7, "features.cutoffs.every_months": 1},
        r"features.cutoffs: give every_months or every_days, not both \(got every_months = 1, every_days = 7\)",
    ),
    (
        "both label lengths",
        {"features.label.days": 14},
        r"features.label: give months or days, not both \(got months = 1, days = 14\)",
    ),
    (
        "an empty label window",
        {"features.label.months": None, "features.label.days": 0},
        r"days.*greater than or equal to 1",
    ),
    (
        "gap too small for day labels",
        {
            "cv.splitter": "time",
            "cv.time": "cutoff",
            "cv.backtest": 0,
            "cv.gap": 1,
            "features.cutoffs": WEEKLY,
            "features.label.months": None,
            "features.label.days": 28,
        },
        r"cv.gap = 1 is too small for 28-day labels at cutoffs 7 day\(s\) apart: "
        r"a fold would train on the 2 cutoff\(s\)",
    ),
]


@pytest.mark.parametrize("name,changes,message", BAD, ids=[b[0] for b in BAD])
def test_bad_cadences_fail_clearly_and_write_nothing(tmp_path, capsys, name, changes, message):
    events = write_events(tmp_path, retail_slice())
    assert main(["features", "--config", str(retail_config(tmp_path, events, changes)), "-q"]) == CONFIG_ERROR
    assert re.search(message, capsys.readouterr().err), name
    assert not (tmp_path / "runs").exists()


def test_a_training_label_window_of_days_cut_short_by_the_data_is_refused(tmp_path, capsys):
    changes = {
        "features.cutoffs": {"first": "2011-11-07", "every_days": 7, "last": "2011-12-05"},
        "features.label.months": None,
        "features.label.days": 7,
    }
    events = write_events(tmp_path, retail_slice())
    assert main(["features", "--config", str(retail_config(tmp_path, events, changes)), "-q"]) == 3
    assert re.search(
        r"training cutoff 2011-12-05: the data ends at 2011-12-0\d .* of the way through its 7-day label "
        r"window",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "runs").exists()
