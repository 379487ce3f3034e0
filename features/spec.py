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

import bisect
import calendar
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .expressions import ExpressionError, columns_of, parse
from .names import ALL, Window, active_name, agg_name, lag_name, recency_names, window_days, window_suffix

# The seeds' functions: a number per group, comparable across windows (trends, lags).
NumberAggregate = Literal["mean", "max", "min", "sum", "count", "std", "skew", "nunique"]
# Values of the column itself, text or numbers: first and last (in time) and the most frequent (mode).
ValueAggregate = Literal["first", "last", "mode"]
Aggregate = Literal[NumberAggregate, ValueAggregate]  # typing flattens nested Literals
LabelAggregate = Literal["sum", "count", "nunique", "mean", "max", "min"]
AGGREGATES: tuple[str, ...] = get_args(NumberAggregate)
VALUE_AGGREGATES = frozenset(get_args(ValueAggregate))  # a value of the column: text stays text
ZERO_WHEN_EMPTY = frozenset({"sum", "count", "nunique"})  # other aggregates are missing (NaN) on no events
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Length(_Section):
    """A span of whole calendar months or days, e.g. a label window or the spacing of cutoffs."""

    n: int
    unit: Literal["months", "days"]

    @property
    def words(self) -> str:
        return f"{self.n}-{self.unit[:-1]}"  # 2-month, 7-day

    @property
    def phrase(self) -> str:
        return f"the {self.unit[:-1]}" if self.n == 1 else f"the {self.n} {self.unit}"  # the month, the 7 days

    def after(self, day: dt.date, times: int = 1) -> dt.date:
        """The day `times` lengths later; a month from the 31st ends on the month's last day (as pandas' DateOffset)."""
        n = self.n * times
        if self.unit == "days":
            return day + dt.timedelta(days=n)
        year, month = divmod(day.month - 1 + n, 12)
        year += day.year
        return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _length(months: int | None, days: int | None) -> Length:
    return Length(n=days, unit="days") if days else Length(n=months, unit="months")


def _one_length(section: str, values: dict[str, Any], months_key: str, days_key: str) -> dict[str, Any]:
    """Exactly one of the months and days keys (months 1 when neither is given)."""
    if values.get(months_key) is not None and values.get(days_key) is not None:
        raise ValueError(f"{section}: give {months_key} or {days_key}, not both (got {months_key} = "
                         f"{values[months_key]}, {days_key} = {values[days_key]})")
    if values.get(days_key) is None and values.get(months_key) is None:
        return {**values, months_key: 1}
    return values


class CutoffSpec(_Section):
    """Cutoffs: training cutoffs from `first` every `every_months` (or `every_days`), and the `test` cutoff (a
    forward holdout, or a scoring cutoff after the data's end, whose labels are unknown; "end": the day after
    the data's last event, known once the events are read)."""

    first: dt.date
    test: dt.date | Literal["end"] | None = None
    last: dt.date | None = None  # the last training cutoff; default: the latest whose label window ends by `test`
    every_months: int | None = Field(default=None, ge=1, le=24)
    every_days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="before")
    @classmethod
    def _spacing(cls, values: Any) -> Any:
        return _one_length("features.cutoffs", values, "every_months", "every_days") if isinstance(values, dict) \
            else values

    @property
    def spacing(self) -> Length:
        return _length(self.every_months, self.every_days)

    @field_validator("test", mode="before")
    @classmethod
    def _test_day(cls, test: Any) -> Any:
        if isinstance(test, str) and test != "end":
            try:
                dt.date.fromisoformat(test)
            except ValueError:
                raise ValueError("give a date (2011-12-01) or \"end\" (the day after the data's last "
                                 "event)") from None
        return test

    @property
    def at_data_end(self) -> bool:
        return self.test == "end"

    def resolve(self, last_event_day: dt.date) -> CutoffSpec:
        """The spec with a test cutoff of "end" set to the day after the data's last event (a scoring cutoff)."""
        if not self.at_data_end:
            return self
        test = last_event_day + dt.timedelta(days=1)
        if self.last is not None and self.last >= test:
            raise ValueError(f"features.cutoffs: last training cutoff {self.last} must be before test; test = \"end\" "
                             f"is {test}, the day after the data's last event: move last earlier")
        return self.model_copy(update={"test": test})

    def training_days(self, label: Length, until: dt.date | None = None) -> list[dt.date]:
        """Training cutoffs from `first`, up to `last` (or `until`), each with its label window ending by `test`."""
        test = None if self.at_data_end else self.test
        if self.last is None and test is None and until is None:
            raise RuntimeError('features.cutoffs.test = "end" is known from the data only: resolve() the spec first')
        days, k = [], 0
        while True:
            day = self.spacing.after(self.first, k)
            if ((self.last is not None and day > self.last) or (until is not None and day > until)
                    or (test is not None and label.after(day) > test)):
                return days
            days.append(day)
            k += 1

    @model_validator(mode="after")
    def _order(self) -> CutoffSpec:
        if self.test is None and self.last is None:
            raise ValueError("give features.cutoffs.test (the forward-holdout cutoff) or features.cutoffs.last")
        end = self.last or (None if self.at_data_end else self.test)
        if end is not None and end < self.first:
            raise ValueError(f"features.cutoffs: first {self.first} is after {'last' if self.last else 'test'} {end}")
        if isinstance(self.test, dt.date) and self.last is not None and self.last >= self.test:
            raise ValueError(f"features.cutoffs: last training cutoff {self.last} must be before test {self.test}")
        return self


class LabelSpec(_Section):
    """label = aggregate(column) over [cutoff, cutoff + months or days), compared with `above` (binary) or raw."""

    column: str
    aggregate: LabelAggregate = "sum"
    months: int | None = Field(default=None, ge=1, le=36)  # the window: whole months (1 when neither is given)
    days: int | None = Field(default=None, ge=1, le=1096)  # or days
    above: float | None = None  # None: the aggregate itself is the target (regression)

    @model_validator(mode="before")
    @classmethod
    def _window(cls, values: Any) -> Any:
        return _one_length("features.label", values, "months", "days") if isinstance(values, dict) else values

    @property
    def window(self) -> Length:
        return _length(self.months, self.days)


class TrendSpec(_Section):
    """Last window vs the one before it: `<column>_<aggregate>_<w>m_trend_diff` and `..._trend_ratio`."""

    column: str
    aggregate: NumberAggregate = "sum"
    windows: tuple[int | str, ...] = Field(default=(1, 3), min_length=1)

    @field_validator("windows")
    @classmethod
    def _positive(cls, windows: tuple[int | str, ...]) -> tuple[Window, ...]:
        return check_windows(windows, "features.trends.windows", allow_all=False)


class LagSpec(_Section):
    """Month-by-month values: `<column>_<aggregate>_lag<k>` for the k-th month before the cutoff."""

    column: str
    aggregate: NumberAggregate = "sum"
    months: int = Field(default=6, ge=1, le=36)


class FeaturesSection(_Section):
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
                raise ValueError(f"features.derive: name {name!r} must be letters, digits and '_' "
                                 "(not starting with a digit)")
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
                raise ValueError(f"features.aggregations.{column} is empty; list functions, e.g. [\"sum\", \"mean\"]")
        return aggregations

    @model_validator(mode="after")
    def _names(self) -> FeaturesSection:
        if self.aggregations and not self.windows:
            raise ValueError(f"features.windows is empty, so features.aggregations ({', '.join(self.aggregations)}) "
                             "make no feature; give windows, e.g. windows = [1, 3, \"all\"], or remove the aggregations")
        if not self.feature_names():
            raise ValueError("features: the spec makes no feature; give windows with aggregations, "
                             "recency, recency_of, active_months, trends or lags")
        check_unique(self.output_names(), "features")
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
        names = [*self.aggregations, self.label.column, *(t.column for t in self.trends),
                 *(lag.column for lag in self.lags), *self.recency_of]
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
        for name in (["days_since_first", "days_since_last"] if self.recency else []):
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

    def output_names(self, target: str | None = None) -> list[str]:
        """Every column of the feature table: key, entity, cutoff, features, and the label."""
        return [self.key_column, self.entity, self.cutoff_column, *self.feature_names(),
                *([target] if target else [])]


def window_length(window: Window) -> Length | None:
    """A window of months or days as a calendar length; None for all history."""
    days = window_days(window)
    if days is not None:
        return Length(n=days, unit="days")
    return None if window == ALL else Length(n=int(window), unit="months")


def check_unique(names: list[str], where: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{where}: feature name collision: {dupes} would be produced more than once; rename the "
                         "derived column, the entity/cutoff/key column or data.target so every name is unique")


def check_windows(windows: Any, key: str, allow_all: bool) -> tuple[Window, ...]:
    """Windows as whole months (1 or "1m" -> 1), "<n>d" days, or "all" (kept last), in the order given."""
    forms = '1, "3m", "30d"' + (' or "all"' if allow_all else "")
    parsed: list[Window] = []
    for window in windows:
        if isinstance(window, str) and re.fullmatch(r"[1-9][0-9]*m", window):
            window = int(window[:-1])
        ok = (isinstance(window, int) and not isinstance(window, bool) and window >= 1) or (
            window_days(window) is not None) or (allow_all and window == ALL)
        if not ok:
            raise ValueError(f"{key}: {window!r} is not a window; give whole months >= 1 or days ({forms}); "
                             "an empty window has no events")
        parsed.append(window)
    dupes = sorted({str(w) for w in parsed if parsed.count(w) > 1})
    if dupes:
        raise ValueError(f"{key} repeats {dupes}")
    return (*(w for w in parsed if w != ALL), *([ALL] if ALL in parsed else []))


def label_gap(features: FeaturesSection) -> int:
    """The most later training cutoffs that fall inside one cutoff's label window: the time folds' smallest
    honest gap (2-month labels at monthly cutoffs: 1; 28-day labels at weekly cutoffs: 3)."""
    # With test = "end" the last cutoff is known only from the data; the gap repeats with the calendar, so
    # three years of cutoffs give the same answer.
    days = features.cutoffs.training_days(features.label.window, until=features.cutoffs.first + dt.timedelta(days=1096))
    ends = [features.label.window.after(day) for day in days]
    return max((bisect.bisect_left(days, end) - i - 1 for i, end in enumerate(ends)), default=0)


def check_experiment(features: FeaturesSection, data: Any, cv: Any) -> None:
    """Cross-checks between [features] and the rest of the config (raise ValueError, pydantic reports it)."""
    given = [k for k in ("train", "test", "split_column", "test_size") if getattr(data, k) is not None]
    if given:
        raise ValueError(f"with [features] the tables come from features.events; remove data.{given[0]}")
    if features.label.above is None and data.task != "regression":
        raise ValueError(f"features.label.above is not set, so the label is a number: set data.task = 'regression' "
                         f"(got {data.task!r}) or give features.label.above for a binary label")
    if features.label.above is not None and data.task != "binary":
        raise ValueError(f"features.label.above makes a 0/1 label: set data.task = 'binary' (got {data.task!r})")
    check_unique(features.output_names(data.target), "features")
    kept_out = {*data.exclude, *data.keep, data.id, cv.group, cv.time} - {None}
    for column in (features.entity, features.cutoff_column, features.key_column):
        chosen = data.features is not None and column in data.features
        if chosen or (data.features is None and column not in kept_out):
            raise ValueError(f"column {column!r} (entity, cutoff or row key of the feature table) would be a model "
                             f"feature; add it to data.exclude or data.keep (or use it as data.id, cv.group or cv.time)")
