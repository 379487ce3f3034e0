"""A trained member as files (members/<name>/ in an ensemble run), and the member cache.

The cache keeps each trained member under runs/<exp>/member_cache/<key>/, where the key hashes
everything that determines its predictions (family and parameters, data fingerprint, fold ids,
feature schema, labels, metric, model settings, library versions), so a later ensemble of the same
experiment reuses it instead of retraining. Entries are written whole (staging folder + rename) with
a manifest of sha256 hashes that is checked before reuse.

A LightGBM member that a finished `gbpipe train` run of the experiment already trained (the same model key:
spec, data, fold ids, schema, labels, libraries) is read from that run instead, its files checked the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.config.sections import EnsembleMember
from pipeline.core.artifacts import LATEST, MANIFEST, json_bytes, parquet_bytes
from pipeline.core.errors import ArtifactError
from pipeline.core.metrics import GREATER_IS_BETTER, all_metrics, score
from pipeline.core.run_folder import RunReader, RunWriter
from pipeline.data.prepare import Prepared
from pipeline.engine.oof import validated_rows
from pipeline.engine.outputs import model_name, prediction_frame
from pipeline.engine.spec import data_identity, model_key

from .members import lightgbm_spec, member_params
from .result import MemberResult

MEMBER_DOC = "member.json"  # written last: a member folder holding it is complete
CACHE_DIR = "member_cache"
RUNS_SEARCHED = 20  # the newest training runs looked at for a member's model: enough for a working session


def member_files(
    cfg: Config, prep: Prepared, member: EnsembleMember, result: MemberResult, cache_key: str
) -> dict[str, bytes]:
    """Every file of one member, by path relative to its folder; member.json comes last."""
    files = {"oof.parquet": parquet_bytes(oof_frame(cfg, prep, result.oof_pred))}
    if result.test_pred is not None:
        files["test_pred.parquet"] = parquet_bytes(test_frame(cfg, prep, result.test_pred))
    files["scores.json"] = json_bytes(member_scores(cfg, prep, result))
    files.update(result.model_files)
    files[MEMBER_DOC] = json_bytes(
        {
            "name": result.name,
            "family": result.family,
            "config": member.model_dump(mode="json"),
            "params": result.params,
            "cache_key": cache_key,
            "models": list(result.model_files),
            "best_iterations": list(result.best_iterations),
            "seconds": result.seconds,
        }
    )
    return files


def oof_frame(cfg: Config, prep: Prepared, oof_pred: np.ndarray) -> pd.DataFrame:
    """id, fold, target and the predictions, as in a training run's oof.parquet."""
    frame = prediction_frame(oof_pred, prep, prep.ids)
    frame.insert(1, "fold", prep.folds.assignments[0].astype("int16"))
    frame.insert(2, "target", prep.tables.train[cfg.data.target].to_numpy())
    return frame


def test_frame(cfg: Config, prep: Prepared, test_pred: np.ndarray) -> pd.DataFrame:
    frame = prediction_frame(test_pred, prep, prep.test_ids)
    if prep.y_test is not None:
        frame.insert(1, "target", prep.tables.test[cfg.data.target].to_numpy())
    return frame


def member_scores(cfg: Config, prep: Prepared, result: MemberResult) -> dict[str, Any]:
    validated = prep.folds.validated()
    doc = {
        "name": result.name,
        "family": result.family,
        "task": cfg.data.task,
        "metric": cfg.metric,
        "greater_is_better": GREATER_IS_BETTER[cfg.metric],
        "oof_score": result.oof_score,
        "oof_metrics": all_metrics(cfg.data.task, *validated_rows(validated, prep.y, result.oof_pred)),
        "fold_scores": list(result.fold_scores),
        "fold_score_mean": float(np.mean(result.fold_scores)),
        "fold_score_std": float(np.std(result.fold_scores)),
        "best_iterations": list(result.best_iterations),
        "n_rows": int(len(prep.y)),
        "n_validated": int(validated.sum()),
        "seconds": result.seconds,
    }
    if prep.y_test is not None and result.test_pred is not None:
        doc["holdout_score"] = score(cfg.metric, prep.y_test, result.test_pred)
        doc["n_holdout"] = int(len(prep.y_test))
    return doc


def result_from_files(read: Callable[[str], bytes], prep: Prepared) -> MemberResult:
    """Rebuild a MemberResult from a member folder's files (read by relative name)."""
    doc = json.loads(read(MEMBER_DOC))
    scores = json.loads(read("scores.json"))
    oof = _pred_array(pd.read_parquet(_buffer(read("oof.parquet"))), prep)
    test = None
    if prep.X_test is not None:
        test = _pred_array(pd.read_parquet(_buffer(read("test_pred.parquet"))), prep)
    models = {name: read(name) for name in doc["models"]}
    return MemberResult(
        doc["name"],
        doc["family"],
        oof,
        scores["oof_score"],
        tuple(scores["fold_scores"]),
        test,
        doc["seconds"],
        doc["params"],
        models,
        tuple(doc["best_iterations"]),
    )


def _buffer(data: bytes):
    import io

    return io.BytesIO(data)


def _pred_array(frame: pd.DataFrame, prep: Prepared) -> np.ndarray:
    if prep.labels.task == "multiclass":
        return frame[[f"pred_{c}" for c in prep.labels.classes]].to_numpy(dtype="float64")
    return frame["pred"].to_numpy(dtype="float64")


def cache_key(cfg: Config, prep: Prepared, member: EnsembleMember) -> str:
    """sha256 over everything that determines a member's predictions (not its name, not threads)."""
    boosting = member.family in ("lightgbm", "xgboost", "catboost")  # the only ones [model] settings reach
    doc = {
        "family": member.family,
        "params": member_params(member),
        "num_boost_round": member.num_boost_round,
        "model": cfg.model.model_dump(mode="json", exclude={"num_threads"}) if boosting else {},
        "task": cfg.data.task,
        "metric": cfg.metric,
        "seed": cfg.cv.seed,
        **data_identity(prep, ("gbpipe", "lightgbm", "sklearn", "numpy")),
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.experiment.runs_dir) / cfg.experiment.name / CACHE_DIR


def read_cached(cfg: Config, prep: Prepared, key: str) -> MemberResult | None:
    """The cached member with this key, after checking every file's sha256; None when absent."""
    entry = cache_dir(cfg) / key
    if not (entry / MANIFEST).is_file():
        return None
    try:
        reader = RunReader(entry)
        return result_from_files(reader.read_bytes, prep)
    except (ArtifactError, KeyError, ValueError, OSError) as exc:
        warnings.warn(
            f"member cache entry {entry} is unreadable ({exc}); it is removed and the member retrained", stacklevel=2
        )
        shutil.rmtree(entry, ignore_errors=True)
        return None


def write_cached(cfg: Config, key: str, files: dict[str, bytes], written_in: Path | None = None) -> Path:
    """Store a member's files as a cache entry, published whole through the stage-folder writer.

    Files already written under `written_in` (the run's member folder) are hard-linked, not copied."""
    entry = cache_dir(cfg) / key
    writer = RunWriter(entry, shared=True)
    try:
        for name, data in files.items():
            if written_in is None or not (written_in / name).is_file() or not writer.link(name, written_in / name):
                writer.write_bytes(name, data)
        return writer.publish({"cache_key": key}, stage="ensemble", update_latest=False)
    except BaseException:
        writer.discard()
        raise


def from_training_run(cfg: Config, prep: Prepared, member: EnsembleMember) -> tuple[MemberResult, Path] | None:
    """A LightGBM member read from the newest finished training run of the experiment with its model key."""
    if member.family != "lightgbm":
        return None
    spec = lightgbm_spec(cfg, prep, member)
    key = model_key(spec, prep)
    for run_dir in _training_runs(Path(cfg.experiment.runs_dir) / cfg.experiment.name):
        try:
            reader = RunReader(run_dir)
            if not reader.has("schema.json") or reader.read_json("schema.json").get("model_key") != key:
                continue
            return _result_from_run(reader, prep, member, spec.params), run_dir
        except (ArtifactError, KeyError, ValueError, OSError) as exc:
            warnings.warn(f"training run {run_dir} is unreadable ({exc}); looking further", stacklevel=2)
    return None


def _training_runs(exp_dir: Path) -> list[Path]:
    """The experiment's newest finished training runs (the LATEST one first), ids being timestamps."""
    latest = exp_dir / LATEST
    first = [exp_dir / latest.read_text().strip()] if latest.is_file() else []
    found = sorted(
        (p for p in exp_dir.glob("*/schema.json") if (p.parent / MANIFEST).is_file()),
        key=lambda p: p.parent.name,
        reverse=True,
    )
    runs = first + [p.parent for p in found if p.parent not in first]
    return runs[:RUNS_SEARCHED]


def _result_from_run(reader: RunReader, prep: Prepared, member: EnsembleMember, params: dict) -> MemberResult:
    scores = reader.read_json("scores.json")
    oof = reader.read_parquet("oof.parquet")
    if not oof[prep.id_name].equals(prep.ids):
        raise ValueError("its oof.parquet rows are not the experiment's rows in order")
    test = None
    if prep.X_test is not None:
        test = _pred_array(reader.read_parquet("test_pred.parquet"), prep)
    models = {name: reader.read_bytes(name) for name in (model_name(r, k) for r, k in prep.folds.pairs())}
    return MemberResult(
        member.name,
        member.family,
        _pred_array(oof, prep),
        scores["oof_score"],
        tuple(scores["fold_scores"]),
        test,
        float(sum(f["seconds"] for f in scores["folds"])),
        dict(params),
        models,
        tuple(scores["best_iterations"]),
    )
