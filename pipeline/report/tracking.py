"""Optional MLflow logging of a finished run (`gbpipe report --run DIR --mlflow FOLDER`).

The tracking folder is local: FOLDER/mlflow.db (MLflow's SQLite backend; its plain-file backend is
in maintenance mode and refused by MLflow 3) and FOLDER/artifacts/. Needs the `mlflow` extra
(`pip install 'gbpipe[mlflow]'`, i.e. mlflow-skinny); nothing else in gbpipe imports MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError

from .runview import RunView, flatten

ARTIFACTS = ("report.html", "report.json", "report/report.md", "scores.json", "config.toml", "schema.json")
MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's value


def tracking_uri(folder: Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"


def log_run(run_dir: Path, folder: Path) -> str:
    """Log a run's parameters, scores (with the report's intervals) and report files to MLflow; returns
    the MLflow run id. Each call makes a new MLflow run, tagged with the gbpipe run it came from."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install 'gbpipe[mlflow]' (mlflow-skinny)") from None
    view = RunView(run_dir)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _quiet_mlflow():
        client = MlflowClient(tracking_uri=tracking_uri(folder))
        found = client.get_experiment_by_name(view.experiment)
        experiment_id = (
            found.experiment_id
            if found
            else client.create_experiment(
                view.experiment, artifact_location=(folder.resolve() / "artifacts" / view.experiment).as_uri()
            )
        )
        run = client.create_run(experiment_id, run_name=view.run_id, tags=run_tags(view))
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(key, value, now, step) for key, value, step in run_metrics(view)],
            params=[Param(key, value) for key, value in run_params(view).items()],
        )
        for name in ARTIFACTS:
            if view.reader.has(name):
                client.log_artifact(
                    run.info.run_id, str(view.reader.path(name)), artifact_path=str(Path("gbpipe", name).parent)
                )
        client.set_terminated(run.info.run_id)
    return run.info.run_id


def run_tags(view: RunView) -> dict[str, str]:
    manifest = view.manifest
    return {
        "gbpipe.run_dir": str(view.dir),
        "gbpipe.run_id": view.run_id,
        "gbpipe.experiment": view.experiment,
        "gbpipe.task": view.task,
        "gbpipe.metric": view.metric,
        "gbpipe.config_hash": str(manifest.get("config_hash", "")),
        "gbpipe.data_fingerprint": str(manifest.get("data_fingerprint", "")),
    }


def run_params(view: RunView) -> dict[str, str]:
    """The flattened config and the LightGBM parameters training resolved, as MLflow parameters."""
    params = flatten({"config": view.config_dict or {}, "lightgbm": (view.schema or {}).get("params", {})})
    return {key: str(value)[:MAX_PARAM_VALUE] for key, value in params.items() if value is not None}


def run_metrics(view: RunView) -> list[tuple[str, float, int]]:
    """(name, value, step): headline scores and intervals, every metric, and each fold's score as a step."""
    scores = view.summary or {}
    headline = (view.json("report.json") or {}).get("headline", {})
    found: list[tuple[str, Any, int]] = [
        ("oof_score", scores.get("oof_score"), 0),
        ("oof_ci_low", headline.get("ci_low"), 0),
        ("oof_ci_high", headline.get("ci_high"), 0),
        ("holdout_score", scores.get("holdout_score"), 0),
        ("holdout_ci_low", headline.get("holdout_ci_low"), 0),
        ("holdout_ci_high", headline.get("holdout_ci_high"), 0),
        ("seconds", scores.get("seconds"), 0),
    ]
    for group in ("oof_metrics", "holdout_metrics"):
        found += [(f"{group}.{name}", value, 0) for name, value in (scores.get(group) or {}).items()]
    found += [("fold_score", f["score"], i) for i, f in enumerate(scores.get("folds", []))]
    return [(name, float(value), step) for name, value, step in found if isinstance(value, (int, float))]


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's own INFO lines and its dependencies' deprecation warnings are not the user's concern."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
