"""OOFLGBMClassifier / OOFLGBMRegressor: scikit-learn's estimator checks, use inside Pipeline,
cross_val_score and StackingClassifier, and the same OOF predictions as `gbpipe train`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.cli import main
from pipeline.core.metrics import score
from pipeline.engine.estimators import OOFLGBMClassifier, OOFLGBMRegressor
from pipeline.engine.fold import predict
from tests.helpers.configs import write_config

FAST = {"num_boost_round": 30, "early_stopping_rounds": 10, "n_jobs": 1}


def expected_failures(estimator) -> dict[str, str]:
    """Checks a configuration is expected to fail, with the reason (none for the fast instances below)."""
    if isinstance(estimator, OOFLGBMClassifier) and estimator.n_splits > 3:
        return {
            "check_fit2d_1feature": "its 10 rows hold classes of 7 and 3 rows: stratified K-fold needs at "
            "least n_splits rows per class, so fit refuses with a ValueError naming "
            "the smallest class rather than train folds that miss a class"
        }
    return {}


def test_expected_failures_of_the_default_classifier():
    """With the default 5 folds, check_fit2d_1feature fails for the reason listed, and only for it."""
    from sklearn.utils.estimator_checks import check_fit2d_1feature

    estimator = OOFLGBMClassifier(**FAST)
    assert list(expected_failures(estimator)) == ["check_fit2d_1feature"]
    with pytest.raises(AssertionError) as failed:  # the check accepts only messages about "1 feature"
        check_fit2d_1feature("OOFLGBMClassifier", estimator)
    assert "the smallest class has 3 sample(s), fewer than n_splits=5" in str(failed.value.__cause__)


@parametrize_with_checks(
    [OOFLGBMClassifier(n_splits=3, **FAST), OOFLGBMRegressor(n_splits=3, **FAST)],
    expected_failed_checks=expected_failures,
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_classifier_reproduces_the_cli_engine(tmp_path):
    """Same data, folds, seed and parameters: the estimator's OOF predictions are `gbpipe train`'s."""
    config = write_config(
        tmp_path, "cancer", data={"train": "sklearn:breast_cancer", "target": "target", "task": "binary"}
    )
    assert main(["train", "--config", str(config), "-q"]) == 0
    exp = tmp_path / "runs" / "cancer"
    oof = pd.read_parquet(exp / (exp / "LATEST").read_text().strip() / "oof.parquet")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    clf = OOFLGBMClassifier(
        params={"learning_rate": 0.1}, num_boost_round=200, early_stopping_rounds=20, random_state=42, n_jobs=1
    ).fit(X, y)
    np.testing.assert_allclose(clf.oof_pred_, oof["pred"].to_numpy(), rtol=0, atol=1e-12)
    assert (clf.fold_ == oof["fold"].to_numpy()).all()
    assert clf.oof_score_ == pytest.approx(score("auc", y.to_numpy(), clf.oof_pred_), abs=1e-15)
    assert len(clf.fold_scores_) == len(clf.best_iterations_) == 5 and clf.oof_score_ > 0.97
    assert list(clf.feature_names_in_) == list(X.columns) and clf.n_features_in_ == 30
    # predict_proba is the mean of the fold models at their best iterations
    mean = np.mean(
        [predict(b, X.to_numpy(float), "binary", it) for b, it in zip(clf.boosters_, clf.best_iterations_)], axis=0
    )
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], mean, atol=1e-15)


def test_multiclass_labels_and_probabilities():
    X, y = load_wine(return_X_y=True)
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    clf = OOFLGBMClassifier(params={"num_leaves": 7, "min_data_in_leaf": 5}, **FAST).fit(X, names)
    assert list(clf.classes_) == ["barbera", "barolo", "grignolino"] and clf.oof_pred_.shape == (178, 3)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert set(clf.predict(X)) <= set(clf.classes_) and clf.metric_ == "logloss" and clf.oof_score_ < 0.3


def test_regressor_oof_scores():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    reg = OOFLGBMRegressor(
        params={"learning_rate": 0.05, "num_leaves": 7}, num_boost_round=300, early_stopping_rounds=30, n_jobs=1
    ).fit(X, y)
    assert reg.oof_score_ == pytest.approx(np.sqrt(np.mean((y.to_numpy() - reg.oof_pred_) ** 2)), rel=1e-12)
    assert reg.oof_score_ < y.std() and reg.predict(X).shape == (442,)
    assert score("r2", y.to_numpy(), reg.oof_pred_) > 0.3


def test_in_pipeline_cross_val_score_and_stacking():
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), OOFLGBMClassifier(**FAST))
    scores = cross_val_score(pipe, X, y, cv=3, scoring="roc_auc")
    assert scores.shape == (3,) and scores.min() > 0.95
    stack = StackingClassifier(
        [
            ("oof_lgbm", OOFLGBMClassifier(**FAST)),
            ("logit", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
        ],
        final_estimator=LogisticRegression(),
        cv=3,
    )
    stack.fit(X[:400], y[:400])
    assert stack.score(X[400:], y[400:]) > 0.9
    assert stack.named_estimators_["oof_lgbm"].oof_score_ > 0.95


@pytest.mark.parametrize(
    "estimator, y, message",
    [
        (OOFLGBMClassifier(metric="rmse"), [0, 1] * 10, "metric 'rmse' is not available for task 'binary'"),
        (OOFLGBMClassifier(n_splits=1), [0, 1] * 10, "n_splits must be an integer of at least 2"),
        (OOFLGBMClassifier(), [0] * 19 + [1], "smallest class has 1 sample"),
        (OOFLGBMClassifier(), [3] * 20, "needs at least 2 classes"),
        (OOFLGBMRegressor(early_stopping="later"), list(range(20)), "early_stopping must be 'fold' or 'inner'"),
    ],
)
def test_bad_parameters(estimator, y, message):
    X = np.arange(40, dtype=float).reshape(20, 2)
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, y)
