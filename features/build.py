"""Build the stacked point-in-time feature table: pandas events in, pandas tables out.

One row per (entity, cutoff) for every entity with an event before the cutoff. The work is one
group-by per (time span, cutoff) over a zero-copy slice of the time-sorted events, all run by
Polars in one lazy plan (in parallel); nothing loops over entities. Polars rather than pandas:
pandas' group-by `nunique` and `skew` alone take longer than Polars' whole plan (see bench/).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from pipeline.core.errors import ConfigError, DataError
from pipeline.core.progress import QUIET, Progress

from .aggregations import (
    CUTOFF_INDEX,
    NS_PER_DAY,
    derived_features,
    plan,
    restore_values,
    window_names,
    year_ago_spans,
)
from .data_end import LateEvents, decide_end, horizon_ns, report_late, trimmed
from .events import Events, prepare_events
from .group_bys import GroupBys
from .labels import describe, label_expr, label_job, shortened
from .spec import FeaturesSection, check_unique
from .timing import Length
from .windows import (
    Schedule,
    as_stamp,
    bounds,
    check_range,
    label_coverage,
    label_window_complete,
    labels_known,
    offset,
    schedule,
)

CUTOFF_NS = "__cutoff_ns"
# The training rows' labels over the holdout's window cut short by the data (kept apart from the features).
HOLDOUT_WINDOW_LABEL = "__label_at_holdout_window"
SHORT_LABEL_VALUE = "__short_label_value"


@dataclass(frozen=True)
class FeatureTable:
    """Training rows (the training cutoffs), test rows (the test cutoff) and the build summary; when the data
    cuts the test cutoff's label window short, also the training rows' labels over as many days
    (`holdout_window_labels`, aligned with `train`), to score the OOF predictions like for like."""

    train: pd.DataFrame
    test: pd.DataFrame | None
    summary: dict[str, Any]
    holdout_window_labels: pd.Series | None = None


@dataclass(frozen=True)
class BuildPlan:
    """What the whole event table decides before any feature is computed: the data's end, its first event, the
    cutoffs and the test cutoff's label window. A part of the events (some entities, all their events) built under
    the table's plan gives the rows the whole build gives for those entities."""

    first_ns: int
    sched: Schedule
    window: dict[str, Any] | None
    late: LateEvents | None
    horizon_ns: int | None  # events from here on are after the last label window: left out


def build_features(
    events: pd.DataFrame, spec: FeaturesSection, target: str, source: str = "events", progress: Progress = QUIET
) -> FeatureTable:
    """The feature table of an event table under a spec; `target` names the label column."""
    started = time.perf_counter()
    check_output_names(spec, target)
    kept, build_plan = plan_build(prepare_events(events, spec, source), spec, source)
    say_plan(kept, build_plan, spec, source, progress)
    table = compute(kept, spec, build_plan.sched, target, build_plan.window)
    summary = summarize_build(table, kept, spec, build_plan, target, source)
    del kept  # its derived and time columns are the build's own; the caller keeps the events
    return finish_build(table, summary, build_plan, target, started, progress)


def check_output_names(spec: FeaturesSection, target: str) -> None:
    try:
        check_unique(spec.output_names(target), "features")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def plan_build(prepared: Events, spec: FeaturesSection, source: str) -> tuple[Events, BuildPlan]:
    """The events the build uses (those before the horizon) and the plan the whole table decides. `prepared` needs
    only its times and entities here (`event_times` gives those alone for a table too large to hold whole)."""
    decided = decide_end(prepared, spec, source)
    try:
        cutoffs = spec.cutoffs.resolve(as_stamp(decided.end_ns, prepared.tz).date())
    except ValueError as exc:
        raise DataError(str(exc)) from None
    sched = schedule(cutoffs, spec.label.window, prepared.tz)
    check_range(sched, prepared.first_ns, decided.end_ns, spec.label.window, prepared.tz)
    window = None
    if sched.test is not None:
        window = test_label_window(sched.test, decided.end_ns, prepared.tz, spec.label.window)
    horizon = horizon_ns(spec, prepared.tz)
    return decided.events, BuildPlan(prepared.first_ns, sched, window, decided.late, horizon)


def say_plan(kept: Events, build_plan: BuildPlan, spec: FeaturesSection, source: str, progress: Progress) -> None:
    report_late(build_plan.late, spec.entity, source, progress)
    progress.say(
        f"features: {kept.frame.height} events of {kept.frame[spec.entity].n_unique()} entities, "
        f"{len(build_plan.sched.all)} cutoffs, {len(spec.feature_names())} features"
    )


def build_part(
    events: pd.DataFrame, spec: FeaturesSection, target: str, source: str, build_plan: BuildPlan
) -> pl.DataFrame | None:
    """The rows of the entities in `events` (every event of each), under the whole table's plan; None when none of
    them has an event before the horizon. Rows are in the whole build's order; concatenated with the other parts'
    and sorted by cutoff and entity they are the whole build's table (`finish_build`)."""
    prepared = prepare_events(events, spec, source)
    if build_plan.horizon_ns is not None:
        prepared = trimmed(prepared, int(np.searchsorted(prepared.sorted_ns, build_plan.horizon_ns, side="left")))
    if prepared.frame.height == 0:
        return None
    return compute(prepared, spec, build_plan.sched, target, build_plan.window, build_plan.first_ns)


def summarize_build(
    table: pl.DataFrame, kept: Events, spec: FeaturesSection, build_plan: BuildPlan, target: str, source: str
) -> dict[str, Any]:
    summary = summarize(table, kept, spec, build_plan.sched, target, source, build_plan.window)
    if build_plan.late is not None:
        summary["events_after_label_windows"] = build_plan.late.summary()
    return summary


def finish_build(
    table: pl.DataFrame,
    summary: dict[str, Any],
    build_plan: BuildPlan,
    target: str,
    started: float,
    progress: Progress,
) -> FeatureTable:
    """The table split into training and test rows (pandas), emptying `table`."""
    # Rows are sorted by cutoff and the test cutoff is the last one, so the test rows are the tail:
    # zero-copy slices go to pandas instead of a full copy split into two more.
    n_train = table.height - summary["rows_per_cutoff"].get(summary["test_cutoff"], 0)
    short = None
    if HOLDOUT_WINDOW_LABEL in table.columns:
        short = table.drop_in_place(HOLDOUT_WINDOW_LABEL).slice(0, n_train).to_pandas().rename(target)
    train, test = split_to_pandas(table, n_train, build_plan.sched.test is not None)
    summary["build_seconds"] = round(time.perf_counter() - started, 3)
    say_test_labels(summary.get("test_label_window"), progress)
    progress.say(
        f"features: {len(train)} training rows, {0 if test is None else len(test)} test rows "
        f"in {summary['build_seconds']:.1f}s"
    )
    return FeatureTable(train, test, summary, short)


def say_test_labels(window: dict[str, Any] | None, progress: Progress) -> None:
    """Tell when the test rows' labels are partial (a holdout cut short) or unknown (a scoring cutoff)."""
    if window is None or window["complete"]:
        return
    if not window["labels_known"]:
        progress.say(
            f"features: the test cutoff {window['start']} is after the data's last event "
            f"({window['data_ends']}): a scoring cutoff, its rows get predictions and no label"
        )
    else:
        progress.say(
            f"features: the data ends at {window['data_ends']}, {window['coverage']:.0%} into the test "
            f"cutoff's label window (to {window['end']}): the holdout labels count only that part; the "
            f"training rows are also labelled over their first {window['training_label_days']} days, to "
            "score the OOF predictions like for like"
        )


def compute(
    prepared: Events,
    spec: FeaturesSection,
    sched: Schedule,
    target: str,
    window: dict[str, Any] | None = None,
    first_ns: int | None = None,
) -> pl.DataFrame:
    """Per-span group-bys laid side by side on the eligible (entity, cutoff) rows. `window` is the test
    cutoff's label window (`test_label_window`): unknown labels are null; cut short, the rows are also
    labelled over its `training_label_days` as HOLDOUT_WINDOW_LABEL (only the training rows' are kept).
    `first_ns` is the whole table's first event when `prepared` is a part of it.

    The all-history job gives the rows (who had an event before each cutoff), sorted once; every
    other job is left-joined onto those row keys alone and its columns are placed beside them, so
    the wide table is built once instead of copied by a chain of joins (the lean part of the plan).
    """
    short_days = (window or {}).get("training_label_days")
    short = shortened(spec.label, short_days) if short_days is not None else None
    jobs = [*plan(spec), label_job(spec.label), *([label_job(short, SHORT_LABEL_VALUE)] if short else [])]
    keys = [spec.entity, CUTOFF_INDEX]
    # The in-memory engine: the streaming one adds partial sums in a varying order, so many values
    # differ in their last bits from run to run. In-memory, only plain-sum group-bys still may
    # (relative differences ~1e-15); the cache makes every model of an experiment see one table.
    group_bys = GroupBys(prepared, jobs, sched, spec.entity)
    rows = (
        group_bys.frame(0)
        .sort([CUTOFF_INDEX, spec.entity])
        .with_columns([out.fill() for out in jobs[0].outputs])
        .collect(engine="in-memory")
    )
    row_keys = rows.select(keys).lazy()
    # One span at a time (a generator): run together, the spans' group-by tables would peak at once
    # (bench/README.md, Features, has the measurement).
    beside = (
        row_keys.join(group_bys.frame(j), on=keys, how="left", maintain_order="left")
        .select([out.fill() for out in job.outputs])
        .collect(engine="in-memory")
        for j, job in enumerate(jobs[1:], start=1)
    )
    table = pl.concat([rows, *beside], how="horizontal").lazy()
    values = restore_values(jobs, prepared.vocabularies)
    table = table.with_columns(values) if values else table
    stamps, ns = cutoff_series(sched)
    cutoff = pl.lit(stamps).gather(pl.col(CUTOFF_INDEX))
    table = table.with_columns(
        cutoff.alias(spec.cutoff_column), pl.lit(ns).gather(pl.col(CUTOFF_INDEX)).alias(CUTOFF_NS)
    )
    # A scoring cutoff (after the data's end) is the last cutoff: its rows' labels are unknown, null.
    scoring = window is not None and not window["labels_known"]
    known = pl.col(CUTOFF_INDEX) < len(sched.train) if scoring else pl.lit(True)
    if short is not None:
        table = table.with_columns(label_expr(short, HOLDOUT_WINDOW_LABEL, pl.lit(True), SHORT_LABEL_VALUE))
    table = table.with_columns(
        *derived_features(spec, pl.col(CUTOFF_NS)),
        label_expr(spec.label, target, known),
        pl.format("{}@{}", pl.col(spec.entity), pl.col(spec.cutoff_column).dt.strftime("%Y-%m-%d")).alias(
            spec.key_column
        ),
    )
    first = prepared.first_ns if first_ns is None else first_ns
    table = table.with_columns(before_the_data(spec, sched, first, prepared.tz))
    columns = [
        spec.key_column,
        spec.entity,
        spec.cutoff_column,
        *spec.feature_names(),
        target,
        *([HOLDOUT_WINDOW_LABEL] if short is not None else []),
    ]
    return table.select(columns).collect(engine="in-memory")


def before_the_data(spec: FeaturesSection, sched: Schedule, first_ns: int, tz: str | None) -> list[pl.Expr]:
    """Year-ago features are missing, not 0, at cutoffs whose year-ago window starts before the data's
    first day: the data does not reach back that far, which says nothing about the entity."""
    first = pd.Timestamp(first_ns, tz="UTC").tz_convert(tz) if tz else pd.Timestamp(first_ns)
    first_ns = first.normalize().as_unit("ns").value
    exprs = []
    for span, names in year_ago_spans(spec):
        reaches = pl.Series([bounds(cutoff, span)[0] >= first_ns for cutoff in sched.all], dtype=pl.Boolean)
        reached = pl.lit(reaches).gather(pl.col(CUTOFF_INDEX))
        exprs += [pl.when(reached).then(pl.col(name)).otherwise(None).alias(name) for name in names]
    return exprs


def split_to_pandas(table: pl.DataFrame, n_train: int, with_test: bool) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training rows (the head) and the test rows (the tail) in pandas, a column at a time, each
    Polars column taken out of `table` (which ends empty) and released once converted.
    `DataFrame.to_pandas` would consolidate the wide table into one 2-D block, a second full copy at
    its peak; column by column, only one column is ever held twice (bench/README.md, Features)."""
    train, test = {}, {}
    for name in table.columns:
        column = table.drop_in_place(name)
        train[name] = column.slice(0, n_train).to_pandas()
        if with_test:
            test[name] = column.slice(n_train).to_pandas()
        del column
    return pd.DataFrame(train, copy=False), pd.DataFrame(test, copy=False) if with_test else None


def cutoff_series(sched: Schedule) -> tuple[pl.Series, pl.Series]:
    """The cutoffs as datetimes (in the events' zone) and as int64 nanoseconds, indexed by cutoff number."""
    first = sched.all[0]
    stamps = pd.Series(sched.all, dtype=f"datetime64[ns, {first.tz}]" if first.tz else "datetime64[ns]")
    return pl.Series(stamps), pl.Series([c.as_unit("ns").value for c in sched.all], dtype=pl.Int64)


def summarize(
    table: pl.DataFrame,
    prepared: Events,
    spec: FeaturesSection,
    sched: Schedule,
    target: str,
    source: str,
    window: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the feature table holds, per cutoff and per feature, and what was left out."""
    day = pl.col(spec.cutoff_column).dt.strftime("%Y-%m-%d")
    per_cutoff = (
        table.group_by(day.alias("day")).agg(pl.len().alias("rows"), pl.col(target).mean().alias("mean")).sort("day")
    )
    names = spec.feature_names()
    missing = table.select([_missing(table.schema[n], n).mean().alias(n) for n in names]).row(0, named=True)
    summary = {
        "source": source,
        "entity": spec.entity,
        "time": spec.time,
        "renamed_columns": prepared.renamed,
        "event_lines": prepared.n_input,
        "excluded_lines_without_entity": prepared.n_without_entity,
        "event_lines_used": prepared.frame.height,
        "entities": int(prepared.frame[spec.entity].n_unique()),
        "train_cutoffs": [str(c.date()) for c in sched.train],
        "test_cutoff": str(sched.test.date()) if sched.test is not None else None,
        "label": {"column": target, "definition": describe(spec.label)},
        "windows": window_names(spec),
        "n_features": len(names),
        "rows": table.height,
        "rows_per_cutoff": dict(zip(per_cutoff["day"], map(int, per_cutoff["rows"]))),
        "nan_share_per_feature": {n: round(float(missing[n] or 0.0), 6) for n in names},
    }
    if window is not None:
        summary["test_label_window"] = window
    key = "positive_rate_per_cutoff" if spec.label.above is not None else "label_mean_per_cutoff"
    # A scoring cutoff's labels are unknown (null): it has no rate.
    summary[key] = {d: round(float(v), 6) for d, v in zip(per_cutoff["day"], per_cutoff["mean"]) if v is not None}
    return summary


def test_label_window(test: pd.Timestamp, end_ns: int, tz: str | None, label: Length) -> dict[str, Any]:
    """How much of the test cutoff's label window the data covers: a holdout whose window is cut short by
    the data's end (Online Retail's December stops on the 9th) scores another question than the training
    labels ask, which the report says beside the holdout score. Then `training_label_days` is the whole
    days it covers, over which the training rows are labelled too, to score them like for like.
    `end_ns` is the data's end as data_end.py decides it, not the last event: a stray one must not hide this."""
    end = test + offset(label)
    covered = label_coverage(test, end_ns, label)
    window = {
        "start": str(test),
        "end": str(end),
        "data_ends": str(as_stamp(end_ns, tz)),
        "coverage": round(covered, 4),
        "complete": label_window_complete(test, end_ns, label),
        "labels_known": labels_known(test, end_ns),
    }
    if window["labels_known"] and not window["complete"]:
        window["training_label_days"] = max(1, math.ceil((end_ns - test.as_unit("ns").value) / NS_PER_DAY))
    return window


def _missing(dtype: pl.DataType, name: str) -> pl.Expr:
    """Missing as pandas counts it after conversion: null, and NaN in float columns."""
    column = pl.col(name)
    return (column.is_null() | column.is_nan()) if dtype.is_float() else column.is_null()
