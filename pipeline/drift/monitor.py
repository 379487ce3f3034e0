"""Predict's drift check: the rows `gbpipe predict` streams are counted in the run's reference bins chunk by
chunk (no second pass, no copy of the matrix), and at the end a warning names the features whose population
stability index reaches the run's [drift] threshold. The predictions do not depend on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.sections import DriftSection
from pipeline.core.run_folder import RunReader
from pipeline.data.schema import ConversionReport, FeatureSchema

from .measures import BinCounter
from .reference import run_settings, saved_reference

TOP_NAMED = 5  # features named in the warning, most drifting first


@dataclass(frozen=True)
class DriftCheck:
    """What the check found: rows counted, per-feature measures (psi, kl, missing and unseen shares)."""

    rows: int
    measures: pd.DataFrame
    threshold: float
    level: str

    @property
    def crossed(self) -> pd.DataFrame:
        """The features at or above the threshold, most drifting first."""
        part = self.measures[self.measures["psi"] >= self.threshold]
        return part.sort_values("psi", ascending=False, kind="stable")


class DriftMonitor:
    """Counts predicted rows in a run's reference bins; `check` and `warning` once every chunk is in."""

    def __init__(self, counter: BinCounter, settings: DriftSection, run_dir: Path):
        self.counter = counter
        self.settings = settings
        self.run_dir = run_dir

    @classmethod
    def for_run(cls, reader: RunReader, schema: FeatureSchema) -> DriftMonitor | None:
        """A monitor for a run that saved its reference and keeps the check on; None otherwise (older runs,
        ensembles, `drift.warn_on_predict = false`)."""
        reference = saved_reference(reader, schema)
        if reference is None:
            return None
        settings = run_settings(reader)
        return cls(BinCounter(reference), settings, reader.dir) if settings.warn_on_predict else None

    def emptied(self) -> DriftMonitor:
        """A monitor of the same run with no rows counted yet: a cluster task counts its part's rows in it, and the
        client merges its counts (BinCounter.merge)."""
        return DriftMonitor(BinCounter(self.counter.reference), self.settings, self.run_dir)

    def observe(self, X: np.ndarray, report: ConversionReport) -> None:
        """Count one chunk's matrix; its conversion report tells unseen categories from missing values."""
        self.counter.add(X, report.unseen_categories)

    def check(self) -> DriftCheck:
        level = self.settings.warn_level
        threshold = self.settings.psi_major if level == "major" else self.settings.psi_moderate
        return DriftCheck(self.counter.rows, self.counter.measures(), threshold, level)

    def warning(self, source: Path) -> str | None:
        """The warning text when a feature reaches the threshold on enough rows, else None."""
        if self.counter.rows < self.settings.min_predict_rows:
            return None
        check = self.check()
        crossed = check.crossed
        if crossed.empty:
            return None
        named = ", ".join(f"{row.feature} {row.psi:.3f}" for row in crossed.head(TOP_NAMED).itertuples())
        more = f" and {len(crossed) - TOP_NAMED} more" if len(crossed) > TOP_NAMED else ""
        return (
            f"{source}: {len(crossed)} of {len(check.measures)} features drift from the training rows at or above "
            f"the {check.level} population stability index {check.threshold} (drift.psi_{check.level}), on "
            f"{check.rows} rows: {named}{more}. The run's OOF score may not hold for these rows; "
            f"`gbpipe drift --run {self.run_dir} --input {source}` shows how they differ"
        )
