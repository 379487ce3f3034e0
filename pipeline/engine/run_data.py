"""A published training run with its experiment's data rebuilt: what the stages that study a finished run
(importance, drift) start from. The data must be the data the run saw (its fingerprint, feature columns and
folds are checked), so every fold model meets the rows it was trained or validated on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Config, load_config
from pipeline.core.errors import ArtifactError, DataError
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunReader
from pipeline.data.folds import Folds
from pipeline.data.prepare import Prepared, prepare

from .fitted import FittedRun, load_fold_models


@dataclass(frozen=True)
class RunData:
    """A run's fold models (None when not asked for) with the experiment data rebuilt and checked against the run."""

    cfg: Config
    prep: Prepared
    fitted: FittedRun | None
    reader: RunReader
    params: dict[str, Any]


def load_run_data(
    run_dir: Path,
    overrides: list[str] | tuple[str, ...] = (),
    progress: Progress = QUIET,
    stage: str = "importance",
    models: bool = True,
    stream: bool = False,
) -> RunData:
    """Open a run, rebuild its experiment's data and check that it is the data the run saw; with `models`, also
    read its fold models (drift studies the rows only and leaves them unread). With `stream`, a large table is
    read as `gbpipe train` read it, in batches (data.batch_rows); the fingerprint is the same either way."""
    reader = RunReader(Path(run_dir))
    if not any(n.startswith("models/") and n.endswith(".txt") for n in reader.files):
        raise ArtifactError(
            f"{reader.dir} has no fold models (models/fold_<k>.txt in its manifest); {stage} "
            "needs a training run made by `gbpipe train`"
        )
    cfg = load_config(reader.path("config.toml"), overrides)
    prep = prepare(cfg, progress, stream=stream)
    saved_fp = reader.manifest.get("data_fingerprint")
    if saved_fp != prep.data_fingerprint:
        raise DataError(
            f"the data of experiment {cfg.experiment.name!r} changed since run {reader.dir} was trained "
            f"(fingerprint {str(saved_fp)[:12]} in its manifest, {prep.data_fingerprint[:12]} now); "
            "retrain the run on the current data, or restore the data it was trained on"
        )
    schema = reader.read_json("schema.json")
    if list(schema["features"]["columns"]) != list(prep.schema.columns):
        raise ArtifactError(
            f"{reader.dir}/schema.json lists other feature columns than the experiment now gives; retrain the run"
        )
    _check_folds(reader, prep.folds)
    if not models:
        return RunData(cfg, prep, None, reader, dict(schema.get("params", {})))
    fitted = load_fold_models(reader)
    if len(fitted.boosters) != len(prep.folds.pairs()):
        raise ArtifactError(
            f"{reader.dir} has {len(fitted.boosters)} fold models but the experiment has "
            f"{len(prep.folds.pairs())} folds; retrain the run"
        )
    return RunData(cfg, prep, fitted, reader, dict(schema.get("params", {})))


def _check_folds(reader: RunReader, folds: Folds) -> None:
    saved = reader.read_parquet("folds.parquet")
    saved_folds = Folds.from_frame(saved, folds.splitter)
    if saved_folds.assignments.shape != folds.assignments.shape or not np.array_equal(
        saved_folds.assignments, folds.assignments
    ):
        raise ArtifactError(
            f"{reader.dir}/folds.parquet differs from the experiment's folds now; the validation "
            "rows of each model cannot be rebuilt. Retrain the run"
        )
