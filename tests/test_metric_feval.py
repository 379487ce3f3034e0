"""The early-stopping metric gbpipe computes itself (no LightGBM built-in: binary f1, multiclass f1_macro)
scores what LightGBM hands it, the predicted probabilities, exactly as the run's scores are computed."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from pipeline.core.metrics import lgb_metric, score
from tests.helpers.reliability import adult_rows


@pytest.mark.parametrize("task, metric", [("binary", "f1"), ("multiclass", "f1_macro")])
def test_custom_metric_during_training_equals_the_score_of_the_predictions(task, metric):
    train, _ = adult_rows(1500)
    X = train[["age", "education-num", "hours-per-week", "capital-gain"]].to_numpy(dtype=float)
    y = (train["income"] == ">50K").to_numpy(dtype=int)
    if task == "multiclass":
        y = np.digitize(train["hours-per-week"].to_numpy(), [35, 45])
    params = {"objective": task, "verbose": -1, "num_threads": 1, "learning_rate": 0.2, "metric": "None"}
    if task == "multiclass":
        params["num_class"] = 3
    _, feval = lgb_metric(task, metric)
    recorded: dict = {}
    data = lgb.Dataset(X, y)
    booster = lgb.train(params, data, 15, valid_sets=[data], feval=feval, callbacks=[lgb.record_evaluation(recorded)])
    per_round = recorded["training"][metric]
    for rounds in (1, 5, 15):
        assert per_round[rounds - 1] == pytest.approx(score(metric, y, booster.predict(X, num_iteration=rounds)))
    assert len(set(np.round(per_round, 12))) > 1  # the score moves as trees are added
