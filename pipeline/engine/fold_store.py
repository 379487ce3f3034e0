"""A K-fold LightGBM model's folds kept in another stage's folder under its model key, so that a later stage about
to train exactly these folds takes them instead of training them again.

Tune's final retrain trains the model `gbpipe train --params <study>/best_params.json` trains (the same spec: the
same key), so it keeps its folds in the study folder under `final/`, and train takes them from the folder of its
--params file. A key is the whole identity of the folds (spec, data, fold ids, schema, labels, library versions:
spec.model_key), and the files are read through the folder's manifest, so a fold taken is byte for byte the fold
train would have trained.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb

from pipeline.core.errors import ArtifactError
from pipeline.core.run_folder import RunReader

from .fold import FoldOutput, FoldResult
from .outputs import model_name, model_text

FOLDER = "final"
FOLDS_FILE = f"{FOLDER}/folds.json"

StoredFolds = dict[tuple[int, int], tuple[FoldResult, lgb.Booster]]


def fold_files(key: str, outputs: Iterable[FoldOutput]) -> dict[str, bytes]:
    """The files that keep these folds: each model as LightGBM text at its best iteration, and their results."""
    outputs = list(outputs)
    files = {
        f"{FOLDER}/{model_name(o.result.repeat, o.result.fold)}": model_text(
            o.booster, o.result.best_iteration
        ).encode()
        for o in outputs
    }
    doc = {"model_key": key, "folds": [asdict(o.result) for o in outputs]}
    files[FOLDS_FILE] = json.dumps(doc, indent=2, sort_keys=True).encode()
    return files


def kept_files(folder: Path, key: str) -> dict[str, bytes]:
    """The files a folder keeps for the folds with this key (read through its manifest), or {} when it keeps none."""
    if not (Path(folder) / FOLDS_FILE).is_file():  # a params file of the user's own, say: nothing kept there
        return {}
    try:
        reader = RunReader(folder)
        if not reader.has(FOLDS_FILE) or reader.read_json(FOLDS_FILE).get("model_key") != key:
            return {}
        return {name: reader.read_bytes(name) for name in reader.files if name.startswith(f"{FOLDER}/")}
    except ArtifactError as exc:  # kept folds that fail their manifest are never taken: they are trained again
        warnings.warn(f"{folder}: {exc}; the folds it keeps are not taken, they are trained again", stacklevel=2)
        return {}
    except (OSError, ValueError):
        return {}


def stored_folds(folder: Path, key: str, pairs: list[tuple[int, int]]) -> StoredFolds:
    """Every one of `pairs` as kept in `folder` for the folds with this key, or {} (none kept, another key, a fold
    missing, or a file that does not match the folder's manifest: the folds are then trained)."""
    files = kept_files(folder, key)
    if not files:
        return {}
    results = {(r["repeat"], r["fold"]): FoldResult(**r) for r in json.loads(files[FOLDS_FILE])["folds"]}
    names = {pair: f"{FOLDER}/{model_name(*pair)}" for pair in pairs}
    if any(pair not in results or names[pair] not in files for pair in pairs):
        return {}
    return {pair: (results[pair], lgb.Booster(model_str=files[names[pair]].decode())) for pair in pairs}
