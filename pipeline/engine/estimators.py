"""scikit-learn estimators around the K-fold OOF LightGBM engine (pipeline.cv.run_cv).

`fit` trains one LightGBM model per fold, early-stopped on its fold, and keeps the out-of-fold
predictions and scores (`oof_pred_`, `oof_score_`, `fold_scores_`, `best_iterations_`); `predict`
and `predict_proba` average the fold models. No file is read or written.

    from pipeline import OOFLGBMClassifier
    clf = OOFLGBMClassifier(n_splits=5, params={"learning_rate": 0.05}).fit(X, y)
    clf.oof_score_, clf.predict_proba(X_new)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline.core.metrics import DEFAULT_METRIC, METRICS
from pipeline.data.folds import make_folds

from .cv import run_cv
from .fold import predict
from .spec import TrainSpec, resolve_params


class _OOFLGBM(BaseEstimator):
    """Shared parameters and the fit/predict plumbing of both estimators."""

    def __init__(
        self,
        n_splits: int = 5,
        params: dict[str, Any] | None = None,
        num_boost_round: int = 1000,
        early_stopping_rounds: int | None = 50,
        metric: str | None = None,
        early_stopping: str = "fold",
        random_state: int = 42,
        n_jobs: int | None = None,
    ):
        self.n_splits = n_splits
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.metric = metric
        self.early_stopping = early_stopping
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values itself
        return tags

    def _check_params(self, task: str) -> str:
        if not isinstance(self.n_splits, (int, np.integer)) or self.n_splits < 2:
            raise ValueError(f"n_splits must be an integer of at least 2, got {self.n_splits!r}")
        if self.early_stopping not in ("fold", "inner"):
            raise ValueError(f"early_stopping must be 'fold' or 'inner', got {self.early_stopping!r}")
        metric = self.metric or DEFAULT_METRIC[task]
        if metric not in METRICS[task]:
            raise ValueError(
                f"metric {metric!r} is not available for task {task!r}; choose one of {', '.join(METRICS[task])}"
            )
        return metric

    def _fit_folds(self, X: np.ndarray, y: np.ndarray, task: str, metric: str, num_class: int) -> _OOFLGBM:
        """Assign folds (stratified for classifiers), train one model per fold, keep OOF results."""
        splitter = "kfold" if task == "regression" else "stratified"
        folds = make_folds(
            splitter, int(self.n_splits), 1, self.random_state, y if task != "regression" else np.zeros(len(y))
        )
        threads = 0 if self.n_jobs is None or self.n_jobs < 0 else int(self.n_jobs)
        spec = TrainSpec(
            task=task,
            metric=metric,
            params=resolve_params(task, metric, dict(self.params or {}), num_class, self.random_state, threads),
            num_boost_round=self.num_boost_round,
            early_stopping_rounds=self.early_stopping_rounds,
            early_stopping=self.early_stopping,
            num_class=num_class,
            seed=self.random_state,
        )
        result = run_cv(X, y, folds, spec)
        self.boosters_ = list(result.models)
        self.best_iterations_ = result.best_iterations
        self.fold_scores_ = result.fold_scores
        self.oof_pred_ = result.oof_pred
        self.oof_score_ = result.oof_score
        self.fold_ = folds.assignments[0].copy()
        self.metric_ = metric
        self._task = task
        return self

    def _mean_prediction(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "boosters_")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        preds = [predict(b, X, self._task, it) for b, it in zip(self.boosters_, self.best_iterations_)]
        return np.mean(preds, axis=0)


class OOFLGBMClassifier(ClassifierMixin, _OOFLGBM):
    """LightGBM classifier trained by stratified K-fold with out-of-fold scores.

    Parameters: n_splits (folds), params (LightGBM parameters), num_boost_round, early_stopping_rounds,
    metric (auc | logloss | accuracy | f1 for two classes; logloss | accuracy | f1_macro for more),
    early_stopping ('fold': stop on the scored fold; 'inner': on a split of the fold's training rows),
    random_state (folds and LightGBM seed), n_jobs (LightGBM threads; None = all cores).

    Fitted attributes: classes_, n_features_in_, feature_names_in_ (frames), oof_pred_ (P(classes_[1])
    for two classes, else (n, K) probabilities), oof_score_, fold_scores_, best_iterations_,
    boosters_ (one lightgbm.Booster per fold), fold_ (each row's validation fold), metric_.
    """

    def fit(self, X: Any, y: Any) -> OOFLGBMClassifier:
        """Train one model per stratified fold; y holds class labels."""
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite="allow-nan")
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y; got 1 class ({self.classes_[0]!r})")
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        metric = self._check_params(task)
        smallest = int(np.bincount(codes).min())
        if smallest < self.n_splits:
            raise ValueError(
                f"the smallest class has {smallest} sample(s), fewer than n_splits={self.n_splits}: "
                "stratified folds need every class in every fold; lower n_splits"
            )
        return self._fit_folds(X, codes, task, metric, len(self.classes_) if task == "multiclass" else 1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (columns in the order of classes_), averaged over the fold models."""
        pred = self._mean_prediction(X)
        return np.column_stack([1 - pred, pred]) if pred.ndim == 1 else pred

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        check_is_fitted(self, "boosters_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class OOFLGBMRegressor(RegressorMixin, _OOFLGBM):
    """LightGBM regressor trained by shuffled K-fold with out-of-fold scores.

    Same parameters as OOFLGBMClassifier; metric is rmse | mae | mse | r2 (default rmse).
    Fitted attributes: n_features_in_, feature_names_in_ (frames), oof_pred_, oof_score_,
    fold_scores_, best_iterations_, boosters_, fold_, metric_.
    """

    def fit(self, X: Any, y: Any) -> OOFLGBMRegressor:
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite="allow-nan", y_numeric=True)
        metric = self._check_params("regression")
        if len(y) < self.n_splits:
            raise ValueError(f"n_samples={len(y)} is fewer than n_splits={self.n_splits}; every fold needs rows")
        return self._fit_folds(X, y.astype(np.float64), "regression", metric, 1)

    def predict(self, X: Any) -> np.ndarray:
        """Mean of the fold models' predictions."""
        return self._mean_prediction(X)
