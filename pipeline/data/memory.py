"""The memory guard: before a training table is read into memory or binned, estimate what training will hold
and stop with the estimate when it cannot fit, instead of being killed by the kernel halfway through a run.

The estimate follows what LightGBM allocates: the binned Dataset (one byte per row and feature up to 256 bins,
two beyond) plus its fold subsets (the training part and the validation part: about the Dataset again); the
whole-table path adds the table itself and its float64 matrix, the streamed path one block of rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.core.errors import ConfigError, DataError

LIMIT_ENV = "GBPIPE_MEMORY_LIMIT"  # e.g. 8G or 512M: lowers the limit below the memory available
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training needs, by part."""

    binned: int  # the binned LightGBM Dataset
    subsets: int  # the fold subsets LightGBM copies out of it
    raw: int  # what holds raw values: the whole table and its float64 matrix, or one streamed block

    @property
    def total(self) -> int:
        return self.binned + self.subsets + self.raw


def estimate(n_rows: int, n_features: int, max_bin: int, raw_bytes: int) -> MemoryEstimate:
    per_value = 1 if max_bin <= 256 else 2
    binned = n_rows * n_features * per_value
    return MemoryEstimate(binned, binned, raw_bytes)


def check_fits(need: MemoryEstimate, n_rows: int, n_features: int, max_bin: int, source: str, streamed: bool) -> None:
    """DataError (exit 3) when training would need more memory than the limit; nothing is written before."""
    limit, why = memory_limit()
    if limit is None or need.total <= limit:
        return
    how = "read in batches" if streamed else "read whole (the table and its float64 matrix)"
    raise DataError(
        f"{source}: {n_rows:,} rows x {n_features} features will not fit in memory: the binned LightGBM Dataset "
        f"takes about {_gb(need.binned)} (rows x features x {1 if max_bin <= 256 else 2} byte per value at "
        f"max_bin {max_bin}), its fold subsets {_gb(need.subsets)}, the raw values {how} {_gb(need.raw)}: "
        f"{_gb(need.total)} in all, but {_gb(limit)} is {why}. Lower model.params.max_bin (e.g. 63), train on "
        "fewer columns (data.features), read the table in batches (data.batch_rows), or train on a Dask "
        "cluster (--cluster)"
    )


def memory_limit() -> tuple[int | None, str]:
    """The bytes training may use and where the figure comes from; None when unknown (no guard)."""
    available = _available()
    text = os.environ.get(LIMIT_ENV)
    if text:
        limit = parse_size(text, LIMIT_ENV)
        if available is None or limit < available:
            return limit, f"the limit {LIMIT_ENV}={text}"
    if available is None:
        return None, ""
    return available, "available (MemAvailable, or the cgroup's memory.max less what it uses)"


def parse_size(text: str, key: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{key}={text!r} is not a size; write bytes or a number with K, M, G or T, e.g. 8G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _available() -> int | None:
    """MemAvailable, lowered to what this process's cgroup may still take (containers), on Linux."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    if not found:
        return None
    available = int(found.group(1)) * 1024
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return available
    return available if cap == "max" else min(available, int(cap) - used)


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def release_memory() -> None:
    """Hand memory freed by a pass over a table back to the system: Arrow's pool keeps freed buffers, and glibc's
    allocator keeps freed pages in its arenas, so without this a process holds its largest pass for good."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None
