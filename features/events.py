"""The event table checked and made ready: names normalised, times parsed, lines without an
entity set aside (and counted), derived columns added, rows sorted by time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl

from pipeline.core.errors import ConfigError, DataError

from .aggregations import CALENDAR_COLUMN, TIME
from .expressions import parse, to_polars
from .spec import VALUE_AGGREGATES, FeaturesSection

NUMERIC_ONLY = frozenset({"mean", "max", "min", "sum", "std", "skew", "recency_of"})


@dataclass(frozen=True)
class Events:
    """Time-sorted events with an entity; `frame` holds the entity, TIME, MONTH and DAY (if needed) and the
    value columns."""

    frame: pl.DataFrame
    sorted_ns: np.ndarray
    tz: str | None
    n_input: int
    n_without_entity: int
    renamed: dict[str, str]
    vocabularies: dict[str, pl.Series] = field(default_factory=dict)  # text columns whose values are features

    @property
    def first_ns(self) -> int:
        return int(self.sorted_ns[0])

    @property
    def last_ns(self) -> int:
        return int(self.sorted_ns[-1])


def prepare_events(events: pd.DataFrame, spec: FeaturesSection, source: str) -> Events:
    """Check and convert the raw event table; raises DataError naming file, column and count."""
    if len(events) == 0:
        raise DataError(f"event table {source} has no rows; give a table of events")
    frame, renamed = normalise_names(events, spec.rename, source)
    check_columns(frame, spec, source)
    times, has_entity, n_without = _timed_entities(frame, spec, source)
    columns = [c for c in required_columns(spec) if c != spec.time]
    kept = frame.loc[has_entity, columns] if n_without else frame[columns]  # no copy when nothing is dropped
    calendars = spec.active_calendars
    table = _with_times(pl.from_pandas(kept, include_index=False), times[has_entity] if n_without else times, calendars)
    table = add_derived(_entity_as_integer(table, spec.entity), spec, source)
    check_value_types(table, spec, source)
    table, vocabularies = _text_as_codes(table, spec)
    sorted_ns = table[TIME].to_numpy()
    if not (sorted_ns[1:] >= sorted_ns[:-1]).all():
        table = table.sort(TIME, maintain_order=True)
        sorted_ns = table[TIME].to_numpy()
    tz = getattr(times.dtype, "tz", None)
    indexes = [CALENDAR_COLUMN[c] for c in calendars]
    return Events(
        table.select([spec.entity, TIME, *indexes, *spec.value_columns()]),
        sorted_ns,
        str(tz) if tz is not None else None,
        len(frame),
        n_without,
        renamed,
        vocabularies,
    )


def event_times(events: pd.DataFrame, columns: list[str], spec: FeaturesSection, source: str) -> Events:
    """The events' entities and times alone, as `prepare_events` reads them: what deciding the data's end and
    the cutoffs needs (`build.plan_build`), for a table whose other columns are read a part at a time elsewhere.
    `events` holds the entity and time columns (raw names) of the table whose columns are `columns`."""
    if len(events) == 0:
        raise DataError(f"event table {source} has no rows; give a table of events")
    _, renamed = normalise_names(pd.DataFrame(columns=columns), spec.rename, source)
    frame = events.rename(columns=renamed)
    missing = [c for c in (spec.entity, spec.time) if c not in frame.columns]
    if missing:
        raise DataError(f"event table {source} lacks the column(s) {missing} the features spec reads")
    times, has_entity, n_without = _timed_entities(frame, spec, source)
    kept = frame.loc[has_entity, [spec.entity]] if n_without else frame[[spec.entity]]
    table = _with_times(pl.from_pandas(kept, include_index=False), times[has_entity] if n_without else times, ())
    table = _entity_as_integer(table, spec.entity).sort(TIME, maintain_order=True)
    tz = getattr(times.dtype, "tz", None)
    return Events(table, table[TIME].to_numpy(), str(tz) if tz is not None else None, len(frame), n_without, renamed)


def _timed_entities(frame: pd.DataFrame, spec: FeaturesSection, source: str) -> tuple[pd.Series, np.ndarray, int]:
    """The parsed times, which lines have an entity, and how many do not (DataError when none has one)."""
    times = parse_times(frame[spec.time], spec.time, source)
    has_entity = frame[spec.entity].notna().to_numpy()
    n_without = int((~has_entity).sum())
    if not has_entity.any():
        raise DataError(f"event table {source}: all {len(frame)} lines lack the entity {spec.entity!r}")
    return times, has_entity, n_without


def check_columns(frame: pd.DataFrame, spec: FeaturesSection, source: str) -> None:
    """Every column the spec reads is there, and no derived column would replace one."""
    missing = [c for c in required_columns(spec) if c not in frame.columns]
    if missing:
        raise DataError(
            f"event table {source} lacks column(s) {missing} that the feature spec uses "
            f"(entity, time, derived inputs or aggregated columns); columns are: "
            f"{', '.join(map(str, frame.columns))}. Fix features.entity/time/aggregations, or map "
            "other names with features.rename"
        )
    clash = sorted(set(spec.derive) & set(map(str, frame.columns)))
    if clash:
        raise ConfigError(
            f"features.derive: {clash} already exist in {source}; a derived column may not replace an "
            "event column (feature name collision): give it another name"
        )


def _with_times(table: pl.DataFrame, times: pd.Series, calendars: tuple[str, ...]) -> pl.DataFrame:
    """TIME as int64 nanoseconds (UTC instants when zoned) and, for the active counts, MONTH and DAY:
    the calendar month and day in the times' zone. Nanoseconds are handed over as they are (no copy)."""
    values = times.array if times.array.unit == "ns" else times.array.as_unit("ns")  # as_unit always copies
    table = table.with_columns(pl.Series(TIME, values.asi8))
    if not calendars:
        return table
    tz = getattr(times.dtype, "tz", None)
    moment = pl.col(TIME).cast(pl.Datetime("ns", "UTC" if tz else None))
    local = moment.dt.convert_time_zone(str(tz)) if tz else moment
    index = {
        "months": local.dt.year().cast(pl.Int32).mul(12).add(local.dt.month().cast(pl.Int32) - 1),
        "days": local.dt.date().cast(pl.Int32),
    }
    return table.with_columns([index[c].alias(CALENDAR_COLUMN[c]) for c in calendars])


def required_columns(spec: FeaturesSection) -> list[str]:
    derived = set(spec.derive)
    values = [c for c in spec.value_columns() if c not in derived]
    return list(dict.fromkeys([spec.entity, spec.time, *spec.derived_inputs(), *values]))


def normalise_names(events: pd.DataFrame, rename: dict[str, str], source: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Apply features.rename to the columns that exist (one config serves both name sets)."""
    present = {old: new for old, new in rename.items() if old in events.columns}
    clash = [new for old, new in present.items() if new in events.columns and new != old]
    if clash:
        raise DataError(
            f"event table {source} has both the column(s) {clash} and the name(s) features.rename maps "
            "onto them; drop one of each pair so the names are unambiguous"
        )
    return (events.rename(columns=present) if present else events), present


def parse_times(series: pd.Series, column: str, source: str) -> pd.Series:
    """The time column as datetimes (naive, or one time zone); DataError for text that is not a date."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    elif pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise DataError(
            f"time column {column!r} in {source} holds numbers ({series.dtype}), not dates; "
            "give dates such as 2011-12-01 08:26:00"
        )
    else:
        parsed = _parse_text_times(series, column, source)
    n_missing = int(parsed.isna().sum())
    if n_missing:
        raise DataError(
            f"time column {column!r} in {source} has {n_missing} missing values of {len(series)}; "
            "every event needs a time: drop or fill those lines"
        )
    return parsed.reset_index(drop=True)


def _parse_text_times(series: pd.Series, column: str, source: str) -> pd.Series:
    try:
        # ISO 8601 first (what CSV writers produce); otherwise the format pandas infers from the first value.
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601")
        if (parsed.isna() & series.notna()).any():
            inferred = pd.to_datetime(series, errors="coerce")
            if inferred.notna().sum() > parsed.notna().sum():
                parsed = inferred
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"time column {column!r} in {source} mixes time zones or offsets ({exc}); convert the "
            "times to one zone (e.g. UTC) before building features"
        ) from None
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        raise DataError(
            f"time column {column!r} in {source} mixes time zones or offsets; convert the times to "
            "one zone (e.g. UTC) before building features"
        )
    bad = parsed.isna() & series.notna()
    if bad.any():
        examples = series[bad].astype(str).unique()[:3].tolist()
        raise DataError(
            f"time column {column!r} in {source} has {int(bad.sum())} values that are not dates "
            f"(e.g. {examples}); fix them or drop those lines"
        )
    return parsed


def _entity_as_integer(table: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Float ids that are whole numbers (CustomerID is float because of its gaps) become integers."""
    column = table[entity]
    if column.dtype.is_float() and (column == column.floor()).all():
        return table.with_columns(pl.col(entity).cast(pl.Int64))
    return table


def _text_as_codes(table: pl.DataFrame, spec: FeaturesSection) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """Text columns as integer codes: count and nunique are the same, and much faster. A column whose values
    are features (first, last, mode) gets codes 1.. in sorted order and a vocabulary to turn them back."""
    text = [c for c in spec.value_columns() if table[c].dtype == pl.String]
    valued = [c for c in text if VALUE_AGGREGATES & set(spec.aggregations.get(c, ()))]
    counted = [c for c in text if c not in valued]
    vocabularies = {c: table[c].drop_nulls().unique().sort() for c in valued}
    codes = [
        *(pl.col(c).rank("dense") for c in valued),
        *((pl.col(counted).cast(pl.Categorical).to_physical(),) if counted else ()),
    ]
    return (table.with_columns(codes) if codes else table), vocabularies


def add_derived(table: pl.DataFrame, spec: FeaturesSection, source: str) -> pl.DataFrame:
    """Derived columns in the order given (a later one may use an earlier one); booleans become 0/1."""
    for name, text in spec.derive.items():
        try:
            table = table.with_columns(to_polars(parse(text)).alias(name))
        except pl.exceptions.PolarsError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"features.derive.{name} = {text!r} cannot be computed on {source}: {first_line}; "
                "check the column types (text operators need text, arithmetic needs numbers)"
            ) from None
    booleans = [c for c in spec.value_columns() if table[c].dtype == pl.Boolean]
    return table.with_columns(pl.col(booleans).cast(pl.Int8)) if booleans else table


def check_value_types(table: pl.DataFrame, spec: FeaturesSection, source: str) -> None:
    """Numeric aggregations need numbers: name the column and the functions when they are not."""
    wanted: dict[str, set[str]] = {c: set(f) for c, f in spec.aggregations.items()}
    for trend in spec.trends:
        wanted.setdefault(trend.column, set()).add(trend.aggregate)
    for lag in spec.lags:
        wanted.setdefault(lag.column, set()).add(lag.aggregate)
    wanted.setdefault(spec.label.column, set()).add(spec.label.aggregate)
    for column in spec.recency_of:  # an indicator: not 0 marks the events whose recency is wanted
        wanted.setdefault(column, set()).add("recency_of")
    for column, functions in wanted.items():
        dtype = table[column].dtype
        numeric = functions & NUMERIC_ONLY
        if numeric and not dtype.is_numeric():
            raise DataError(
                f"column {column!r} in {source} is {dtype}, not numeric, but features ask for "
                f"{sorted(numeric)} of it; use only count, nunique, first, last or mode on text, or derive a "
                "number from it"
            )
