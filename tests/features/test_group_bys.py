"""Shared group-bys (features.group_bys): a slice of events read by several (job, cutoff) pairs is
grouped once, and every job still gets exactly what its own group-by of each slice would give."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.aggregations import CUTOFF_INDEX, plan
from features.data_end import decide_end
from features.events import prepare_events
from features.group_bys import GroupBys
from features.spec import FeaturesSection
from features.windows import as_stamp, schedule, slice_rows
from tests.helpers.retail import two_year_slice

SPEC = {
    "events": "two-years.parquet", "entity": "CustomerID", "time": "InvoiceDate",
    "derive": {"total": "Quantity * UnitPrice"}, "windows": [1, 3, "all"],
    "aggregations": {"total": ["sum", "mean", "std"], "InvoiceNo": ["nunique"]},
    "trends": [{"column": "total", "aggregate": "sum", "windows": [1]}],
    "lags": [{"column": "total", "aggregate": "sum", "months": 6}],
    "year_ago": [{"column": "total", "aggregate": "sum", "windows": [1], "label_window": True}],
    "cutoffs": {"first": "2010-03-01", "test": "2011-12-01"},
    "label": {"column": "total", "aggregate": "sum", "months": 1, "above": 300},
}  # fmt: skip


@pytest.fixture(scope="module")
def setting():
    spec = FeaturesSection.model_validate(SPEC)
    decided = decide_end(prepare_events(two_year_slice(), spec, "slice"), spec, "slice")
    cutoffs = spec.cutoffs.resolve(as_stamp(decided.end_ns, decided.events.tz).date())
    return decided.events, plan(spec), schedule(cutoffs, spec.label.window, decided.events.tz), spec.entity


def plain(events, job, sched, entity) -> pl.DataFrame:
    """The job's own group-by of each cutoff's slice, nothing shared."""
    parts = []
    for index, cutoff in enumerate(sched.all):
        lo, hi = slice_rows(events.sorted_ns, cutoff, job.span)
        part = events.frame.slice(lo, hi - lo).group_by(entity).agg([out.expr for out in job.outputs])
        parts.append(part.with_columns(pl.lit(index, dtype=pl.Int32).alias(CUTOFF_INDEX)))
    return pl.concat(parts, how="vertical")


def test_every_job_equals_its_own_group_bys(setting):
    events, jobs, sched, entity = setting
    group_bys = GroupBys(events, jobs, sched, entity)
    for index, job in enumerate(jobs):
        ours = group_bys.frame(index).collect().sort([CUTOFF_INDEX, entity])
        theirs = plain(events, job, sched, entity).sort([CUTOFF_INDEX, entity])
        assert ours.columns == theirs.columns, job.span
        assert_frame_equal(ours, theirs, check_exact=False, rel_tol=1e-12, abs_tol=0.0)
    assert not group_bys._results, "every shared slice is released once its last reader is built"


def test_lag_months_are_grouped_once(setting):
    events, jobs, sched, entity = setting
    group_bys = GroupBys(events, jobs, sched, entity)
    pairs = len(jobs) * len(sched.all)
    distinct = {rows for job_rows in group_bys._rows for rows in job_rows}
    # Each lag month and the trend's and year-ago's months are a month some cutoff's one-month window reads.
    assert len(group_bys._columns) > len(sched.all)
    assert len(distinct) < pairs - 5 * len(sched.all)
