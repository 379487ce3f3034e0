"""When the rows are cut and what they are labelled with: lengths of time (months or days), windows, the
cutoff schedule ([features.cutoffs]) and the label window ([features.label]).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .names import ALL, Window, window_days

# What "a year earlier" means for a window of each unit: 12 calendar months, or 52 weeks, so a window of
# days a year earlier starts on the same weekday (weekly cutoffs compare like with like).
YEAR = {"months": 12, "days": 364}
LabelAggregate = Literal["sum", "count", "nunique", "mean", "max", "min"]


class SpecSection(BaseModel):
    # nan/inf are no setting: refused here, once for every float key (TOML cannot even write them back).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Length(SpecSection):
    """A span of whole calendar months or days, e.g. a label window or the spacing of cutoffs."""

    n: int
    unit: Literal["months", "days"]

    @property
    def words(self) -> str:
        return f"{self.n}-{self.unit[:-1]}"  # 2-month, 7-day

    @property
    def suffix(self) -> str:
        return f"{self.n}{self.unit[0]}"  # 1m, 14d: as in feature names

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
        raise ValueError(
            f"{section}: give {months_key} or {days_key}, not both (got {months_key} = "
            f"{values[months_key]}, {days_key} = {values[days_key]})"
        )
    if values.get(days_key) is None and values.get(months_key) is None:
        return {**values, months_key: 1}
    return values


class CutoffSpec(SpecSection):
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
        return (
            _one_length("features.cutoffs", values, "every_months", "every_days")
            if isinstance(values, dict)
            else values
        )

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
                raise ValueError('give a date (2011-12-01) or "end" (the day after the data\'s last event)') from None
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
            raise ValueError(
                f'features.cutoffs: last training cutoff {self.last} must be before test; test = "end" '
                f"is {test}, the day after the data's last event: move last earlier"
            )
        return self.model_copy(update={"test": test})

    def training_days(self, label: Length, until: dt.date | None = None) -> list[dt.date]:
        """Training cutoffs from `first`, up to `last` (or `until`), each with its label window ending by `test`."""
        test = None if self.at_data_end else self.test
        if self.last is None and test is None and until is None:
            raise RuntimeError('features.cutoffs.test = "end" is known from the data only: resolve() the spec first')
        days, k = [], 0
        while True:
            day = self.spacing.after(self.first, k)
            if (
                (self.last is not None and day > self.last)
                or (until is not None and day > until)
                or (test is not None and label.after(day) > test)
            ):
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


class LabelSpec(SpecSection):
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


def window_length(window: Window) -> Length | None:
    """A window of months or days as a calendar length; None for all history."""
    days = window_days(window)
    if days is not None:
        return Length(n=days, unit="days")
    return None if window == ALL else Length(n=int(window), unit="months")


def check_windows(windows: Any, key: str, allow_all: bool) -> tuple[Window, ...]:
    """Windows as whole months (1 or "1m" -> 1), "<n>d" days, or "all" (kept last), in the order given."""
    forms = '1, "3m", "30d"' + (' or "all"' if allow_all else "")
    parsed: list[Window] = []
    for window in windows:
        if isinstance(window, str) and re.fullmatch(r"[1-9][0-9]*m", window):
            window = int(window[:-1])
        ok = (
            (isinstance(window, int) and not isinstance(window, bool) and window >= 1)
            or (window_days(window) is not None)
            or (allow_all and window == ALL)
        )
        if not ok:
            raise ValueError(
                f"{key}: {window!r} is not a window; give whole months >= 1 or days ({forms}); "
                "an empty window has no events"
            )
        parsed.append(window)
    dupes = sorted({str(w) for w in parsed if parsed.count(w) > 1})
    if dupes:
        raise ValueError(f"{key} repeats {dupes}")
    return (*(w for w in parsed if w != ALL), *([ALL] if ALL in parsed else []))
