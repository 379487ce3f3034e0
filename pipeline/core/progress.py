"""Progress lines on stderr (fold k/K, trial n/N, ETA); quiet mode prints nothing."""

from __future__ import annotations

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

    def restart(self) -> None:
        self.started = time.perf_counter()


QUIET = Progress(quiet=True)
