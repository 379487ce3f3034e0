"""The data's end, decided robustly: one event with a mistyped or placeholder date (2099-01-01) must not move it.

The data's end decides whether the test cutoff's label window is complete (the holdout caveat), whether the
training label windows are (`check_range`), and the date of `features.cutoffs.test = "end"`. Taken as the last
event, one stray late event would silently make a cut-short December look complete, or put "end" in 2099.

The rule. With a dated test cutoff (or only `last`), the horizon is the end of the last cutoff's label window:
no feature or label may use an event on or after it, so those events are dropped. The data's end is the last
event before the horizon, carried on past it through the events that follow without a long gap (the data
simply goes on; a later holdout's window is then complete); events after a gap longer than the limit below
are strays: warned about and ignored. With test = "end" there is no horizon to stop at, so a stray tail is
refused: at most 1% of the events, after a gap longer than 31 days, than the label window and than 10 times
the usual spacing of the data's event days. The same tail before a dated horizon is refused too: it would
hide that the data ends long before the test cutoff.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.progress import Progress

from .aggregations import NS_PER_DAY
from .events import Events
from .spec import FeaturesSection
from .timing import Length
from .windows import as_stamp

# A stray tail holds at most 1% of the events, after a gap longer than each of: 31 days (monthly data's ordinary
# gap), the label window (a pause within one window is that window's business) and 10 times the median gap
# between event days (weekly data may pause for weeks). Set wide so real data never trips it: Online Retail's
# longest gap is its 12-day Christmas break, and a 2099 line is 88 years off.
TAIL_SHARE = 0.01
MIN_GAP_DAYS = 31
SPACING_TIMES = 10


@dataclass(frozen=True)
class Stretch:
    """Some time-sorted events: how many, their first and last dates, and how many entities they hold."""

    count: int
    first: pd.Timestamp
    last: pd.Timestamp
    entities: int

    @classmethod
    def of(cls, events: Events, entity: str, lo: int, hi: int) -> Stretch:
        return cls(
            hi - lo,
            as_stamp(int(events.sorted_ns[lo]), events.tz),
            as_stamp(int(events.sorted_ns[hi - 1]), events.tz),
            int(events.frame[entity].slice(lo, hi - lo).n_unique()),
        )

    def words(self, entity: str) -> str:
        dates = str(self.first) if self.first == self.last else f"{self.first} .. {self.last}"
        return f"{_counted(self.count, 'event')} of {_counted(self.entities, f'{entity} value')}, dated {dates}"

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.count, "first": str(self.first), "last": str(self.last), "entities": self.entities}


@dataclass(frozen=True)
class LateEvents:
    """The events on or after the horizon, left out: `after` (all of them) and `stray` (those after a long gap)."""

    horizon: pd.Timestamp
    after: Stretch
    stray: Stretch | None
    end: pd.Timestamp

    def summary(self) -> dict[str, Any]:
        stray = {"stray": self.stray.as_dict()} if self.stray is not None else {}
        return {"horizon": str(self.horizon), **self.after.as_dict(), **stray}


@dataclass(frozen=True)
class DataEnd:
    """The events the experiment may use, the data's end (int64 ns, as `Events.sorted_ns`) and what was left out."""

    events: Events
    end_ns: int
    late: LateEvents | None = None


def decide_end(prepared: Events, spec: FeaturesSection, source: str) -> DataEnd:
    """The data's end by the module's rule; DataError for a stray tail the horizon does not cut off."""
    sorted_ns, label = prepared.sorted_ns, spec.label.window
    limit = straggler_gap(sorted_ns, label)
    horizon = horizon_ns(spec, prepared.tz)
    n_kept = len(sorted_ns) if horizon is None else int(np.searchsorted(sorted_ns, horizon, side="left"))
    if n_kept == 0:  # every event is after the horizon: check_range says no cutoff has history
        return DataEnd(prepared, prepared.last_ns)
    kept = prepared if n_kept == len(sorted_ns) else trimmed(prepared, n_kept)
    refuse_stragglers(kept, spec, source, limit)
    if kept is prepared:
        return DataEnd(prepared, prepared.last_ns)
    # The run of events from the last kept one on, while no gap exceeds the limit: the data going on.
    big = np.flatnonzero(np.diff(sorted_ns[n_kept - 1 :]) > limit)
    n_on = int(big[0]) if big.size else len(sorted_ns) - n_kept
    end_ns = int(sorted_ns[n_kept - 1 + n_on])
    stray = Stretch.of(prepared, spec.entity, n_kept + n_on, len(sorted_ns)) if big.size else None
    after = Stretch.of(prepared, spec.entity, n_kept, len(sorted_ns))
    late = LateEvents(as_stamp(horizon, prepared.tz), after, stray, as_stamp(end_ns, prepared.tz))
    return DataEnd(kept, end_ns, late)


def trimmed(prepared: Events, n: int) -> Events:
    """The first n events (zero-copy slices)."""
    return replace(prepared, frame=prepared.frame.slice(0, n), sorted_ns=prepared.sorted_ns[:n])


def horizon_ns(spec: FeaturesSection, tz: str | None) -> int | None:
    """The end of the last cutoff's label window (the test cutoff's, else `last`'s); None for test = "end"."""
    cutoffs = spec.cutoffs
    if cutoffs.at_data_end:
        return None
    last = cutoffs.test if cutoffs.test is not None else cutoffs.last
    stamp = pd.Timestamp(spec.label.window.after(last))
    return (stamp.tz_localize(tz) if tz else stamp).as_unit("ns").value


def straggler_gap(sorted_ns: np.ndarray, label: Length) -> int:
    """The gap (ns) a stray tail follows: longer than 31 days, than the label window (a month counts 31 days)
    and than 10 times the median gap between consecutive event days (1 day for daily activity)."""
    days = sorted_ns // NS_PER_DAY
    days = days[np.r_[True, days[1:] != days[:-1]]]
    spacing = float(np.median(np.diff(days))) if len(days) > 1 else 1.0
    label_days = label.n * (31 if label.unit == "months" else 1)
    return int(max(MIN_GAP_DAYS, label_days, SPACING_TIMES * spacing) * NS_PER_DAY)


def straggler_start(sorted_ns: np.ndarray, limit: int) -> int | None:
    """Where a stray tail starts: the first gap longer than `limit` among the last 1% of the events."""
    n = len(sorted_ns)
    k = int(n * TAIL_SHARE)
    if k == 0:  # a table this small has no "usual" to stray from
        return None
    big = np.flatnonzero(np.diff(sorted_ns[n - k - 1 :]) > limit)
    return n - k + int(big[0]) if big.size else None


def refuse_stragglers(events: Events, spec: FeaturesSection, source: str, limit: int) -> None:
    """DataError naming the stray tail, if the events end with one."""
    start = straggler_start(events.sorted_ns, limit)
    if start is None:
        return
    tail = Stretch.of(events, spec.entity, start, len(events.sorted_ns))
    before = as_stamp(int(events.sorted_ns[start - 1]), events.tz)
    if spec.cutoffs.at_data_end:
        fix = (
            f'or give features.cutoffs.test a date instead of "end" ({(before + pd.Timedelta(days=1)).date()} is '
            "the day after the other events), so events after its label window are ignored"
        )
    else:
        fix = f"and move the cutoffs earlier to match: without them the data ends at {before}"
    raise DataError(
        f"event table {source} ends with {tail.words(spec.entity)}, {(tail.first - before).days} days after "
        f"the event before them ({before}): a tail of at most {TAIL_SHARE:.0%} of the events after a gap longer than "
        f"{limit // NS_PER_DAY} days marks stray late events (mistyped or placeholder dates), not the data's end, "
        f"which they would move to {tail.last.date()}; drop or correct those lines, {fix}"
    )


def report_late(late: LateEvents | None, entity: str, source: str, progress: Progress) -> None:
    """Warn of stray late events (a long gap after the data); a note for data that just goes on past the horizon."""
    if late is None:
        return
    if late.stray is not None:
        warnings.warn(
            f"event table {source} holds {late.stray.words(entity)}: after {late.horizon}, the end of the last "
            f"cutoff's label window, and {(late.stray.first - late.end).days} days after the data's other events; "
            f"no feature or label may use them, so they are ignored and the data's end stays {late.end}; if their "
            "dates are mistyped, correct them",
            stacklevel=3,
        )
    n_on = late.after.count - (late.stray.count if late.stray is not None else 0)
    if n_on:
        progress.say(
            f"features: {n_on:,} events from {late.horizon.date()} on, after the last cutoff's label window, "
            "are not used"
        )


def _counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
