"""`gbpipe drift`: are the new rows like the rows a run was trained on?

The run's training rows are rebuilt from its experiment (the data fingerprint must match the run's) and
compared with the new rows: the --input file converted with the run's schema as predict converts it, or,
without --input, the experiment's own test rows. Per feature: PSI and KL on the run's reference bins, missing
and unseen shares, a KS test on numeric columns (measures.py); as a whole: adversarial validation
(adversarial.py); for a [features] experiment, drift over its cutoffs (cutoffs.py). Results go into the run
through `add_files` (stage "drift"): drift/features.parquet, drift/summary.json, drift/cutoffs.parquet and
drift/plots/*.png; the training files are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config.sections import DriftSection
from pipeline.core.artifacts import json_bytes, parquet_bytes
from pipeline.core.errors import ArtifactError, ConfigError, DataError
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunReader, add_files
from pipeline.data.feature_bins import ReferenceBins
from pipeline.data.prepare import warn_conversion
from pipeline.data.read import read_table
from pipeline.data.schema import ConversionReport, flat_column_names, to_matrix
from pipeline.engine.run_data import RunData, load_run_data
from pipeline.engine.spec import available_cores

from .adversarial import AdversarialResult, adversarial_validation
from .cutoffs import cutoff_days, cutoff_drift
from .measures import KS_CORRECTION, SMOOTHING, feature_measures, flag, ks_tests
from .plots import ADVERSARIAL_PLOT, CUTOFFS_PLOT, PSI_PLOT, adversarial_plot, cutoffs_plot, psi_plot
from .reference import run_reference

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

STAGE = "drift"
FEATURES_FILE = "drift/features.parquet"
SUMMARY_FILE = "drift/summary.json"
CUTOFFS_FILE = "drift/cutoffs.parquet"
COLUMNS = [
    "feature",
    "kind",
    "psi",
    "kl",
    "ks_stat",
    "ks_p_adjusted",
    "missing_train",
    "missing_new",
    "unseen_new",
    "train_gain_share",
    "adversarial_gain_share",
    "adversarial_permutation",
    "flag",
]
TEST_ROWS = "test rows"
TOP_FEATURES = 10  # names in summary.json's top_features
MIN_ROWS_PER_FOLD = 2  # adversarial validation: rows of each side in every fold, at least


@dataclass(frozen=True)
class NewRows:
    """The rows compared with the training rows, as the run's model matrix."""

    X: np.ndarray
    unseen: dict[str, int]  # rows per column whose category the training rows never had
    source: str  # the input file's name, or "test rows"
    days: np.ndarray | None = None  # their cutoffs, for a [features] experiment's test rows


def run_drift(
    run_dir: Path,
    input_path: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: Progress = QUIET,
    replace_files: bool = False,
    cluster: Cluster | None = None,
) -> Path:
    """Compare a run's training rows with new rows and add the drift files to the run; returns the run folder. On a
    `cluster` the adversarial classifier's folds train as tasks there."""
    for item in overrides:
        if not item.startswith("drift."):
            raise ConfigError(
                f"--set {item!r}: only drift.* settings can change here; the rest of the experiment is fixed by the run"
            )
    _check_replace(RunReader(Path(run_dir)), None, replace_files)  # before the data is rebuilt
    data = load_run_data(run_dir, overrides, progress, stage="drift", models=False)
    settings = data.cfg.drift or DriftSection()
    new = new_rows(data, input_path)
    names = output_names(data)
    _check_replace(data.reader, names, replace_files)
    reference, reference_source = run_reference(data.reader, data.prep.schema, data.prep.X, settings)
    progress.say(f"drift: {len(data.prep.X)} training rows against {len(new.X)} {new.source}")
    adversarial = _adversarial(data, new, settings, progress, cluster)
    features = feature_table(data, reference, new, settings, adversarial)
    files = {FEATURES_FILE: parquet_bytes(features), PSI_PLOT: psi_plot(features, settings)}
    files[ADVERSARIAL_PLOT] = adversarial_plot(features, adversarial.auc)
    if CUTOFFS_FILE in names:
        cutoffs = over_cutoffs(data, new, reference, settings)
        files.update({CUTOFFS_FILE: parquet_bytes(cutoffs), CUTOFFS_PLOT: cutoffs_plot(cutoffs, settings)})
    files[SUMMARY_FILE] = json_bytes(summary_document(data, new, settings, features, adversarial, reference_source))
    out = add_files(data.reader.dir, STAGE, files, replace=replace_files)
    progress.say(f"drift written to {out / 'drift'}")
    return out


def new_rows(data: RunData, input_path: Path | None) -> NewRows:
    """The --input file (columns by name, converted as predict does), else the experiment's test rows."""
    if input_path is None:
        test = own_test_rows(data)
        if test is None:
            raise ConfigError(
                f"experiment {data.cfg.experiment.name!r} of run {data.reader.dir} has no test rows (no data.test, "
                "data.split_column, data.test_size or test cutoff) to compare with; pass --input FILE with the "
                "new rows"
            )
        return test
    path, report = Path(input_path), ConversionReport()
    if not path.is_file():
        raise DataError(f"--input file {path} not found; give the CSV or parquet file of the new rows")
    frame = flat_column_names(read_table(path), str(path))
    X = to_matrix(data.prep.schema, frame, str(path), report)
    warn_conversion(report, str(path))  # what predict would say of the same file
    return NewRows(X, report.unseen_categories, path.name)


def own_test_rows(data: RunData) -> NewRows | None:
    """The experiment's test rows converted again, for their unseen categories (None without test rows)."""
    prep, report = data.prep, ConversionReport()
    test = prep.tables.test
    if test is None:
        return None
    X = to_matrix(prep.schema, test, prep.tables.test_name, report)
    column = _cutoff_column(data)
    days = cutoff_days(test[column]) if column is not None and column in test.columns else None
    return NewRows(X, report.unseen_categories, TEST_ROWS, days)


def output_names(data: RunData) -> list[str]:
    """The files one computation writes (checked before computing, so a refusal costs nothing)."""
    names = [FEATURES_FILE, SUMMARY_FILE, PSI_PLOT, ADVERSARIAL_PLOT]
    if _cutoff_column(data) is not None:
        names += [CUTOFFS_FILE, CUTOFFS_PLOT]
    return names


def _cutoff_column(data: RunData) -> str | None:
    features = data.cfg.features
    if features is None or features.cutoff_column not in data.prep.tables.train.columns:
        return None
    return features.cutoff_column


def _adversarial(
    data: RunData, new: NewRows, settings: DriftSection, progress: Progress, cluster: Cluster | None
) -> AdversarialResult:
    least = MIN_ROWS_PER_FOLD * settings.n_splits
    for side, n in (("training", len(data.prep.X)), ("new", len(new.X))):
        if n < least:
            raise DataError(
                f"{new.source}: adversarial validation needs at least {least} {side} rows "
                f"({MIN_ROWS_PER_FOLD} per fold of drift.n_splits = {settings.n_splits}), got {n}; give more rows "
                "or lower drift.n_splits"
            )
    threads = min(data.cfg.model.num_threads or available_cores(), available_cores())
    result = adversarial_validation(data.prep.X, new.X, data.prep.schema, settings, threads, cluster)
    progress.say(
        f"adversarial validation: OOF AUC {result.auc:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}] on "
        f"{result.n_train} + {result.n_new} rows, {settings.n_splits} folds"
    )
    return result


def feature_table(
    data: RunData, reference: ReferenceBins, new: NewRows, settings: DriftSection, adversarial: AdversarialResult
) -> pd.DataFrame:
    """drift/features.parquet: one row per feature, the most drifting (PSI) first; the columns of COLUMNS."""
    schema = data.prep.schema
    table = feature_measures(reference, reference.counts(new.X, new.unseen))
    numeric = [j for j, c in enumerate(schema.columns) if schema.kinds[c] == "numeric"]
    table["ks_stat"], table["ks_p_adjusted"] = ks_tests(data.prep.X, new.X, numeric)
    table["train_gain_share"] = train_gain_shares(data.reader, list(schema.columns))
    table["adversarial_gain_share"] = adversarial.gain_share
    table["adversarial_permutation"] = adversarial.permutation
    table["flag"] = [flag(v, settings) for v in table["psi"]]
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)[COLUMNS]


def train_gain_shares(reader: RunReader, columns: list[str]) -> np.ndarray:
    """Each feature's share of the run's own gain importance (mean over its fold models)."""
    table = reader.read_parquet("importance.parquet")
    gain = table[(table["kind"] == "gain") & (table["fold"] == -1)].set_index("feature")["value"]
    gain = gain.reindex(columns).to_numpy(dtype="float64")
    total = np.nansum(gain)
    return gain / total if total > 0 else np.full(len(columns), np.nan)


def over_cutoffs(data: RunData, new: NewRows, reference: ReferenceBins, settings: DriftSection) -> pd.DataFrame:
    """drift/cutoffs.parquet: each training cutoff against the earlier ones, the test cutoff (the experiment's
    own test rows, whatever --input gave) against all training rows."""
    train_days = cutoff_days(data.prep.tables.train[_cutoff_column(data)])
    test = new if new.source == TEST_ROWS else own_test_rows(data)
    given = (test.X, test.days, test.unseen) if test is not None and test.days is not None else None
    return cutoff_drift(data.prep.X, train_days, data.prep.schema, settings, given, reference)


def summary_document(
    data: RunData,
    new: NewRows,
    settings: DriftSection,
    features: pd.DataFrame,
    adversarial: AdversarialResult,
    reference_source: str,
) -> dict[str, Any]:
    """drift/summary.json: what the report shows first."""
    return {
        "run": data.reader.dir.name,
        "experiment": data.cfg.experiment.name,
        "new_rows_source": new.source,
        "n_train": int(len(data.prep.X)),
        "n_new": int(len(new.X)),
        "thresholds": {"psi_moderate": settings.psi_moderate, "psi_major": settings.psi_major},
        "adversarial": {
            "auc": adversarial.auc,
            "ci_low": adversarial.ci_low,
            "ci_high": adversarial.ci_high,
            "n_splits": adversarial.n_splits,
            "sample_rows": settings.sample_rows,
            "rows_train": adversarial.n_train,
            "rows_new": adversarial.n_new,
            "share_train_like_new": adversarial.share_train_like_new,
        },
        "top_features": features["feature"].head(TOP_FEATURES).tolist(),
        "flagged": {level: int((features["flag"] == level).sum()) for level in ("moderate", "major")},
        "smoothing": SMOOTHING,
        "ks_correction": KS_CORRECTION,
        "n_bins": settings.n_bins,
        "reference": reference_source,
        "seed": settings.seed,
        "data_fingerprint": data.prep.data_fingerprint,
    }


def _check_replace(reader: RunReader, names: list[str] | None, replace_files: bool) -> None:
    """Refuse to compute again without --replace, and to leave files of an earlier computation stale."""
    existing = [n for n in reader.files if n.startswith(f"{STAGE}/")]
    if existing and not replace_files:
        raise ConfigError(
            f"{reader.dir} already has drift results ({existing[0]}, ...); pass --replace to compute them again, "
            "earlier results stay untouched otherwise"
        )
    stale = [n for n in existing if names is not None and n not in names]
    if stale and replace_files:
        raise ArtifactError(
            f"{reader.dir} has drift files that this computation would not rewrite ({stale}); they would be "
            "left stale. Compute drift on a fresh copy of the run"
        )
