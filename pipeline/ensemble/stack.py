"""The stacking meta-model: logistic or ridge regression kept as JSON coefficients, or a small LightGBM
kept as text. Never pickled; `predict` is plain numpy (or LightGBM) so a saved stack reloads exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from pipeline.core.metrics import softmax_from_raw
from pipeline.engine.fold import predict as predict_booster
from pipeline.engine.spec import available_cores

from .combiner_settings import CombinerSettings

META_LGB_PARAMS = {
    "num_leaves": 7,
    "learning_rate": 0.05,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "feature_fraction": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
}


@dataclass(frozen=True)
class MetaModel:
    """A fitted meta-model over the stack's features (members' predictions, then raw features)."""

    kind: str  # linear | lightgbm
    task: str
    fill: tuple[float, ...]  # per feature: training median, for missing raw feature values
    center: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[tuple[float, ...], ...] = ()  # classes x features (one row for binary and regression)
    intercept: tuple[float, ...] = ()
    booster_text: str = ""

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.where(np.isnan(features), np.asarray(self.fill), features)
        if self.kind == "lightgbm":
            booster = lgb.Booster(model_str=self.booster_text)
            return predict_booster(booster, features, self.task, booster.current_iteration())
        z = ((features - np.asarray(self.center)) / np.asarray(self.scale)) @ np.asarray(self.coef).T
        z = z + np.asarray(self.intercept)
        if self.task == "binary":
            return 1.0 / (1.0 + np.exp(-z[:, 0]))
        if self.task == "multiclass":
            return softmax_from_raw(z)
        return z[:, 0]

    def to_dict(self) -> dict[str, Any]:
        """JSON form; a LightGBM meta-model's trees are kept in their own text file instead."""
        doc = {"kind": self.kind, "task": self.task, "fill": list(self.fill)}
        if self.kind == "linear":
            doc.update(
                center=list(self.center),
                scale=list(self.scale),
                coef=[list(r) for r in self.coef],
                intercept=list(self.intercept),
            )
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], booster_text: str = "") -> MetaModel:
        return cls(
            doc["kind"],
            doc["task"],
            tuple(doc["fill"]),
            tuple(doc.get("center", ())),
            tuple(doc.get("scale", ())),
            tuple(tuple(r) for r in doc.get("coef", ())),
            tuple(doc.get("intercept", ())),
            booster_text,
        )


def fit_meta(settings: CombinerSettings, features: np.ndarray, y: np.ndarray) -> MetaModel:
    """Fit the meta-model on the rows given; imputation and scaling are fitted on them too."""
    fill = np.nanmedian(features, axis=0) if np.isnan(features).any() else np.zeros(features.shape[1])
    fill = np.where(np.isnan(fill), 0.0, fill)
    features = np.where(np.isnan(features), fill, features)
    fill_t = tuple(float(v) for v in fill)
    if settings.stack_model == "lightgbm":
        return MetaModel("lightgbm", settings.task, fill_t, booster_text=_fit_lightgbm(settings, features, y))
    center = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    coef, intercept = _fit_linear(settings, (features - center) / scale, y)
    return MetaModel(
        "linear",
        settings.task,
        fill_t,
        tuple(map(float, center)),
        tuple(map(float, scale)),
        tuple(tuple(map(float, row)) for row in coef),
        tuple(map(float, intercept)),
    )


def _fit_linear(settings: CombinerSettings, features: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression (classification, C = 1 / strength) or ridge (regression, alpha = strength)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if settings.task == "regression":
        model = Ridge(alpha=settings.stack_regularization).fit(features, y)
        return model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_)
    model = LogisticRegression(C=1.0 / settings.stack_regularization, max_iter=2000)
    model.fit(features, y)
    coef, intercept = model.coef_, model.intercept_
    if settings.task == "multiclass" and len(model.classes_) < settings.n_classes:
        # A class absent from these rows gets a very low score instead of a missing column.
        full_coef = np.zeros((settings.n_classes, features.shape[1]))
        full_intercept = np.full(settings.n_classes, -30.0)
        full_coef[model.classes_] = coef
        full_intercept[model.classes_] = intercept
        coef, intercept = full_coef, full_intercept
    return coef, intercept


def _fit_lightgbm(settings: CombinerSettings, features: np.ndarray, y: np.ndarray) -> str:
    """A small LightGBM with a fixed number of rounds (no rows are left to early-stop on)."""
    params = {
        **META_LGB_PARAMS,
        "objective": settings.task,
        "seed": settings.seed,
        "num_threads": min(settings.num_threads or available_cores(), available_cores()),
    }
    if settings.task == "multiclass":
        params["num_class"] = settings.n_classes
    booster = lgb.train(params, lgb.Dataset(features, label=y), num_boost_round=settings.stack_lgb_rounds)
    return booster.model_to_string()
