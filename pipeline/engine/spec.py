"""What one K-fold run trains with: LightGBM's parameters resolved from the config, and the spec
every fold of the engine reads (task, metric, rounds, early stopping, features, thread budget)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.config.lightgbm_params import task_params
from pipeline.core.artifacts import library_versions
from pipeline.core.cores import available_cores

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster
    from pipeline.data.prepare import Prepared


@dataclass(frozen=True)
class TrainSpec:
    """Everything the engine needs to train one fold, resolved from the config."""

    task: str
    metric: str
    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int | None
    early_stopping: str = "fold"
    inner_valid_fraction: float = 0.1
    num_class: int = 1
    feature_names: tuple[str, ...] = ()
    categorical: tuple[int, ...] = ()
    seed: int = 42
    fold_workers: int = 1  # folds training at once: 1 one after another, 0 auto (see fold_workers)
    deadline: float | None = None  # time.time() past which a fold stops with TimeUp: a time budget's hard stop
    # Where folds train: None in this process, else as tasks on this Dask cluster (the same folds, byte for byte).
    cluster: Cluster | None = field(default=None, compare=False, repr=False)


def resolve_params(
    task: str, metric: str, params: dict[str, Any], num_class: int, seed: int, num_threads: int
) -> dict[str, Any]:
    """LightGBM parameters: defaults, then the user's, then what the task fixes, on at most the cores we have."""
    resolved = task_params(task, metric, params, num_class, seed)
    resolved["num_threads"] = min(num_threads or available_cores(), available_cores())
    return resolved


def train_spec(cfg: Config, prep: Prepared, params: dict[str, Any] | None = None) -> TrainSpec:
    """The engine's spec from the config (and optional tuned params that override it)."""
    merged = {**cfg.model.params, **(params or {})}
    num_class = prep.labels.n_classes if cfg.data.task == "multiclass" else 1
    return TrainSpec(
        task=cfg.data.task,
        metric=cfg.metric,
        params=resolve_params(cfg.data.task, cfg.metric, merged, num_class, cfg.cv.seed, cfg.model.num_threads),
        num_boost_round=cfg.model.num_boost_round,
        early_stopping_rounds=cfg.model.early_stopping_rounds,
        early_stopping=cfg.model.early_stopping,
        inner_valid_fraction=cfg.model.inner_valid_fraction,
        num_class=num_class,
        feature_names=tuple(prep.schema.model_names),
        categorical=tuple(prep.schema.categorical_indices),
        seed=cfg.cv.seed,
        fold_workers=cfg.model.fold_workers,
    )


# Settings that change how a run is carried out, never what it predicts: threads give the same trees
# (deterministic, col-wise), fold workers the same folds, and a deadline that strikes leaves no result. A cluster
# trains the same folds too, except across its workers (a table read in batches): `parallel` below says so.
_NOT_IN_MODEL = ("fold_workers", "deadline", "cluster")


def rows_across_workers(spec: TrainSpec, X: object) -> bool:
    """Whether each fold trains across a cluster's workers (lightgbm.dask): a table read in batches, on a cluster.
    Those models differ from in-process ones (another learner, another best-iteration rule)."""
    from pipeline.data.stream import StreamedMatrix

    return spec.cluster is not None and isinstance(X, StreamedMatrix)


def model_key(spec: TrainSpec, prep: Prepared) -> str:
    """sha256 over everything that determines a K-fold LightGBM run's models and predictions: the spec, the
    data, the fold ids, the schema, the labels and the libraries. Two runs with one key predict alike, so a
    stage that needs this model (an ensemble member) takes it from a training run that has it."""
    settings = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _NOT_IN_MODEL}
    settings["params"] = {k: v for k, v in spec.params.items() if k != "num_threads"}
    doc = {"spec": settings, **data_identity(prep, ("gbpipe", "lightgbm", "numpy"))}
    if rows_across_workers(spec, prep.X):
        doc["parallel"] = "rows"  # other models than in-process: only such runs share a key
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def data_identity(prep: Prepared, libraries: tuple[str, ...]) -> dict[str, Any]:
    """What a model's key holds of the experiment's data: its fingerprint, fold ids, schema and labels, and the
    major.minor versions of the `libraries` that shape its predictions."""
    versions = library_versions()
    return {
        "data": prep.data_fingerprint,
        "folds": prep.folds.digest(),
        "schema": prep.schema.to_dict(),
        "labels": prep.labels.to_dict(),
        "versions": {k: ".".join(versions[k].split(".")[:2]) for k in libraries},
    }
