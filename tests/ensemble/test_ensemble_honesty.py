"""The honesty guard on real rows with a shuffled target: members and combiners, nested ones included,
score at chance level, and no combiner is reported as a real gain."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.helpers.ensemble import ensemble_config, read_scores, run_ensemble


def test_shuffled_target_gives_chance_level_oof_for_members_and_combiners(tmp_path, adult_small):
    frame = pd.read_csv(adult_small)
    train = frame["split"] == "train"
    rng = np.random.default_rng(11)
    frame.loc[train, "income"] = rng.permutation(frame.loc[train, "income"].to_numpy())
    shuffled = tmp_path / "adult_shuffled.csv"
    frame.to_csv(shuffled, index=False)
    members = [
        {"name": "lgb", "family": "lightgbm"},
        {"name": "lgb_goss", "family": "lightgbm", "params": {"data_sample_strategy": "goss", "seed": 3}},
        {"name": "forest", "family": "random_forest", "params": {"n_estimators": 30, "min_samples_leaf": 5}},
        {"name": "logistic", "family": "logistic"},
    ]
    config = ensemble_config(
        tmp_path,
        "shuffled",
        {
            "train": str(shuffled),
            "split_column": "split",
            "target": "income",
            "task": "binary",
            "positive_label": ">50K",
        },
        members,
        model={"early_stopping": "inner"},
        combiners=["soft_vote", "greedy", "optimized", "stack"],
        stack_features=["age"],
    )
    scores = read_scores(run_ensemble(config))
    # 4,000 rows, ~24% positive: the AUC of a guess has a standard deviation of about 0.011.
    for name, model in scores["models"].items():
        assert abs(model["oof_score"] - 0.5) < 0.045, (name, model["oof_score"])
        assert model["gain_over_best_member"]["verdict"] != "better", name
    # Fitted on all OOF labels (and a raw feature) and scored on the same rows, the stack finds signal in
    # pure noise; its nested score, the one reported, does not.
    stack = scores["models"]["stack"]
    assert stack["in_sample_oof_score"] > stack["oof_score"] + 0.01
    assert scores["models"][scores["recommended"]]["complexity"] == 0  # a single member: nothing to gain
