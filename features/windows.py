"""Cutoffs and time windows: which events each (entity, cutoff) row may see.

A window is a half-open span of whole calendar months relative to a cutoff c:
`Span(start=3, end=0)` covers [c - 3 months, c), the last three months before c; a lag month k is
`Span(k, k - 1)`; the previous window of a trend is `Span(2w, w)`; the same window a year earlier is
`Span(12 + w, 12)`, and the label's month a year earlier `Span(12, 11)`; all history is `Span(None, 0)`;
the label window is `Span(0, -months)`, i.e. [c, c + months) (or days: `label_span`). A window of days is the same with
`unit="days"`: `Span(30, 0, "days")` covers [c - 30 days, c), calendar days in the time column's
zone. Feature spans always end at or before c, so a feature row never sees an event dated on or
after its cutoff.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.core.errors import ConfigError, DataError

from .names import Window
from .timing import YEAR, CutoffSpec, Length, window_length


@dataclass(frozen=True)
class Span:
    """[cutoff - start units, cutoff - end units); start None means from the first event."""

    start: int | None
    end: int
    unit: Literal["months", "days"] = "months"

    @classmethod
    def window(cls, window: Window) -> Span:
        """The span of a window of months, of days ("30d"), or of all history."""
        length = window_length(window)
        return cls(None, 0) if length is None else cls(length.n, 0, length.unit)

    def before(self) -> Span:
        """The span of the same length that ends where this one starts (a trend's previous window)."""
        return Span(2 * self.start - self.end, self.start, self.unit)

    def year_earlier(self) -> Span:
        """The same span one year earlier (YEAR: 12 months, or 52 weeks for days). A span that reaches past
        the cutoff (a label window) must end at or before the cutoff once shifted, or it is refused."""
        shift = YEAR[self.unit]
        if self.start is None or self.end + shift < 0:
            raise ConfigError(f"{self} one year earlier would not end by the cutoff: it cannot be a feature")
        return Span(self.start + shift, self.end + shift, self.unit)


@dataclass(frozen=True)
class Schedule:
    """The training cutoffs and the optional test cutoff, as timestamps in the time column's zone."""

    train: tuple[pd.Timestamp, ...]
    test: pd.Timestamp | None

    @property
    def all(self) -> tuple[pd.Timestamp, ...]:
        return self.train + ((self.test,) if self.test is not None else ())


def label_span(label: Length) -> Span:
    """The label window [cutoff, cutoff + label) as a span."""
    return Span(0, -label.n, label.unit)


def schedule(spec: CutoffSpec, label: Length, tz: str | None) -> Schedule:
    """Training cutoffs every `every_months` (or `every_days`) from `first`; each one's label window must end by
    the test cutoff, so no training label is computed from events the test cutoff may not see."""
    cutoffs = [_stamp(day, tz) for day in spec.training_days(label)]
    if spec.last is not None and spec.test is not None and label.after(spec.last) > spec.test:
        raise ConfigError(
            f"features.cutoffs.last {spec.last}: its {label.words} label window ends after the "
            f"test cutoff {spec.test}, so its labels would use events the test rows must not see; "
            "move last earlier or test later"
        )
    if not cutoffs:
        raise ConfigError(
            f"features.cutoffs: no training cutoff from {spec.first} whose {label.words} label "
            f"window ends by the test cutoff {spec.test}; move first earlier"
        )
    return Schedule(tuple(cutoffs), _stamp(spec.test, tz) if spec.test is not None else None)


def offset(length: Length) -> pd.DateOffset:
    """The length for timestamps: calendar arithmetic in the cutoffs' zone (a day stays midnight to midnight
    across DST), the same as `Length.after` on dates."""
    return pd.DateOffset(**{length.unit: length.n})


def _stamp(day: dt.date, tz: str | None) -> pd.Timestamp:
    stamp = pd.Timestamp(day)
    return stamp.tz_localize(tz) if tz else stamp


def bounds(cutoff: pd.Timestamp, span: Span) -> tuple[int | None, int]:
    """The span's [low, high) as int64 nanoseconds (low None: no lower bound)."""
    low = None if span.start is None else _shift(cutoff, -span.start, span.unit)
    return low, _shift(cutoff, -span.end, span.unit)


def _shift(cutoff: pd.Timestamp, n: int, unit: str) -> int:
    # DateOffset counts calendar days, so a day window keeps its local midnights across a DST change.
    return (cutoff + pd.DateOffset(**{unit: n})).as_unit("ns").value


# How close to the data's end a window may stop and still count as complete: a training label window
# must end at most this long after the data's last event (and at most a tenth of the window), and a
# scoring cutoff may lie at most this long after it. A label window cut short by the data's end counts
# fewer sales than a full one, so its labels lean to 0; history cut short reads as inactivity. Not zero:
# the last days of a complete window may simply have no event (a quiet weekend).
DATA_END_SLACK = pd.Timedelta(days=3)


def label_coverage(cutoff: pd.Timestamp, last_ns: int, label: Length) -> float:
    """The share of the cutoff's label window that lies before the data's last event."""
    start, end = bounds(cutoff, label_span(label))
    return float(min(1.0, max(0.0, (last_ns - start) / (end - start))))


def label_window_complete(cutoff: pd.Timestamp, last_ns: int, label: Length) -> bool:
    """Whether the data reaches (within the slack) the end of the cutoff's label window."""
    start, end = bounds(cutoff, label_span(label))
    return end - last_ns <= min(DATA_END_SLACK.value, (end - start) // 10)


def labels_known(cutoff: pd.Timestamp, last_ns: int) -> bool:
    """Whether any of the cutoff's label window lies in the data; a test cutoff after the data's last event
    is a scoring cutoff: its rows get predictions, their labels are unknown."""
    return cutoff.as_unit("ns").value <= last_ns


def check_range(sched: Schedule, first_ns: int, last_ns: int, label: Length, tz: str | None) -> None:
    """Every cutoff must have some history before it; a training cutoff's label window must be complete
    (`label_window_complete`); a test cutoff after the data's end (a scoring cutoff) must follow it closely."""
    first, last = as_stamp(first_ns, tz), as_stamp(last_ns, tz)
    for cutoff in sched.all:
        if cutoff.as_unit("ns").value <= first_ns:
            raise DataError(
                f"cutoff {cutoff.date()} is outside the data's range ({first} .. {last}): no event is "
                "dated before it, so no entity is eligible; move features.cutoffs.first later"
            )
    if sched.test is not None and sched.test.as_unit("ns").value - last_ns > DATA_END_SLACK.value:
        latest = (last + DATA_END_SLACK).date()
        raise DataError(
            f"test cutoff {sched.test.date()} is {(sched.test - last).days} days after the data's last "
            f"event ({last}): no event of that gap is in the data, so every feature would read it as "
            f"inactivity; a scoring cutoff may follow the data's end by at most {DATA_END_SLACK.days} "
            f"days: set features.cutoffs.test to {latest} or earlier, or add the missing events"
        )
    for cutoff in sched.train:
        if not labels_known(cutoff, last_ns):
            raise DataError(
                f"training cutoff {cutoff.date()} is outside the data's range ({first} .. {last}): its "
                f"{label.words} label window holds no event, so its labels are unknown; "
                "move features.cutoffs.last (or test) earlier"
            )
        if not label_window_complete(cutoff, last_ns, label):
            covered = label_coverage(cutoff, last_ns, label)
            raise DataError(
                f"training cutoff {cutoff.date()}: the data ends at {last}, {covered:.0%} of the way "
                f"through its {label.words} label window, so its labels would count only part "
                f"of the window and lean to 0; set features.cutoffs.last (or test) earlier, so every "
                f"training label window ends by {last.date()}"
            )


def as_stamp(ns: int, tz: str | None) -> pd.Timestamp:
    stamp = pd.Timestamp(np.int64(ns), unit="ns")
    return stamp.tz_localize("UTC").tz_convert(tz) if tz else stamp


def slice_rows(sorted_ns: np.ndarray, cutoff: pd.Timestamp, span: Span) -> tuple[int, int]:
    """Row range [lo, hi) of the time-sorted events that fall inside the span."""
    low, high = bounds(cutoff, span)
    lo = 0 if low is None else int(np.searchsorted(sorted_ns, low, side="left"))
    return lo, int(np.searchsorted(sorted_ns, high, side="left"))
