"""The features stage inside an experiment: read the events, build or reuse the cached table.

The table is cached in `runs/<exp>/features/<fingerprint>/` (features.parquet, summary.json,
manifest.json with sha256), keyed by the spec, the label name and the event file's bytes, so a
changed spec or changed data gives a new folder and an unchanged one is read back, verified.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.build import HOLDOUT_WINDOW_LABEL, FeatureTable, build_features
from features.labels import label_dtype
from features.spec import FeaturesSection
from pipeline.config import Config
from pipeline.core.artifacts import json_bytes, parquet_bytes, sha256_file
from pipeline.core.errors import ArtifactError
from pipeline.core.progress import QUIET, Progress
from pipeline.core.run_folder import RunReader, publish_files

from .feature_cluster import build_on_cluster
from .parts import is_parquet_table, is_parted, parts_fingerprint, read_any
from .tables import Tables

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

FORMAT_VERSION = 4  # bump when the builder's output changes for the same spec and data
TABLE, SUMMARY = "features.parquet", "summary.json"


@dataclass(frozen=True)
class CachedFeatures:
    """The feature table of an experiment and the folder it is cached in."""

    table: FeatureTable
    folder: Path
    reused: bool


def feature_tables(cfg: Config, progress: Progress = QUIET) -> Tables:
    """`prepare.experiment_tables` for an experiment with [features]: train = training cutoffs, test = test cutoff."""
    cached = cached_features(cfg, progress)
    spec, table = cfg.features, cached.table
    name = f"features {cached.folder.name} ({spec.events})"
    cutoffs = table.summary["train_cutoffs"]
    return Tables(
        table.train,
        table.test,
        f"{name} [cutoffs {cutoffs[0]}..{cutoffs[-1]}]",
        f"{name} [cutoff {table.summary['test_cutoff']}]" if table.test is not None else None,
        summary=table.summary,
        holdout_window_labels=table.holdout_window_labels,
    )


def cached_features(cfg: Config, progress: Progress = QUIET, cluster: Cluster | None = None) -> CachedFeatures:
    """Read the cached table for this spec and data, or build it and cache it atomically. On a `cluster`, parquet
    events are built by entity on its workers (the same table); other events are read and built here."""
    spec = cfg.features
    events_path = Path(spec.events)
    key = fingerprint(spec, cfg.data.target, events_path)
    folder = Path(cfg.experiment.runs_dir) / cfg.experiment.name / "features" / key
    if folder.is_dir():
        table = read_cached(folder, spec)
        if table is not None:
            progress.say(f"features: reusing {folder}")
            return CachedFeatures(table, folder, reused=True)
    table = _build(cfg, events_path, progress, cluster)
    summary = {**table.summary, "fingerprint": key, "folder": str(folder)}
    table = FeatureTable(table.train, table.test, summary, table.holdout_window_labels)
    if not folder.exists():
        publish(folder, table, spec)
        progress.say(f"features: written to {folder}")
    return CachedFeatures(table, folder, reused=False)


def _build(cfg: Config, events_path: Path, progress: Progress, cluster: Cluster | None) -> FeatureTable:
    spec = cfg.features
    if cluster is not None and is_parquet_table(events_path):
        return build_on_cluster(cluster, events_path, spec, cfg.data.target, progress)
    if cluster is not None:
        progress.say(f"features: {events_path} is not parquet; the cluster builds parquet events, so it is built here")
    events = read_any(events_path, spec.csv_sep)
    return build_features(events, spec, cfg.data.target, str(events_path), progress)


def summary_lines(summary: dict, n_missing: int = 5) -> list[str]:
    """The summary as a terminal table: rows and label rate (or mean) per cutoff, the most missing features."""
    rates = summary.get("positive_rate_per_cutoff") or summary.get("label_mean_per_cutoff") or {}
    rate_name = "positive rate" if "positive_rate_per_cutoff" in summary else "label mean"
    window = summary.get("test_label_window") or {}
    lines = [f"{'cutoff':<12}{'role':<7}{'rows':>8}  {rate_name}"]
    for day, rows in summary["rows_per_cutoff"].items():
        role = "test" if day == summary.get("test_cutoff") else "train"
        rate = rates.get(day)
        shown = "unknown" if rate is None else (f"{rate:.2%}" if rate_name == "positive rate" else f"{rate:.4g}")
        if role == "test" and window.get("labels_known") and not window.get("complete"):
            shown += f" (label window {window['coverage']:.0%} covered: the data ends at {window['data_ends']})"
        lines.append(f"{day:<12}{role:<7}{rows:>8,}  {shown}")
    missing = sorted(summary["nan_share_per_feature"].items(), key=lambda kv: -kv[1])[:n_missing]
    if missing and missing[0][1] > 0:
        lines.append("most missing: " + ", ".join(f"{name} {share:.1%}" for name, share in missing if share > 0))
    return lines


def fingerprint(spec: FeaturesSection, target: str, events_path: Path) -> str:
    """sha256 of the spec, the label's name, the builder's format and the event file's content (or its parts')."""
    if is_parted(events_path):
        file_hash = parts_fingerprint(events_path)
    else:
        file_hash = sha256_file(events_path) if events_path.is_file() else "missing"
    text = json.dumps(
        {"spec": spec.model_dump(mode="json"), "target": target, "format": FORMAT_VERSION, "events": file_hash},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stacked(table: FeatureTable) -> pd.DataFrame:
    """Training and test rows in one frame; the labels over the holdout's short window ride along as a column
    (null at the test cutoff), split off again by `read_cached`."""
    frame = pd.concat([table.train, table.test], ignore_index=True) if table.test is not None else table.train
    if table.holdout_window_labels is not None:
        short = table.holdout_window_labels.reindex(range(len(frame))).astype("float64")
        frame = pd.concat([frame, short.rename(HOLDOUT_WINDOW_LABEL)], axis=1)
    return frame


def publish(folder: Path, table: FeatureTable, spec: FeaturesSection) -> None:
    """Publish the table and summary as one cache folder (a concurrent build of the same fingerprint
    simply loses the race; its result is identical)."""
    files = {TABLE: parquet_bytes(stacked(table)), SUMMARY: json_bytes(table.summary)}
    publish_files(folder, files, "features", {"stage": "features"}, shared=True)


def read_cached(folder: Path, spec: FeaturesSection) -> FeatureTable | None:
    """The cached table after checking every file's sha256; None (rebuild) when it does not verify."""
    try:
        reader = RunReader(folder, allow_version_mismatch=True)
        frame = pd.read_parquet(reader.path(TABLE))
        summary = json.loads(reader.path(SUMMARY).read_text())
    except (ArtifactError, OSError, ValueError) as exc:
        warnings.warn(
            f"cached features in {folder} cannot be used ({exc}); rebuilding them in memory. Delete that "
            "folder to cache the rebuilt table",
            stacklevel=2,
        )
        return None
    test_cutoff = summary.get("test_cutoff")
    short = frame.pop(HOLDOUT_WINDOW_LABEL) if HOLDOUT_WINDOW_LABEL in frame.columns else None
    if test_cutoff is None:
        return FeatureTable(frame, None, summary)
    is_test = (frame[spec.cutoff_column].dt.strftime("%Y-%m-%d") == test_cutoff).to_numpy()
    train = frame[~is_test].reset_index(drop=True)
    # Stacked with a scoring cutoff's null labels (or the test rows' null short labels), the file holds
    # the label columns as float.
    target, dtype = summary["label"]["column"], label_dtype(spec.label)
    if train[target].dtype != dtype:
        train[target] = train[target].astype(dtype)
    if short is not None:
        short = short[~is_test].reset_index(drop=True).astype(dtype).rename(target)
    return FeatureTable(train, frame[is_test].reset_index(drop=True), summary, short)
