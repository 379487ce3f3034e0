"""The memory guard: before a training table is read into memory or binned, estimate what training will hold
and stop with the estimate when it cannot fit, instead of being killed by the kernel halfway through a run.

The estimate follows what LightGBM allocates: the binned Dataset (half a byte, one or two per row and feature, by
the number of bins), the bins of the folds training at once (their training and validation rows: about the Dataset
again each) and their training state. Read whole, the folds are subsets beside the Dataset, and the table itself
and its float64 matrix are held too; read in batches, each fold bins its rows from the file once the whole Dataset
is gone (engine/streamed.py), so they take its place, and one decoded row group and one block of rows are held.
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
    """Bytes one training needs, by part, and what they were estimated from."""

    n_rows: int
    n_features: int
    max_bin: int
    fold_workers: int
    raw: int  # what holds raw values: the whole table and its float64 matrix, or one row group and one block
    streamed: bool

    @property
    def bytes_per_value(self) -> float:
        """LightGBM stores a bin in 4 bits up to 16 bins, a byte up to 256, two bytes beyond."""
        return 0.5 if self.max_bin < 16 else 1.0 if self.max_bin < 256 else 2.0

    @property
    def binned(self) -> int:
        return int(self.n_rows * self.n_features * self.bytes_per_value)

    @property
    def subsets(self) -> int:
        """Each fold training at once holds its training and validation rows' bins (about the Dataset again)."""
        return self.fold_workers * self.binned

    @property
    def state(self) -> int:
        """Each fold training at once: gradients and hessians (float32), scores (float64), row partitions and
        indices (int32), about 28 bytes a row."""
        return self.fold_workers * 28 * self.n_rows

    @property
    def total(self) -> int:
        held = self.subsets if self.streamed else self.binned + self.subsets
        return held + self.state + self.raw


def check_fits(need: MemoryEstimate, source: str) -> None:
    """DataError (exit 3) when training would need more memory than the limit; nothing is written before."""
    limit, why = memory_limit()
    if limit is None or need.total <= limit:
        return
    how = "one row group and one block at a time" if need.streamed else "the table and its float64 matrix"
    at_once = f"{need.fold_workers} fold{'s' if need.fold_workers > 1 else ''} training at once"
    folds = (
        f"then, in its place, the bins of the {at_once} {_size(need.subsets)}"
        if need.streamed
        else f"the subsets of the {at_once} {_size(need.subsets)}"
    )
    raise DataError(
        f"{source}: {need.n_rows:,} rows x {need.n_features} features will not fit in memory: training would hold "
        f"about {_size(need.total)}: the binned LightGBM Dataset {_size(need.binned)} ({need.bytes_per_value:g} "
        f"byte per value at max_bin {need.max_bin}), {folds}, their training state {_size(need.state)}, and the "
        f"raw values ({how}) {_size(need.raw)}; but {_size(limit)} is {why}. To fit: {'; '.join(_advice(need))}"
    )


def _advice(need: MemoryEstimate) -> list[str]:
    advice = []
    if not need.streamed and need.raw > need.binned:
        advice.append("read the table in batches (data.batch_rows = 100000; gbpipe train and importance)")
    if need.streamed and need.raw > need.binned:
        advice.append("write the parquet file with smaller row groups (e.g. 100,000 rows)")
    if need.fold_workers > 1:
        advice.append("train one fold at a time (model.fold_workers = 1)")
    if need.max_bin >= 16:
        advice.append("lower model.params.max_bin to 15 (half a byte per value)")
    return [*advice, "train on fewer columns (data.features) or fewer rows"]


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
        stat = Path("/sys/fs/cgroup/memory.stat").read_text()
    except (OSError, ValueError):
        return available
    if cap == "max":
        return available
    # memory.current counts the page cache, which the kernel drops before it kills: reading the table fills it
    cache = re.search(r"^inactive_file (\d+)", stat, re.MULTILINE)
    used -= int(cache.group(1)) if cache else 0
    return min(available, max(int(cap) - used, 0))


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def release_memory() -> None:
    """Hand memory freed by a pass over a table back to the system: Arrow's pool keeps freed buffers, and glibc's
    allocator keeps freed pages in its arenas, so without this a process holds its largest pass for good."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def map_large_allocations() -> None:
    """Have glibc give every allocation of 1 MB or more its own mapping, handed back to the system when freed.

    By default glibc raises that threshold to the largest block freed so far (up to 32 MB), after which the
    blocks of a table read in batches and LightGBM's per-feature bins land in its heap, where freed pages stay
    with the process: a run that bins a fold's rows from the file would then hold the peak of every pass."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 2**20)


_M_MMAP_THRESHOLD = -3  # malloc.h


@lru_cache(maxsize=1)
def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None
