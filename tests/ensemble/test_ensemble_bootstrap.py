"""pipeline.bootstrap: count-weighted scores equal scoring the resampled rows; paired intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.core import bootstrap
from pipeline.core.bootstrap import bootstrap_ci, bootstrap_scores, paired_bootstrap, weighted_score
from pipeline.core.metrics import score


@pytest.fixture(scope="module")
def real_preds() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cross-validated predictions of small linear models on scikit-learn's bundled real datasets."""
    out = {}
    X, y = datasets.load_breast_cancer(return_X_y=True)
    proba = cross_val_predict(
        make_pipeline(StandardScaler(), LogisticRegression(C=0.05)), X, y, cv=3, method="predict_proba"
    )
    out["binary"] = (y, np.round(proba[:, 1], 3))  # rounded: ties exercise the AUC's half counts
    X, y = datasets.load_wine(return_X_y=True)
    out["multiclass"] = (
        y,
        cross_val_predict(
            make_pipeline(StandardScaler(), LogisticRegression(C=0.01)), X, y, cv=3, method="predict_proba"
        ),
    )
    X, y = datasets.load_diabetes(return_X_y=True)
    out["regression"] = (y, cross_val_predict(Ridge(alpha=1.0), X, y, cv=3))
    return out


@pytest.mark.parametrize(
    "task, metric",
    [
        ("binary", "auc"),
        ("binary", "logloss"),
        ("binary", "accuracy"),
        ("binary", "f1"),
        ("multiclass", "logloss"),
        ("multiclass", "accuracy"),
        ("multiclass", "f1_macro"),
        ("regression", "rmse"),
        ("regression", "mse"),
        ("regression", "mae"),
        ("regression", "r2"),
    ],
)
def test_count_weighted_score_equals_scoring_the_resampled_rows(real_preds, task, metric):
    y, pred = real_preds[task]
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(y), size=(4, len(y)))
    counts = np.stack([np.bincount(row, minlength=len(y)) for row in idx], axis=1).astype(float)
    fast = weighted_score(metric, y, pred, counts)
    slow = [score(metric, y[row], pred[row]) for row in idx]
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_a_model_against_itself_differs_by_exactly_zero(real_preds):
    y, pred = real_preds["binary"]
    assert paired_bootstrap("auc", y, pred, pred, n_boot=200, seed=0) == (0.0, 0.0, 0.0)


def test_interval_holds_the_score_and_is_reproducible(real_preds):
    y, pred = real_preds["regression"]
    value, low, high = bootstrap_ci("rmse", y, pred, n_boot=300, seed=5)
    assert low < value < high
    assert bootstrap_ci("rmse", y, pred, n_boot=300, seed=5) == (value, low, high)
    assert bootstrap_ci("rmse", y, pred, n_boot=300, seed=6) != (value, low, high)


def test_paired_interval_of_a_real_gain_excludes_zero(real_preds):
    """A model against a deliberately noisier copy of itself: a real, detectable loss."""
    y, pred = real_preds["binary"]
    noisy = np.clip(pred + np.random.default_rng(0).normal(0, 0.3, len(pred)), 0, 1)
    diff, low, high = paired_bootstrap("auc", y, pred, noisy, n_boot=500, seed=1)
    assert diff == pytest.approx(score("auc", y, pred) - score("auc", y, noisy))
    assert 0 < low <= diff <= high


def test_chunking_does_not_change_the_resamples(real_preds, monkeypatch):
    y, pred = real_preds["multiclass"]
    whole = bootstrap_scores("logloss", y, [pred], n_boot=100, seed=2)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", len(y) * 7)  # 7 resamples per chunk
    np.testing.assert_allclose(bootstrap_scores("logloss", y, [pred], n_boot=100, seed=2), whole, rtol=1e-12)
