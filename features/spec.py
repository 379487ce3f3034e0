"""The feature spec: the `[features]` section of an experiment TOML, validated.

    [features]
    events = "data/raw/online_retail/online_retail.parquet"
    entity = "CustomerID"
    time = "InvoiceDate"
    windows = ["7d", 1, 3, 6, 12, "all"]    # days or months before the cutoff, and all history
    [features.derive]
    total = "Quantity * UnitPrice"
    [features.aggregations]
    total = ["sum", "mean", "max"]
    [features.cutoffs]
    first = 2011-01-01
    test = 2011-12-01
    [features.label]
    column = "total"
    above = 300

Names of the output columns are fixed by the spec alone (`feature_names`), so a collision is
reported when the config is loaded, before any data is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from .expressions import ExpressionError, columns_of, parse
from .names import (
    ALL,
    Window,
    active_name,
    agg_name,
    lag_name,
    lags_above_names,
    recency_names,
    window_days,
    window_suffix,
    year_ago_label_name,
    year_ago_name,
)
from .timing import YEAR, CutoffSpec, LabelSpec, SpecSection, check_windows

# The seeds' functions: a number per group, comparable across windows (trends, lags).
NumberAggregate = Literal["mean", "max", "min", "sum", "count", "std", "skew", "nunique"]
# Values of the column itself, text or numbers: first and last (in time) and the most frequent (mode).
ValueAggregate = Literal["first", "last", "mode"]
Aggregate = Literal[NumberAggregate, ValueAggregate]  # typing flattens nested Literals
AGGREGATES: tuple[str, ...] = get_args(NumberAggregate)
VALUE_AGGREGATES = frozenset(get_args(ValueAggregate))  # a value of the column: text stays text
ZERO_WHEN_EMPTY = frozenset({"sum", "count", "nunique"})  # other aggregates are missing (NaN) on no events
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TrendSpec(SpecSection):
    """Last window vs the one before it: `<column>_<aggregate>_<w>m_trend_diff` and `..._trend_ratio`."""

    column: str
    aggregate: NumberAggregate = "sum"
    windows: tuple[int | str, ...] = Field(default=(1, 3), min_length=1)

    @field_validator("windows")
    @classmethod
    def _positive(cls, windows: tuple[int | str, ...]) -> tuple[Window, ...]:
        return check_windows(windows, "features.trends.windows", allow_all=False)


class LagSpec(SpecSection):
    """Month-by-month values: `<column>_<aggregate>_lag<k>` for the k-th month before the cutoff. With `above`,
    also how many of those months exceed it, `<column>_<aggregate>_lags<months>_above<above>`, and the latest month
    that does, `<column>_<aggregate>_lag_above<above>` (missing when none): a label's threshold, say, over the
    past months, a count no single split on one month can make."""

    column: str
    aggregate: NumberAggregate = "sum"
    months: int = Field(default=6, ge=1, le=36)
    above: float | None = None


class YearAgoSpec(SpecSection):
    """The same window one year earlier and the change since: `<column>_<aggregate>_<w>_year_ago`,
    `..._yoy_diff` and `..._yoy_ratio` (missing when the year-ago value is 0 or missing). With
    `label_window`, also the label's window one year earlier, `<column>_<aggregate>_next<label>_year_ago`:
    for a monthly label, the cutoff's own month last year, which is how a model sees the season."""

    column: str
    aggregate: NumberAggregate = "sum"
    windows: tuple[int | str, ...] = Field(default=(1, 3), min_length=1)
    label_window: bool = True

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: tuple[int | str, ...]) -> tuple[Window, ...]:
        return check_windows(windows, "features.year_ago.windows", allow_all=False)


class FeaturesSection(SpecSection):
    """Point-in-time aggregation features built from an event table (README.md, "The experiment file")."""

    events: str
    entity: str
    time: str
    csv_sep: str = ","
    rename: dict[str, str] = Field(default_factory=dict)  # applied to the columns present (e.g. Online Retail II)
    derive: dict[str, str] = Field(default_factory=dict)
    windows: tuple[int | str, ...] = (1, 3, 6, 12, ALL)  # months, "<n>d" days, "all"
    aggregations: dict[str, tuple[Aggregate, ...]] = Field(default_factory=dict)
    recency: bool = True
    # Indicator columns (e.g. is_cancel): days since the entity's first and last event where the column is not 0.
    recency_of: tuple[str, ...] = ()
    active_months: bool = True
    trends: tuple[TrendSpec, ...] = ()
    lags: tuple[LagSpec, ...] = ()
    year_ago: tuple[YearAgoSpec, ...] = ()
    cutoffs: CutoffSpec
    label: LabelSpec
    cutoff_column: str = "cutoff"
    key_column: str = "row_key"

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: tuple[int | str, ...]) -> tuple[Window, ...]:
        return check_windows(windows, "features.windows", allow_all=True)

    @field_validator("derive")
    @classmethod
    def _derive(cls, derive: dict[str, str]) -> dict[str, str]:
        for name, text in derive.items():
            if not _NAME.match(name):
                raise ValueError(
                    f"features.derive: name {name!r} must be letters, digits and '_' (not starting with a digit)"
                )
            try:
                parse(text)
            except ExpressionError as exc:
                raise ValueError(f"features.derive.{name}: {exc}") from None
        return derive

    @field_validator("aggregations")
    @classmethod
    def _aggregations(cls, aggregations: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for column, functions in aggregations.items():
            dupes = sorted({f for f in functions if functions.count(f) > 1})
            if dupes:
                raise ValueError(f"features.aggregations.{column} repeats {dupes}")
            if not functions:
                raise ValueError(f'features.aggregations.{column} is empty; list functions, e.g. ["sum", "mean"]')
        return aggregations

    @model_validator(mode="after")
    def _names(self) -> FeaturesSection:
        if self.aggregations and not self.windows:
            raise ValueError(
                f"features.windows is empty, so features.aggregations ({', '.join(self.aggregations)}) "
                'make no feature; give windows, e.g. windows = [1, 3, "all"], or remove the aggregations'
            )
        if not self.feature_names():
            raise ValueError(
                "features: the spec makes no feature; give windows with aggregations, "
                "recency, recency_of, active_months, trends, lags or year_ago"
            )
        check_unique(self.output_names(), "features")
        label = self.label.window
        if any(y.label_window for y in self.year_ago) and label.n > YEAR[label.unit]:
            raise ValueError(
                f"features.year_ago.label_window: the label window ({label.words}) is longer than a year, so "
                "its window one year earlier would reach past the cutoff; set label_window = false"
            )
        return self

    @property
    def active_calendars(self) -> tuple[str, ...]:
        """Which calendar indexes the events need: "months" and/or "days" for the active counts."""
        if not self.active_months:
            return ()
        has_days = any(window_days(w) is not None for w in self.windows)
        has_months = any(window_days(w) is None for w in self.windows)
        return (*(("months",) if has_months else ()), *(("days",) if has_days else ()))

    def derived_inputs(self) -> list[str]:
        """Event columns the derived columns read (derived names excluded)."""
        used: list[str] = []
        for text in self.derive.values():
            used += [c for c in columns_of(parse(text)) if c not in used and c not in self.derive]
        return used

    def value_columns(self) -> list[str]:
        """Every column the features and the label read (event columns and derived ones)."""
        names = [
            *self.aggregations,
            self.label.column,
            *(t.column for t in self.trends),
            *(lag.column for lag in self.lags),
            *(y.column for y in self.year_ago),
            *self.recency_of,
        ]
        return list(dict.fromkeys(names))

    def feature_names(self) -> list[str]:
        """The feature columns in output order: names explain themselves and depend only on the spec."""
        return [name for name, _ in self._features()]

    def feature_families(self) -> dict[str, tuple[str, ...]]:
        """Features by what they are built from (each window, each source column, the active counts, trends,
        lags, recencies), families of two or more. Features of one history are correlated, so shuffling one
        alone understates what the model gets from that history: importance also shuffles each family."""
        families: dict[str, list[str]] = {}
        for name, keys in self._features():
            for key in keys:
                families.setdefault(key, []).append(name)
        return {key: tuple(names) for key, names in families.items() if len(names) > 1}

    def _features(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Each feature name in output order, with the families it belongs to."""
        for name in ["days_since_first", "days_since_last"] if self.recency else []:
            yield name, ("recency",)
        for column in self.recency_of:
            for name in recency_names(column):
                yield name, ("recency",)
        for window in self.windows:
            span = f"window {window_suffix(window)}"
            for column, functions in self.aggregations.items():
                for function in functions:
                    yield agg_name(column, function, window), (span, f"column {column}")
            if self.active_months:
                yield active_name(window), (span, "active counts")
        for trend in self.trends:
            for w in trend.windows:
                base = agg_name(trend.column, trend.aggregate, w)
                for name in (f"{base}_trend_diff", f"{base}_trend_ratio"):
                    yield name, (f"window {window_suffix(w)}", f"column {trend.column}", "trends")
        for lag in self.lags:
            for k in range(1, lag.months + 1):
                yield lag_name(lag.column, lag.aggregate, k), (f"column {lag.column}", "lags")
            if lag.above is not None:
                for name in lags_above_names(lag.column, lag.aggregate, lag.months, lag.above):
                    yield name, (f"column {lag.column}", "lags")
        for year in self.year_ago:
            families = (f"column {year.column}", "year ago")
            for w in year.windows:
                base = year_ago_name(year.column, year.aggregate, w)
                for name in (base, f"{base}_yoy_diff", f"{base}_yoy_ratio"):
                    yield name, (f"window {window_suffix(w)}", *families)
            if year.label_window:
                yield year_ago_label_name(year.column, year.aggregate, self.label.window.suffix), families

    def output_names(self, target: str | None = None) -> list[str]:
        """Every column of the feature table: key, entity, cutoff, features, and the label."""
        return [self.key_column, self.entity, self.cutoff_column, *self.feature_names(), *([target] if target else [])]


def check_unique(names: list[str], where: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"{where}: feature name collision: {dupes} would be produced more than once; rename the "
            "derived column, the entity/cutoff/key column or data.target so every name is unique"
        )
