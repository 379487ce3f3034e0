"""Optional member families: XGBoost and CatBoost, used only when installed.

Both train on the experiment's saved folds with early stopping as the config says (on the scored
fold, or on an inner split of the training rows), and are stored in their own formats (XGBoost JSON,
CatBoost .cbm bytes): never pickled.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock
from pipeline.core.errors import ConfigError
from pipeline.core.progress import Progress
from pipeline.data.prepare import Prepared
from pipeline.engine.fold import inner_split
from pipeline.engine.outputs import model_name
from pipeline.engine.spec import TrainSpec, available_cores

from .result import MemberFolds

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
):
    """Train an XGBoost or CatBoost member on every fold; returns a MemberResult (`stop` may stop it between folds)."""
    task, n_classes = cfg.data.task, prep.labels.n_classes
    pairs = prep.folds.pairs()
    folds = MemberFolds(member.name, cfg.metric, prep.y, task, n_classes, len(pairs), stop)
    for repeat, fold in pairs:
        train_idx, valid_idx = prep.folds.split(repeat, fold)
        fit_idx, stop_idx = train_idx, valid_idx
        if cfg.model.early_stopping == "inner":
            spec = TrainSpec(
                task, cfg.metric, {}, 0, None, inner_valid_fraction=cfg.model.inner_valid_fraction, seed=cfg.cv.seed
            )
            fit_idx, stop_idx = inner_split(train_idx, prep.y, spec, repeat, fold)
        fit = _fit_xgboost if member.family == "xgboost" else _fit_catboost
        model, best = fit(cfg, prep, member, params, fit_idx, stop_idx)
        valid_pred = predict_extra(member.family, model, prep.X[valid_idx], task, n_classes)
        test_pred = (
            predict_extra(member.family, model, prep.X_test, task, n_classes) if prep.X_test is not None else None
        )
        name = model_name(repeat, fold).removesuffix(".txt") + _SUFFIX[member.family]
        folds.add(valid_idx, valid_pred, test_pred, (name, save_extra(member.family, model)), progress, best)
    return folds.result(member.family, dict(params))


_SUFFIX = {"xgboost": ".json", "catboost": ".cbm"}


def _threads(cfg: Config) -> int:
    return min(cfg.model.num_threads or available_cores(), available_cores())


def _rounds(cfg: Config, member: EnsembleMember) -> int:
    return member.num_boost_round or cfg.model.num_boost_round


def _fit_xgboost(
    cfg: Config,
    prep: Prepared,
    member: EnsembleMember,
    params: dict[str, Any],
    fit_idx: np.ndarray,
    stop_idx: np.ndarray,
):
    import xgboost as xgb

    task = cfg.data.task
    types = ["c" if i in prep.schema.categorical_indices else "q" for i in range(prep.X.shape[1])]
    settings = {
        "objective": XGB_OBJECTIVE[task],
        "eta": 0.05,
        "max_depth": 6,
        "tree_method": "hist",
        "seed": cfg.cv.seed,
        "nthread": _threads(cfg),
        "eval_metric": XGB_EVAL.get(
            (task, cfg.metric), "mlogloss" if task == "multiclass" else "logloss" if task == "binary" else "rmse"
        ),
        **params,
    }
    if task == "multiclass":
        settings["num_class"] = prep.labels.n_classes

    def matrix(idx: np.ndarray):
        return xgb.DMatrix(prep.X[idx], label=prep.y[idx], feature_types=types, enable_categorical=True)

    stopping = cfg.model.early_stopping_rounds
    booster = xgb.train(
        settings,
        matrix(fit_idx),
        num_boost_round=_rounds(cfg, member),
        evals=[(matrix(stop_idx), "valid")],
        early_stopping_rounds=stopping,
        verbose_eval=False,
    )
    best = booster.best_iteration if stopping else booster.num_boosted_rounds() - 1
    return booster[: best + 1], int(best + 1)


def _fit_catboost(
    cfg: Config,
    prep: Prepared,
    member: EnsembleMember,
    params: dict[str, Any],
    fit_idx: np.ndarray,
    stop_idx: np.ndarray,
):
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
        "thread_count": _threads(cfg),
        "verbose": False,
        "allow_writing_files": False,
        **params,
    }
    model = CatBoost(settings)
    model.fit(
        _pool(prep.X[fit_idx], prep.schema.categorical_indices, prep.y[fit_idx]),
        eval_set=_pool(prep.X[stop_idx], prep.schema.categorical_indices, prep.y[stop_idx]),
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
