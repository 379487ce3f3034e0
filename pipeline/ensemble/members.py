"""Ensemble members: several model families trained on the experiment's saved folds.

Every member sees the same X, y, X_test and fold ids (from `prepare`), so members' OOF and test
predictions line up row by row. LightGBM members go through the OOF engine (`run_cv`) with their
parameter overrides; scikit-learn members are a Pipeline (imputation, scaling, one-hot of the
category codes as the family needs) cloned and fitted on each fold's training rows only.
Models are stored as LightGBM text or with skops (never pickle), loaded with an explicit trust list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.config import Config, read_params_file
from pipeline.config.lightgbm_params import check_more_params
from pipeline.config.sections import EnsembleMember
from pipeline.core.budget import Clock
from pipeline.core.errors import ArtifactError, ConfigError
from pipeline.core.progress import QUIET, Progress
from pipeline.data.prepare import Prepared
from pipeline.engine.cv import fold_workers, run_cv
from pipeline.engine.fold import FoldResult
from pipeline.engine.outputs import model_name, model_text
from pipeline.engine.spec import TrainSpec, available_cores, train_spec

from .extra_families import load_extra, predict_extra, require, train_extra
from .family_folds import member_folds, predict_sklearn, sklearn_fold
from .result import MemberFolds, MemberResult

if TYPE_CHECKING:
    from pipeline.compute.cluster import Cluster

SKLEARN_FAMILIES = ("hist_gradient_boosting", "extra_trees", "random_forest", "logistic", "ridge")
OPTIONAL_FAMILIES = ("xgboost", "catboost")
SKLEARN_DEFAULTS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {"max_iter": 300, "learning_rate": 0.05, "early_stopping": True},
    # Forests grow until min_samples_leaf: a larger leaf keeps stored models small (size ~ rows / leaf).
    "extra_trees": {"n_estimators": 200, "min_samples_leaf": 5, "max_features": "sqrt"},
    "random_forest": {"n_estimators": 200, "min_samples_leaf": 5, "max_features": "sqrt"},
    "logistic": {"C": 1.0, "max_iter": 2000},
    "ridge": {"alpha": 1.0},
}
# Types skops must be told to trust for these pipelines (it trusts scikit-learn's estimators itself).
SKOPS_TRUSTED = [
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
]
MAX_NATIVE_CATEGORIES = 250  # HistGradientBoosting's native categorical support needs < max_bins (255)


def member_params(member: EnsembleMember) -> dict[str, Any]:
    """The member's parameters: a tuned params file (if any), then the config's params over it."""
    params: dict[str, Any] = {}
    if member.params_file:
        params = read_params_file(member.params_file, f"member {member.name!r}: params_file")
    return {**params, **member.params}


def check_member(cfg: Config, member: EnsembleMember) -> None:
    """Raise ConfigError when a member cannot serve this task, its parameters are wrong, or its optional
    library is missing: checked for every member before any is trained."""
    task = cfg.data.task
    params = member_params(member)
    if member.family == "lightgbm" and _is_dart({**cfg.model.params, **params}) and member.num_boost_round is None:
        raise ConfigError(
            f"member {member.name!r}: dart cannot early-stop, so it would run all "
            f"{cfg.model.num_boost_round} rounds; set num_boost_round on the member (e.g. 300)"
        )
    if member.family == "logistic" and task == "regression":
        raise ConfigError(f"member {member.name!r}: family 'logistic' is a classifier; use 'ridge' for regression")
    if member.family == "ridge" and task != "regression":
        raise ConfigError(f"member {member.name!r}: family 'ridge' is for regression; use 'logistic' for {task}")
    if member.family == "lightgbm" and member.params_file:  # inline params were checked with the config
        where = f"{{key}} in member {member.name!r}'s params_file {member.params_file}"
        check_more_params(params, where, cfg.data.task, cfg.metric, cfg.model.params)
    if member.family in OPTIONAL_FAMILIES:
        require(member.family, member.name)
    if member.family in SKLEARN_FAMILIES:
        _check_sklearn_params(member, params, task)


def _check_sklearn_params(member: EnsembleMember, params: dict[str, Any], task: str) -> None:
    """Names against the estimator's parameters, values against scikit-learn's own constraints."""
    cls = _estimator_class(member.family, task)
    unknown = sorted(set(params) - set(cls().get_params()))
    if unknown:
        valid = sorted(cls().get_params())
        raise ConfigError(
            f"member {member.name!r}: unknown {member.family} parameters {unknown}; valid ones are {valid}"
        )
    estimator = cls(**{**SKLEARN_DEFAULTS[member.family], **params})
    validate = getattr(estimator, "_validate_params", None)  # scikit-learn's check at fit time, made now
    try:
        if validate is not None:
            validate()
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"member {member.name!r}: {exc} Set params.{_culprit(str(exc), params)} to a value of that kind"
        ) from None


def _culprit(message: str, params: dict[str, Any]) -> str:
    return next((key for key in params if f"'{key}'" in message), "<the parameter named above>")


def train_member(
    cfg: Config,
    prep: Prepared,
    member: EnsembleMember,
    progress: Progress = QUIET,
    stop: Clock | None = None,
    cluster: Cluster | None = None,
) -> MemberResult:
    """Train one member on every fold of the experiment's saved folds. With `stop`, it raises TimeUp between two
    folds when at its pace it cannot end by the deadline, and LightGBM within a fold once the deadline passes."""
    check_member(cfg, member)
    started = time.perf_counter()
    if member.family == "lightgbm":
        result = _train_lightgbm(cfg, prep, member, progress, stop, cluster)
    elif member.family in OPTIONAL_FAMILIES:
        result = train_extra(cfg, prep, member, member_params(member), progress, stop, cluster)
    else:
        result = _train_sklearn(cfg, prep, member, progress, stop, cluster)
    return replace(result, seconds=time.perf_counter() - started)


def _train_lightgbm(
    cfg: Config, prep: Prepared, member: EnsembleMember, progress: Progress, stop: Clock | None, cluster: Cluster | None
) -> MemberResult:
    spec = replace(lightgbm_spec(cfg, prep, member, None if stop is None else stop.deadline), cluster=cluster)
    total, started = len(prep.folds.pairs()), time.time()
    side_by_side = fold_workers(spec, total)  # folds finish in batches: the pace is known once one batch is in
    files: dict[str, bytes] = {}

    def on_fold_done(result: FoldResult, booster) -> None:
        files[model_name(result.repeat, result.fold)] = model_text(booster, result.best_iteration).encode()
        progress.step(f"  {member.name} fold", len(files), total, f"{cfg.metric} {result.score:.5f}")
        if stop is not None and len(files) >= side_by_side:
            stop.pace(f"member {member.name}", started, len(files), total)

    result = run_cv(prep.X, prep.y, prep.folds, spec, prep.X_test, on_fold_done=on_fold_done)
    # In fold order: folds side by side in threads, or as cluster tasks, finish in any order.
    files = {name: files[name] for name in (model_name(*pair) for pair in prep.folds.pairs())}
    return MemberResult(
        member.name,
        member.family,
        result.oof_pred,
        result.oof_score,
        tuple(result.fold_scores),
        result.test_pred,
        0.0,
        dict(spec.params),
        files,
        tuple(result.best_iterations),
    )


def lightgbm_spec(cfg: Config, prep: Prepared, member: EnsembleMember, deadline: float | None = None) -> TrainSpec:
    """The engine's spec of a LightGBM member: the experiment's model with the member's params and rounds."""
    spec = train_spec(cfg, prep, member_params(member))
    rounds = member.num_boost_round or cfg.model.num_boost_round
    stopping = cfg.model.early_stopping_rounds
    if _is_dart(spec.params):
        stopping = None  # LightGBM ignores early stopping with dart; saying so avoids its warning
    return replace(spec, num_boost_round=rounds, early_stopping_rounds=stopping, deadline=deadline)


def _is_dart(params: dict[str, Any]) -> bool:
    return any(str(params.get(alias)) == "dart" for alias in ("boosting", "boosting_type", "boost"))


def _train_sklearn(
    cfg: Config, prep: Prepared, member: EnsembleMember, progress: Progress, stop: Clock | None, cluster: Cluster | None
) -> MemberResult:
    task, n_classes = cfg.data.task, prep.labels.n_classes
    threads = min(cfg.model.num_threads or available_cores(), available_cores())
    template = build_pipeline(member.family, member_params(member), task, prep, cfg.cv.seed, threads)
    folds = MemberFolds(member.name, cfg.metric, prep.y, task, n_classes, len(prep.folds.pairs()), stop)
    for pair, fold in member_folds(partial(sklearn_fold, template, task, n_classes), prep, threads, cluster):
        folds.add(prep.folds.split(*pair)[1], fold.valid_pred, fold.test_pred, fold.model_file, progress)
    return folds.result(member.family, json_safe(template.named_steps["model"].get_params()))


def _estimator_class(family: str, task: str):
    from sklearn import ensemble, linear_model

    classify = task != "regression"
    return {
        "hist_gradient_boosting": (ensemble.HistGradientBoostingRegressor, ensemble.HistGradientBoostingClassifier),
        "extra_trees": (ensemble.ExtraTreesRegressor, ensemble.ExtraTreesClassifier),
        "random_forest": (ensemble.RandomForestRegressor, ensemble.RandomForestClassifier),
        "logistic": (linear_model.LogisticRegression, linear_model.LogisticRegression),
        "ridge": (linear_model.Ridge, linear_model.Ridge),
    }[family][classify]


def build_pipeline(family: str, params: dict[str, Any], task: str, prep: Prepared, seed: int, threads: int):
    """The family's estimator behind the preprocessing it needs; every step is fitted inside a fold."""
    from sklearn.pipeline import Pipeline

    cls = _estimator_class(family, task)
    settings = {**SKLEARN_DEFAULTS[family], **params}
    accepted = cls().get_params()
    if "random_state" in accepted:
        settings.setdefault("random_state", seed)
    if "n_jobs" in accepted and family != "logistic":
        settings["n_jobs"] = threads
    cat_idx = prep.schema.categorical_indices
    if family == "hist_gradient_boosting":
        # Native categories (NaN is its own bin); very wide category columns stay as ordered codes.
        sizes = [len(prep.schema.categories[prep.schema.columns[i]]) for i in cat_idx]
        native = [i for i, size in zip(cat_idx, sizes) if size <= MAX_NATIVE_CATEGORIES]
        mask = [i in native for i in range(len(prep.schema.columns))]
        settings.setdefault("categorical_features", mask if native else None)
        return Pipeline([("model", cls(**settings))])
    return Pipeline(
        [("prepare", _preprocessor(prep, scale=family in ("logistic", "ridge"))), ("model", cls(**settings))]
    )


def _preprocessor(prep: Prepared, scale: bool):
    """Median imputation with missing-value indicators (plus scaling for linear models) for numbers;
    category codes: missing as its own value, then one-hot (rare categories grouped, unseen ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cat_idx = prep.schema.categorical_indices
    num_idx = [i for i in range(len(prep.schema.columns)) if i not in cat_idx]
    numeric = [("impute", SimpleImputer(strategy="median", add_indicator=True))]
    if scale:
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=-1)),
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist", max_categories=32, min_frequency=5, sparse_output=False
                ),
            ),
        ]
    )
    return ColumnTransformer([("numeric", Pipeline(numeric), num_idx), ("categorical", categorical, cat_idx)])


def json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters that JSON can hold as they are (numbers, text, booleans, None, short lists)."""
    out = {}
    for key, value in params.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[key] = list(value)
    return out


@dataclass(frozen=True)
class FittedMember:
    """A member's fold models, loaded for prediction: the mean over folds, as training averaged them."""

    name: str
    family: str
    task: str
    n_classes: int
    models: tuple[Any, ...]

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.family == "lightgbm":
            from pipeline.engine.fold import predict as predict_booster

            preds = [predict_booster(b, X, self.task, b.current_iteration()) for b in self.models]
        elif self.family in OPTIONAL_FAMILIES:
            preds = [predict_extra(self.family, m, X, self.task, self.n_classes) for m in self.models]
        else:
            with threadpool_limits(limits=available_cores()):
                preds = [predict_sklearn(m, X, self.task, self.n_classes) for m in self.models]
        return np.mean(preds, axis=0)


def load_fitted_member(name: str, family: str, task: str, n_classes: int, files: dict[str, bytes]) -> FittedMember:
    """Rebuild a member's fold models from their stored bytes (file name -> bytes, in fold order)."""
    if not files:
        raise ArtifactError(f"member {name!r} has no stored fold models")
    if family == "lightgbm":
        import lightgbm as lgb

        models = tuple(lgb.Booster(model_str=data.decode()) for data in files.values())
    elif family in OPTIONAL_FAMILIES:
        models = tuple(load_extra(family, data, name) for data in files.values())
    else:
        models = tuple(load_skops(data, f"member {name!r}") for data in files.values())
    return FittedMember(name, family, task, n_classes, models)


def load_skops(data: bytes, what: str):
    """Load a skops file trusting only scikit-learn's own types and the explicit list above."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.loads(data, trusted=SKOPS_TRUSTED)
    except UntrustedTypesFoundException as exc:
        raise ArtifactError(
            f"{what}: the stored model holds types outside the trusted list ({exc}); "
            "it was not written by gbpipe, so it is not loaded"
        ) from None
