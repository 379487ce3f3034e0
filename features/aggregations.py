"""The aggregation plan: which columns to aggregate over which time span, under which names.

The plan depends on the spec only. Each `Job` is one time span with every aggregation that uses
it, so one group-by per (span, cutoff) computes all of them. Documented values for an entity with
no event in a span: 0 for sum, count, nunique and active months or days; missing (NaN) for mean, max, min,
std, skew, first, last and mode; a trend's ratio (and a year-over-year ratio) is missing when the earlier
window's value is 0 or missing.
first, last and mode give a value of the column (text stays text): the first and last non-missing value in
time order, and the most frequent one, ties going to the smallest (as pandas' `Series.mode().iloc[0]`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .names import (
    Window,
    active_name,
    agg_name,
    lag_name,
    lags_above_names,
    recency_names,
    window_suffix,
    year_ago_label_name,
    year_ago_name,
)
from .spec import VALUE_AGGREGATES, ZERO_WHEN_EMPTY, FeaturesSection
from .timing import window_length
from .windows import Span, label_span

TIME = "__time_ns"  # event time as int64 nanoseconds (UTC instants for zone-aware times)
MONTH = "__month"  # calendar month index (year * 12 + month - 1), in the time column's zone
DAY = "__day"  # calendar day index (days since 1970-01-01), in the time column's zone
CALENDAR_COLUMN = {"months": MONTH, "days": DAY}  # what the active counts of each kind of window count
CUTOFF_INDEX = "__cutoff"
FIRST, LAST = "__first_ns", "__last_ns"
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Output:
    """One aggregated column: its name, its Polars aggregation, and whether no events means 0; `source`
    names the column whose values it holds (first, last, mode), which `restore_values` gives back."""

    name: str
    expr: pl.Expr
    zero_when_empty: bool
    as_float: bool = True
    source: str | None = None

    def fill(self) -> pl.Expr:
        column = pl.col(self.name).cast(pl.Float64) if self.as_float else pl.col(self.name)
        return column.fill_null(0.0) if self.zero_when_empty else column


@dataclass(frozen=True)
class Job:
    """All aggregations over one span, computed per cutoff with one group-by."""

    span: Span
    outputs: tuple[Output, ...]


def aggregate(column: str, function: str) -> pl.Expr:
    """The Polars expression of one of the seeds' functions, with pandas' conventions
    (sample std, bias-corrected skew, count and nunique ignore missing values)."""
    col = pl.col(column)
    exprs = {
        "mean": col.mean(),
        "max": col.max(),
        "min": col.min(),
        "sum": col.sum(),
        "count": col.count(),
        "std": col.std(ddof=1),
        "skew": col.skew(bias=False),
        # n_unique counts a missing value as one more value; this form stays on Polars' fast path
        # (drop_nulls() first gathers every group's values: slower, and ~13 bytes per event more)
        "nunique": col.n_unique() - (col.null_count() > 0).cast(pl.UInt32),
        # Within a group, rows keep the events' time order; text arrives as codes in sorted order
        # (events.py), so the smallest code of a tied mode is the smallest text.
        "first": col.drop_nulls().first(),
        "last": col.drop_nulls().last(),
        "mode": col.drop_nulls().mode().min(),
    }
    return exprs[function]


def output(name: str, column: str, function: str) -> Output:
    value = function in VALUE_AGGREGATES
    return Output(
        name,
        aggregate(column, function).alias(name),
        function in ZERO_WHEN_EMPTY,
        as_float=not value,
        source=column if value else None,
    )


def restore_values(jobs: list[Job], vocabularies: dict[str, pl.Series]) -> list[pl.Expr]:
    """first/last/mode outputs as the column's values: codes of a text column back to its text, numbers
    as floats (one dtype whether or not a window was empty, so a cached table reads back the same)."""
    exprs = []
    for out in (out for job in jobs for out in job.outputs if out.source is not None):
        codes = pl.col(out.name)
        vocabulary = vocabularies.get(out.source)
        exprs.append(
            pl.lit(vocabulary).gather(codes - 1).alias(out.name) if vocabulary is not None else codes.cast(pl.Float64)
        )
    return exprs


def plan(spec: FeaturesSection) -> list[Job]:
    """Jobs for every feature of the spec; the all-history job comes first (it defines who is eligible)."""
    by_span: dict[Span, dict[str, Output]] = {Span(None, 0): {}}

    def add(span: Span, out: Output) -> None:
        by_span.setdefault(span, {}).setdefault(out.name, out)

    add(Span(None, 0), Output(FIRST, pl.col(TIME).min().alias(FIRST), False, as_float=False))
    add(Span(None, 0), Output(LAST, pl.col(TIME).max().alias(LAST), False, as_float=False))
    for column in spec.recency_of:
        marked = pl.col(TIME).filter(pl.col(column) != 0)  # missing values are not marked events
        first, last = (f"__{name}_ns" for name in recency_names(column))
        add(Span(None, 0), Output(first, marked.min().alias(first), False, as_float=False))
        add(Span(None, 0), Output(last, marked.max().alias(last), False, as_float=False))
    for window in spec.windows:
        span = Span.window(window)
        for column, functions in spec.aggregations.items():
            for function in functions:
                add(span, output(agg_name(column, function, window), column, function))
        if spec.active_months:
            name = active_name(window)
            add(span, Output(name, pl.col(CALENDAR_COLUMN[span.unit]).n_unique().alias(name), True))
    for trend in spec.trends:
        for w in trend.windows:
            current = agg_name(trend.column, trend.aggregate, w)
            add(Span.window(w), output(current, trend.column, trend.aggregate))
            add(Span.window(w).before(), output(previous_name(current), trend.column, trend.aggregate))
    for lag in spec.lags:
        for k in range(1, lag.months + 1):
            add(Span(k, k - 1), output(lag_name(lag.column, lag.aggregate, k), lag.column, lag.aggregate))
    for year in spec.year_ago:
        for w in year.windows:
            add(Span.window(w), output(agg_name(year.column, year.aggregate, w), year.column, year.aggregate))
            name = year_ago_name(year.column, year.aggregate, w)
            add(Span.window(w).year_earlier(), output(name, year.column, year.aggregate))
        if year.label_window:
            name = year_ago_label_name(year.column, year.aggregate, spec.label.window.suffix)
            add(label_span(spec.label.window).year_earlier(), output(name, year.column, year.aggregate))
    return [Job(span, tuple(outputs.values())) for span, outputs in by_span.items()]


def year_ago_spans(spec: FeaturesSection) -> list[tuple[Span, tuple[str, ...]]]:
    """Each year-ago span with the feature columns that read it (its value, and the comparisons with now)."""
    spans = []
    for year in spec.year_ago:
        for w in year.windows:
            name = year_ago_name(year.column, year.aggregate, w)
            spans.append((Span.window(w).year_earlier(), (name, f"{name}_yoy_diff", f"{name}_yoy_ratio")))
        if year.label_window:
            name = year_ago_label_name(year.column, year.aggregate, spec.label.window.suffix)
            spans.append((label_span(spec.label.window).year_earlier(), (name,)))
    return spans


def previous_name(current: str) -> str:
    return f"__previous_{current}"


def derived_features(spec: FeaturesSection, cutoff_ns: pl.Expr) -> list[pl.Expr]:
    """Features computed from the aggregated columns: recency and trends."""
    exprs = []
    if spec.recency:
        exprs += [
            ((cutoff_ns - pl.col(FIRST)) / NS_PER_DAY).alias("days_since_first"),
            ((cutoff_ns - pl.col(LAST)) / NS_PER_DAY).alias("days_since_last"),
        ]
    for column in spec.recency_of:  # missing for an entity with no marked event
        exprs += [((cutoff_ns - pl.col(f"__{name}_ns")) / NS_PER_DAY).alias(name) for name in recency_names(column)]
    for trend in spec.trends:
        for w in trend.windows:
            current = agg_name(trend.column, trend.aggregate, w)
            now, before = pl.col(current), pl.col(previous_name(current))
            exprs += [
                (now - before).alias(f"{current}_trend_diff"),
                pl.when(before != 0).then(now / before).otherwise(None).alias(f"{current}_trend_ratio"),
            ]
    for lag in spec.lags:
        if lag.above is not None:
            exprs += lags_above(lag.column, lag.aggregate, lag.months, lag.above)
    for year in spec.year_ago:
        for w in year.windows:
            name = year_ago_name(year.column, year.aggregate, w)
            now, before = pl.col(agg_name(year.column, year.aggregate, w)), pl.col(name)
            exprs += [
                (now - before).alias(f"{name}_yoy_diff"),
                pl.when(before != 0).then(now / before).otherwise(None).alias(f"{name}_yoy_ratio"),
            ]
    return exprs


def lags_above(column: str, function: str, months: int, above: float) -> list[pl.Expr]:
    """How many of the monthly lags exceed `above`, and the latest that does (missing when none)."""
    over = [pl.col(lag_name(column, function, k)) > above for k in range(1, months + 1)]
    count_name, latest_name = lags_above_names(column, function, months, above)
    latest = pl.coalesce([pl.when(o).then(pl.lit(float(k))) for k, o in enumerate(over, start=1)])
    return [pl.sum_horizontal(over).cast(pl.Float64).alias(count_name), latest.alias(latest_name)]


def window_names(spec: FeaturesSection) -> dict[str, str]:
    """Human description of each window suffix, for the summary."""

    def words(window: Window) -> str:
        length = window_length(window)
        return "all history before the cutoff" if length is None else f"{length.phrase} before the cutoff"

    return {window_suffix(w): words(w) for w in spec.windows}
