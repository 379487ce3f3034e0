"""The plan's group-bys: one per (job, cutoff), except where several read the same events.

A job aggregates one span at every cutoff, over the slice of the time-sorted events the span covers
there. Different (job, cutoff) pairs can cover the very same slice: with monthly cutoffs, lag month
k at cutoff i is the one-month window at cutoff i - k + 1, and a trend's previous month or a
year-ago month is some other cutoff's month too; before the data starts, a long window and all
history cover the same rows. Such a slice is grouped once, with every aggregation its readers ask of
it, and each reader takes its columns from that one result. An aggregation of a slice does not
depend on who asked for it, so the values are those of separate group-bys.

Only slices read more than once are kept, and each only until its last reader has been built, so the
memory held is what the sharing saves in work.
"""

from __future__ import annotations

from collections import Counter

import polars as pl

from .aggregations import CUTOFF_INDEX, Job
from .events import Events
from .windows import Schedule, slice_rows

Rows = tuple[int, int]  # [lo, hi) of the time-sorted events


class GroupBys:
    """Each job's aggregations at every cutoff, stacked, built job by job (`frame`)."""

    def __init__(self, prepared: Events, jobs: list[Job], sched: Schedule, entity: str):
        self._events = prepared.frame.lazy()
        self._jobs = jobs
        self._entity = entity
        self._rows = [[slice_rows(prepared.sorted_ns, cutoff, job.span) for cutoff in sched.all] for job in jobs]
        readers = Counter(rows for job_rows in self._rows for rows in job_rows)
        self._readers_left = Counter({rows: n for rows, n in readers.items() if n > 1})
        self._columns: dict[Rows, dict[str, str]] = {}  # shared slice -> {aggregation key: its column there}
        self._aggregations: dict[Rows, list[pl.Expr]] = {}
        for job, job_rows in zip(jobs, self._rows):
            for rows in job_rows:
                if rows in self._readers_left:
                    self._ask(rows, job)
        self._results: dict[Rows, pl.DataFrame] = {}

    def _ask(self, rows: Rows, job: Job) -> None:
        columns = self._columns.setdefault(rows, {})
        for out in job.outputs:
            key = _key(out.expr)
            if key not in columns:
                columns[key] = f"__shared_{len(columns)}"
                self._aggregations.setdefault(rows, []).append(out.expr.alias(columns[key]))

    def frame(self, index: int) -> pl.LazyFrame:
        """Job `index`'s aggregations at every cutoff, with the cutoff's number in CUTOFF_INDEX."""
        job, job_rows = self._jobs[index], self._rows[index]
        self._compute_shared([rows for rows in job_rows if rows in self._readers_left])
        parts = []
        for cutoff_index, rows in enumerate(job_rows):
            if rows in self._readers_left:
                part = self._shared_part(rows, job)
            else:
                lo, hi = rows
                part = self._events.slice(lo, hi - lo).group_by(self._entity).agg([out.expr for out in job.outputs])
            parts.append(part.with_columns(pl.lit(cutoff_index, dtype=pl.Int32).alias(CUTOFF_INDEX)))
        return pl.concat(parts, how="vertical")

    def _compute_shared(self, wanted: list[Rows]) -> None:
        todo = sorted(set(wanted) - self._results.keys())
        frames = [
            self._events.slice(lo, hi - lo).group_by(self._entity).agg(self._aggregations[(lo, hi)]) for lo, hi in todo
        ]
        # The in-memory engine, as every other collect of the build (build.compute says why).
        self._results.update(zip(todo, pl.collect_all(frames, engine="in-memory")))

    def _shared_part(self, rows: Rows, job: Job) -> pl.LazyFrame:
        columns = self._columns[rows]
        part = (
            self._results[rows]
            .lazy()
            .select(pl.col(self._entity), *(pl.col(columns[_key(out.expr)]).alias(out.name) for out in job.outputs))
        )
        self._readers_left[rows] -= 1
        if self._readers_left[rows] == 0:
            del self._results[rows]  # the lazy part keeps it until this job is collected
        return part


def _key(expr: pl.Expr) -> str:
    """What an aggregation computes, whatever its output is called."""
    return str(expr.meta.undo_aliases())
