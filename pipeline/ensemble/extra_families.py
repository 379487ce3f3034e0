"""Optional member families: XGBoost and CatBoost, used only when installed.

Both train on the experiment's saved folds with early stopping as the config says (on the scored
fold, or on an inner split of the training rows), and are stored in their own formats (XGBoost JSON,
CatBoost .cbm bytes): never pickled.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import Config
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock
from pipeline.core.errors import ConfigError
from pipeline.core.progress import Progress
from pipeline.data.folds import Folds
from pipeline.data.prepare import Prepared
from pipeline.engine.fold import inner_split
from pipeline.engine.outputs import model_name
from pipeline.engine.spec import TrainSpec, available_cores

from .family_folds import MemberFold, member_folds
from .result import MemberFolds

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

XGB_EVAL = {
    ("binary", "auc"): "auc",
    ("binary", "accuracy"): "error",
    ("multiclass", "accuracy"): "merror",
    ("regression", "rmse"): "rmse",
    ("regression", "mae"): "mae",
}
XGB_OBJECTIVE = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}
CB_LOSS = {"binary": "Logloss", "multiclass": "MultiClass", "regression": "RMSE"}
CB_EVAL = {
    ("binary", "auc"): "AUC",
    ("binary", "accuracy"): "Accuracy",
    ("multiclass", "accuracy"): "Accuracy",
    ("regression", "mae"): "MAE",
}


def require(family: str, member_name: str) -> None:
    """ConfigError with the install command when an optional family's library is missing."""
    try:
        __import__(family)
    except ImportError:
        raise ConfigError(
            f"member {member_name!r}: family {family!r} needs the {family} package, which is not "
            f"installed; install it with `pip install {family}` (in the project: "
            f"`.venv/bin/pip install {family}`), or remove the member"
        ) from None


def train_extra(
    cfg: Config,
    prep: Prepared,
    member: EnsembleMember,
    params: dict[str, Any],
    progress: Progress,
    stop: Clock | None = None,
    cluster: Cluster | None = None,
):
    """Train an XGBoost or CatBoost member on every fold (here, or as tasks on a `cluster`); returns a MemberResult
    (`stop` may stop it between folds)."""
    task, n_classes = cfg.data.task, prep.labels.n_classes
    fit = partial(extra_fold, cfg, member, params, tuple(prep.schema.categorical_indices), n_classes)
    folds = MemberFolds(member.name, cfg.metric, prep.y, task, n_classes, len(prep.folds.pairs()), stop)
    for pair, fold in member_folds(fit, prep, _threads(cfg), cluster):
        folds.add(
            prep.folds.split(*pair)[1], fold.valid_pred, fold.test_pred, fold.model_file, progress, fold.best_iteration
        )
    return folds.result(member.family, dict(params))


def extra_fold(
    cfg: Config,
    member: EnsembleMember,
    params: dict[str, Any],
    categorical: tuple[int, ...],
    n_classes: int,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    X_test: np.ndarray | None,
    pair: tuple[int, int],
    threads: int,
) -> MemberFold:
    """One fold of an XGBoost or CatBoost member, early-stopped as the config says (on the scored fold, or on an
    inner split of the training rows)."""
    task = cfg.data.task
    train_idx, valid_idx = folds.split(*pair)
    fit_idx, stop_idx = train_idx, valid_idx
    if cfg.model.early_stopping == "inner":
        spec = TrainSpec(
            task, cfg.metric, {}, 0, None, inner_valid_fraction=cfg.model.inner_valid_fraction, seed=cfg.cv.seed
        )
        fit_idx, stop_idx = inner_split(train_idx, y, spec, *pair)
    data = _FoldData(X, y, categorical, n_classes, fit_idx, stop_idx, threads)
    fit = _fit_xgboost if member.family == "xgboost" else _fit_catboost
    model, best = fit(cfg, member, params, data)
    valid_pred = predict_extra(member.family, model, X[valid_idx], task, n_classes)
    test_pred = predict_extra(member.family, model, X_test, task, n_classes) if X_test is not None else None
    name = model_name(*pair).removesuffix(".txt") + _SUFFIX[member.family]
    return MemberFold(valid_pred, test_pred, (name, save_extra(member.family, model)), best)


@dataclass(frozen=True)
class _FoldData:
    X: np.ndarray
    y: np.ndarray
    categorical: tuple[int, ...]
    n_classes: int
    fit_idx: np.ndarray
    stop_idx: np.ndarray
    threads: int


_SUFFIX = {"xgboost": ".json", "catboost": ".cbm"}


def _threads(cfg: Config) -> int:
    return min(cfg.model.num_threads or available_cores(), available_cores())


def _rounds(cfg: Config, member: EnsembleMember) -> int:
    return member.num_boost_round or cfg.model.num_boost_round


def _fit_xgboost(cfg: Config, member: EnsembleMember, params: dict[str, Any], data: _FoldData):
    import xgboost as xgb

    task = cfg.data.task
    types = ["c" if i in data.categorical else "q" for i in range(data.X.shape[1])]
    settings = {
        "objective": XGB_OBJECTIVE[task],
        "eta": 0.05,
        "max_depth": 6,
        "tree_method": "hist",
        "seed": cfg.cv.seed,
        "nthread": data.threads,
        "eval_metric": XGB_EVAL.get(
            (task, cfg.metric), "mlogloss" if task == "multiclass" else "logloss" if task == "binary" else "rmse"
        ),
        **params,
    }
    if task == "multiclass":
        settings["num_class"] = data.n_classes

    def matrix(idx: np.ndarray):
        return xgb.DMatrix(data.X[idx], label=data.y[idx], feature_types=types, enable_categorical=True)

    stopping = cfg.model.early_stopping_rounds
    booster = xgb.train(
        settings,
        matrix(data.fit_idx),
        num_boost_round=_rounds(cfg, member),
        evals=[(matrix(data.stop_idx), "valid")],
        early_stopping_rounds=stopping,
        verbose_eval=False,
    )
    best = booster.best_iteration if stopping else booster.num_boosted_rounds() - 1
    return booster[: best + 1], int(best + 1)


def _fit_catboost(cfg: Config, member: EnsembleMember, params: dict[str, Any], data: _FoldData):
    from catboost import CatBoost

    task = cfg.data.task
    loss = "MAE" if task == "regression" and cfg.metric == "mae" else CB_LOSS[task]
    settings = {
        "loss_function": loss,
        "eval_metric": CB_EVAL.get((task, cfg.metric), loss),
        "iterations": _rounds(cfg, member),
        "learning_rate": 0.05,
        "depth": 6,
        "random_seed": cfg.cv.seed,
        "thread_count": data.threads,
        "verbose": False,
        "allow_writing_files": False,
        **params,
    }
    model = CatBoost(settings)
    model.fit(
        _pool(data.X[data.fit_idx], list(data.categorical), data.y[data.fit_idx]),
        eval_set=_pool(data.X[data.stop_idx], list(data.categorical), data.y[data.stop_idx]),
        early_stopping_rounds=cfg.model.early_stopping_rounds,
        use_best_model=True,
    )
    return model, int(model.get_best_iteration() or 0) + 1


def _pool(X: np.ndarray, cat_idx: list[int], y: np.ndarray | None = None):
    """CatBoost wants whole numbers in categorical columns: codes as integers, missing as -1."""
    import pandas as pd
    from catboost import Pool

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    for i in cat_idx:
        frame[f"f{i}"] = np.nan_to_num(X[:, i], nan=-1.0).astype("int64")
    return Pool(frame, label=y, cat_features=list(cat_idx))


def predict_extra(family: str, model, X: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """P(positive), n x K probabilities or values from an XGBoost or CatBoost model."""
    if family == "xgboost":
        import xgboost as xgb

        types = model.feature_types or None
        pred = model.predict(xgb.DMatrix(X, feature_types=types, enable_categorical=True))
        return (
            np.asarray(pred, dtype="float64").reshape(len(X), -1)[:, 0]
            if task != "multiclass"
            else np.asarray(pred, dtype="float64").reshape(len(X), n_classes)
        )
    pool = _pool(X, list(model.get_cat_feature_indices()))
    if task == "regression":
        return np.asarray(model.predict(pool, prediction_type="RawFormulaVal"), dtype="float64")
    proba = np.asarray(model.predict(pool, prediction_type="Probability"), dtype="float64")
    return proba[:, 1] if task == "binary" else proba


def save_extra(family: str, model) -> bytes:
    if family == "xgboost":
        return bytes(model.save_raw("json"))
    fd, path = tempfile.mkstemp(suffix=".cbm")
    os.close(fd)
    try:
        model.save_model(path, format="cbm")
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        os.unlink(path)


def load_extra(family: str, data: bytes, name: str):
    require(family, name)
    if family == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster
    from catboost import CatBoost

    return CatBoost().load_model(blob=data)
