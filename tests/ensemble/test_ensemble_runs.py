"""`gbpipe ensemble` end to end on real data (adult, california housing, wine): the run folder, honest
scores that can be recomputed from its files, and `gbpipe predict` reproducing its test predictions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.core.metrics import GREATER_IS_BETTER, score
from pipeline.core.progress import Progress
from pipeline.core.run_folder import RunReader
from pipeline.data.prepare import prepare
from pipeline.ensemble.combiners import Combiner
from pipeline.ensemble.model import load_ensemble
from pipeline.ensemble.run import ensemble
from pipeline.ensemble.stack import MetaModel
from tests.helpers.datasets import shared_file
from tests.helpers.ensemble import ensemble_config, newest_ensemble_run, pred_columns, read_scores, run_ensemble

ADULT = {"split_column": "split", "target": "income", "task": "binary", "positive_label": ">50K"}
ADULT_MEMBERS = [
    {"name": "lgb", "family": "lightgbm"},
    {"name": "lgb_dart", "family": "lightgbm", "num_boost_round": 40, "params": {"boosting": "dart"}},
    {"name": "forest", "family": "extra_trees", "params": {"n_estimators": 40, "min_samples_leaf": 5}},
    {"name": "logistic", "family": "logistic"},
]
CANCER = {"train": "sklearn:breast_cancer", "test_size": 0.25, "target": "target", "task": "binary"}
ALL_COMBINERS = ["hard_vote", "soft_vote", "greedy", "optimized", "stack"]


def encoded(values: pd.Series, classes: list) -> np.ndarray:
    lookup = {str(c): i for i, c in enumerate(classes)}
    return values.astype(str).map(lookup).to_numpy()


def check_scores_match_files(run: Path) -> dict:
    """Every model's OOF and holdout score recomputed from the parquet files; guard rules hold."""
    scores = read_scores(run)
    schema = json.loads((run / "schema.json").read_text())
    classes, metric = schema["labels"]["classes"], scores["metric"]
    oof = pd.read_parquet(run / "ensemble" / "oof.parquet")
    test = pd.read_parquet(run / "ensemble" / "test_pred.parquet")
    y = oof["target"].to_numpy(float) if scores["task"] == "regression" else encoded(oof["target"], classes)
    y_test = test["target"].to_numpy(float) if scores["task"] == "regression" else encoded(test["target"], classes)
    for name, model in scores["models"].items():
        assert model["oof_score"] == pytest.approx(score(metric, y, pred_columns(oof, f"{name}.", classes)), rel=1e-12)
        assert model["holdout_score"] == pytest.approx(
            score(metric, y_test, pred_columns(test, f"{name}.", classes)), rel=1e-12
        )
        low, high = model["oof_ci"]
        assert low <= model["oof_score"] <= high
        gain = model["gain_over_best_member"]
        expected = {True: "better", False: "worse" if gain["high"] < 0 else "within noise"}[gain["low"] > 0]
        assert gain["verdict"] == ("reference" if name == scores["best_member"] else expected)
    for name in scores["members"]:
        member = json.loads((run / "members" / name / "scores.json").read_text())
        assert member["oof_score"] == pytest.approx(scores["models"][name]["oof_score"], rel=1e-12)
    sign = 1 if GREATER_IS_BETTER[metric] else -1
    best_score = max(sign * m["oof_score"] for m in scores["models"].values())
    assert sign * scores["models"][scores["best_model"]]["oof_score"] == best_score  # ties: either is right
    within = [
        n
        for n, m in scores["models"].items()
        if m["within_noise_of_best"] and (m["kind"] == "member" or m["gain_over_best_member"]["gain"] >= 0)
    ]
    recommended = scores["models"][scores["recommended"]]
    assert scores["recommended"] in within
    assert recommended["complexity"] == min(scores["models"][n]["complexity"] for n in within)
    weights = json.loads((run / "ensemble" / "weights.json").read_text())
    for name in ("greedy", "optimized"):
        if name in weights["combiners"]:
            w = np.array(list(weights["combiners"][name]["weights"].values()))
            assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    return scores


def predict_reproduces_test_pred(run: Path, rows: pd.DataFrame, tmp_path: Path) -> None:
    """`gbpipe predict` on the held-out rows gives the run's own test predictions."""
    source, out = tmp_path / "rows.parquet", tmp_path / "predicted.parquet"
    rows.to_parquet(source, index=False)
    assert main(["predict", "--run", str(run), "--input", str(source), "--output", str(out), "-q"]) == 0
    predicted = pd.read_parquet(out)
    expected = pd.read_parquet(run / "ensemble" / "test_pred.parquet")
    classes = json.loads((run / "schema.json").read_text())["labels"]["classes"]
    np.testing.assert_allclose(
        pred_columns(predicted, "", classes), pred_columns(expected, "", classes), rtol=1e-10, atol=1e-12
    )
    if "label_pred" in expected:
        assert predicted["label_pred"].astype(str).tolist() == expected["label_pred"].astype(str).tolist()


def test_adult_binary_with_four_families_rank_blending_and_a_stack_on_raw_features(tmp_path, adult_small):
    config = ensemble_config(
        tmp_path,
        "adult",
        {"train": str(adult_small), **ADULT},
        ADULT_MEMBERS,
        combiners=ALL_COMBINERS,
        blend_on="rank",
        stack_features=["age", "hours-per-week"],
        use="stack",
    )
    run = run_ensemble(config)
    reader = RunReader(run)
    for name in reader.files:
        reader.path(name)  # size and sha256 of every file match the manifest
    assert {
        f"members/{m['name']}/models/fold_0{ext}" for m, ext in zip(ADULT_MEMBERS, [".txt", ".txt", ".skops", ".skops"])
    } <= set(reader.files)
    scores = check_scores_match_files(run)
    assert scores["selected"] == "stack" and scores["n_compared"] == 4000 and scores["n_holdout"] == 1000
    assert scores["models"]["lgb"]["oof_score"] > 0.88 and scores["models"]["stack"]["oof_score"] > 0.88
    assert "nested" in scores["models"]["stack"]["score_source"]
    assert scores["holdout_score"] == scores["models"]["stack"]["holdout_score"]
    test_rows = pd.read_csv(adult_small).query("split == 'test'").drop(columns=["split", "income"])
    predict_reproduces_test_pred(run, test_rows, tmp_path)


def test_california_housing_regression(tmp_path):
    frame = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(2500, random_state=1)
    data = tmp_path / "housing.parquet"
    frame.to_parquet(data, index=False)
    members = [
        {"name": "lgb", "family": "lightgbm"},
        {"name": "forest", "family": "random_forest", "params": {"n_estimators": 30}},
        {"name": "ridge", "family": "ridge"},
        {"name": "hgb", "family": "hist_gradient_boosting", "params": {"max_iter": 60}},
    ]
    config = ensemble_config(
        tmp_path,
        "housing",
        {"train": str(data), "test_size": 0.2, "target": "median_house_value", "task": "regression"},
        members,
        combiners=["soft_vote", "greedy", "optimized", "stack"],
        use="optimized",
    )
    run = run_ensemble(config)
    scores = check_scores_match_files(run)
    spread = float(frame["median_house_value"].std())
    assert scores["models"]["lgb"]["oof_score"] < 0.6 * spread  # real signal, not the mean
    assert (
        scores["models"]["optimized"]["oof_score"]
        <= min(scores["models"][m]["oof_score"] for m in scores["members"]) * 1.05
    )
    prep = prepare(load_config(config))  # the held-out rows come from the experiment's own split
    predict_reproduces_test_pred(run, prep.tables.test.drop(columns=["median_house_value"]), tmp_path)


def test_wine_multiclass_every_model_of_the_run_reproduces_its_test_predictions(tmp_path):
    members = [
        {"name": "lgb", "family": "lightgbm", "params": {"min_data_in_leaf": 5, "num_leaves": 7}},
        {"name": "trees", "family": "extra_trees", "params": {"n_estimators": 40}},
        {"name": "logistic", "family": "logistic"},
        {"name": "hgb", "family": "hist_gradient_boosting", "params": {"max_iter": 40}},
    ]
    config = ensemble_config(
        tmp_path,
        "wine",
        {"train": "sklearn:wine", "test_size": 0.25, "target": "target", "task": "multiclass"},
        members,
        cv={"n_splits": 4, "seed": 1},
        combiners=ALL_COMBINERS,
        stack_model="lightgbm",
        stack_lgb_rounds=40,
    )
    run = run_ensemble(config)
    scores = check_scores_match_files(run)
    assert (run / "ensemble" / "meta_model.txt").is_file()
    assert all(scores["models"][m]["oof_score"] < 0.5 for m in ("lgb", "logistic"))  # log-loss, 3 classes
    prep = prepare(load_config(config))
    expected = pd.read_parquet(run / "ensemble" / "test_pred.parquet")
    reader = RunReader(run)
    member_preds = {}
    for name in scores["members"]:  # each member loaded alone, as `gbpipe predict` would if it were selected
        member_preds[name] = load_ensemble(reader, name).predict(prep.X_test)
    weights = reader.read_json("ensemble/weights.json")
    meta = MetaModel.from_dict(
        reader.read_json("ensemble/meta_model.json"), reader.read_bytes("ensemble/meta_model.txt").decode()
    )
    for name in scores["models"]:
        if name in member_preds:
            pred = member_preds[name]
        else:
            combiner = Combiner.from_dict(weights["combiners"][name], meta if name == "stack" else None)
            pred = combiner.predict([member_preds[m] for m in combiner.members])
        np.testing.assert_allclose(pred, pred_columns(expected, f"{name}.", [0, 1, 2]), rtol=1e-10, atol=1e-12)
    predict_reproduces_test_pred(run, prep.tables.test.drop(columns=["target"]), tmp_path)


def test_identical_members_come_from_the_cache_and_their_soft_vote_is_the_member(tmp_path, capsys):
    members = [{"name": "lgb_a", "family": "lightgbm"}, {"name": "lgb_b", "family": "lightgbm"}]
    config = ensemble_config(
        tmp_path,
        "cancer",
        {"train": "sklearn:breast_cancer", "test_size": 0.25, "target": "target", "task": "binary"},
        members,
        combiners=["soft_vote"],
    )
    assert main(["ensemble", "--config", str(config)]) == 0
    log = capsys.readouterr().err
    assert "lgb_a (lightgbm, trained)" in log and "lgb_b (lightgbm, cache)" in log
    run = next((tmp_path / "runs" / "cancer").glob("*-ensemble"))
    oof = pd.read_parquet(run / "ensemble" / "oof.parquet")
    test = pd.read_parquet(run / "ensemble" / "test_pred.parquet")
    np.testing.assert_array_equal(oof["soft_vote.pred"], oof["lgb_a.pred"])
    np.testing.assert_array_equal(test["soft_vote.pred"], test["lgb_a.pred"])
    assert main(["ensemble", "--config", str(config), "--run-id", "again"]) == 0
    assert "lgb_a (lightgbm, cache)" in capsys.readouterr().err
    assert (run.parent / "again" / "members" / "lgb_a" / "oof.parquet").read_bytes() == (
        run / "members" / "lgb_a" / "oof.parquet"
    ).read_bytes()


def test_a_lightgbm_member_a_training_run_already_has_is_taken_from_that_run(tmp_path, capsys):
    members = [
        {"name": "lgb", "family": "lightgbm"},
        {"name": "lgb_fast", "family": "lightgbm", "params": {"learning_rate": 0.3}},
    ]
    config = ensemble_config(tmp_path, "cancer", CANCER, members, combiners=["soft_vote"])
    assert main(["train", "--config", str(config), "-q"]) == 0
    train_run = (tmp_path / "runs" / "cancer" / "LATEST").read_text().strip()
    assert main(["ensemble", "--config", str(config)]) == 0
    log = capsys.readouterr().err
    assert f"the same model as training run {train_run}" in log
    assert "lgb (lightgbm, run)" in log and "lgb_fast (lightgbm, trained)" in log
    run = newest_ensemble_run(tmp_path / "runs" / "cancer")
    taken = RunReader(run)
    trained = RunReader(tmp_path / "runs" / "cancer" / train_run)
    assert taken.read_bytes("members/lgb/models/fold_0.txt") == trained.read_bytes("models/fold_0.txt")
    retrained = RunReader(ensemble(load_config(config), run_id="retrained", use_cache=False))
    for name in ("oof.parquet", "test_pred.parquet"):
        np.testing.assert_array_equal(
            taken.read_parquet(f"members/lgb/{name}")["pred"], retrained.read_parquet(f"members/lgb/{name}")["pred"]
        )
    assert taken.read_json("members/lgb/scores.json")["oof_score"] == trained.read_json("scores.json")["oof_score"]


def test_a_training_run_altered_on_disk_is_not_taken_and_the_member_is_trained(tmp_path, capsys):
    config = ensemble_config(tmp_path, "cancer", CANCER, [{"name": "lgb", "family": "lightgbm"}], combiners=[])
    assert main(["train", "--config", str(config), "-q"]) == 0
    train_run = tmp_path / "runs" / "cancer" / (tmp_path / "runs" / "cancer" / "LATEST").read_text().strip()
    with open(train_run / "oof.parquet", "ab") as handle:
        handle.write(b"x")
    assert main(["ensemble", "--config", str(config)]) == 0
    log = capsys.readouterr().err
    assert f"warning: training run {train_run} is unreadable ({train_run / 'oof.parquet'} does not match" in log
    assert "lgb (lightgbm, trained)" in log


def test_an_interrupted_ensemble_resumes_with_the_members_it_finished(tmp_path, monkeypatch):
    import pipeline.ensemble.steps as ensemble_module  # where a member is trained, one step at a time

    members = [{"name": "lgb", "family": "lightgbm"}, {"name": "logistic", "family": "logistic"}]
    config = ensemble_config(
        tmp_path,
        "cancer",
        {"train": "sklearn:breast_cancer", "target": "target", "task": "binary"},
        members,
        combiners=["soft_vote", "stack"],
    )
    cfg = load_config(config)
    real_train = ensemble_module.train_member

    def interrupted(cfg, prep, member, progress, stop=None, cluster=None):
        if member.name == "logistic":
            raise KeyboardInterrupt
        return real_train(cfg, prep, member, progress, stop, cluster)

    monkeypatch.setattr(ensemble_module, "train_member", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensemble(cfg, use_cache=False)
    partial = next((tmp_path / "runs" / "cancer").glob("*.partial"))
    assert (partial / "members" / "lgb" / "member.json").is_file()
    monkeypatch.setattr(ensemble_module, "train_member", real_train)
    log = io.StringIO()
    run = ensemble(cfg, resume=True, progress=Progress(stream=log), use_cache=False)
    assert "lgb (lightgbm, resumed)" in log.getvalue() and "logistic (logistic, trained)" in log.getvalue()
    assert not partial.exists() and check_scores_on_oof(run)


def check_scores_on_oof(run: Path) -> bool:
    scores = read_scores(run)
    return set(scores["models"]) == {"lgb", "logistic", "soft_vote", "stack"}


def test_predict_refuses_an_ensemble_run_whose_member_model_was_altered(tmp_path, capsys):
    members = [{"name": "lgb", "family": "lightgbm"}, {"name": "logistic", "family": "logistic"}]
    config = ensemble_config(
        tmp_path,
        "cancer",
        {"train": "sklearn:breast_cancer", "test_size": 0.2, "target": "target", "task": "binary"},
        members,
        combiners=["soft_vote"],
        use="soft_vote",
    )
    run = run_ensemble(config)
    model = run / "members" / "logistic" / "models" / "fold_1.skops"
    model.write_bytes(model.read_bytes()[:-10])
    rows = tmp_path / "rows.csv"
    pd.read_csv(io.StringIO("a\n1\n")).to_csv(rows, index=False)
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(tmp_path / "o.csv")]) == 4
    assert "fold_1.skops" in capsys.readouterr().err
