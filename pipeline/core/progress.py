"""Progress lines on stderr (fold k/K, trial n/N, ETA; step n of a budgeted search with the time left); quiet
mode prints nothing."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    quiet: bool = False
    stream: object = None
    started: float = field(default_factory=time.perf_counter)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream or sys.stderr, flush=True)

    def step(self, label: str, done: int, total: int, detail: str = "") -> None:
        """One line for item `done` of `total`, with the ETA from the mean time per item so far."""
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (total - done) if done else float("nan")
        self.say(f"{label} {done}/{total}  {detail}  elapsed {elapsed:.1f}s  eta {eta:.1f}s".rstrip())

    def budget_step(self, n: int, detail: str, elapsed: float, left: float) -> None:
        """One line per step of a search under a time budget: what step n did, the time spent, the time left."""
        tail = f"  left {left:.1f}s" if math.isfinite(left) else ""
        self.say(f"step {n}: {detail}  elapsed {elapsed:.1f}s{tail}")

    def restart(self) -> None:
        self.started = time.perf_counter()


QUIET = Progress(quiet=True)
