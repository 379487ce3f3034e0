"""How many cores this process may use: every thread budget (LightGBM's, fold workers, memory estimates) starts
here."""

from __future__ import annotations

import os


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def fold_worker_count(threads: int, wanted: int, n_folds: int, streamed: bool) -> int:
    """How many folds train at once within `threads` LightGBM threads; `wanted` 0 is auto: one per thread, or one
    for a table read in batches (too large to hold whole: each fold training holds its own subsets)."""
    return max(1, min(wanted or (1 if streamed else threads), threads, n_folds))
