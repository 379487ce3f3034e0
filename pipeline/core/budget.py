"""Time budgets: the one rule every stage with a budget follows (`auto --time-budget`, `ensemble --time-budget`,
`tune --timeout`).

A step starts only when the estimate of its duration, made from the steps that already ran, fits the time
left; a step that was started on a low estimate and runs long may be stopped between two of its parts (folds)
as soon as its own pace shows it cannot end in time (`Clock.pace`). Times are wall-clock seconds
(time.time(), so worker processes of one study share the deadline).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace

from .errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_RULE = "a positive number of seconds, or a number followed by s, m or h (e.g. 90, 90s, 10m, 1.5h)"


def parse_duration(text: str, key: str = "--time-budget") -> float:
    """Seconds from `90`, `90s`, `10m` or `1h`; ConfigError naming `key`, the rule and the value."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    seconds = float(match[1]) * _UNIT[match[2]] if match else math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key} {text!r}: must be {DURATION_RULE}")
    return seconds


class TimeUp(Exception):
    """A running step stopped because, at its pace so far, it would end past the deadline."""


@dataclass(frozen=True)
class Clock:
    """When the budget started and when everything must have ended (None: no time budget)."""

    started: float
    deadline: float | None = None

    @classmethod
    def start(cls, seconds: float | None = None, started: float | None = None) -> Clock:
        now = time.time() if started is None else started
        return cls(now, None if seconds is None else now + seconds)

    @property
    def budget(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.started

    def elapsed(self) -> float:
        return time.time() - self.started

    def left(self) -> float:
        """Seconds until the deadline (never negative); infinite without a budget."""
        return math.inf if self.deadline is None else max(0.0, self.deadline - time.time())

    def expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def fits(self, estimate: float | None) -> bool:
        """Whether a step estimated to take `estimate` seconds ends in time. Without an estimate (nothing
        comparable has run yet) only an expired clock says no: the first step must be allowed to teach the rest."""
        if self.deadline is None:
            return True
        if estimate is None:
            return not self.expired()
        return estimate <= self.left()

    def until(self, seconds_before: float) -> Clock:
        """The same clock with its deadline `seconds_before` earlier: time kept back for what must follow."""
        if self.deadline is None:
            return self
        return replace(self, deadline=self.deadline - max(0.0, seconds_before))

    def capped(self, deadline: float | None) -> Clock:
        """The same clock ending at `deadline` when that comes first."""
        if deadline is None or (self.deadline is not None and self.deadline <= deadline):
            return self
        return replace(self, deadline=deadline)

    def pace(self, what: str, started: float, done: int, total: int, parts: str = "folds") -> None:
        """Raise TimeUp when a step that began at `started` (time.time()) and finished `done` of its `total`
        parts would, at the same pace, end past the deadline."""
        if self.deadline is None or done <= 0 or done >= total:
            return
        spent = time.time() - started
        needed = spent / done * (total - done)
        if needed > self.left():
            raise TimeUp(
                f"{what} stopped after {done} of {total} {parts}: at {spent / done:.1f}s each, the rest needs "
                f"{needed:.1f}s and {self.left():.1f}s are left"
            )
