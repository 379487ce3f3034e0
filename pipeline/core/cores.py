"""How many cores this process may use: every thread budget (LightGBM's, fold workers, memory estimates) starts
here."""

from __future__ import annotations

import os


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
