"""Report sections of the later stages: tuning, importance (real stages), ensembles (a real ensemble run),
feature selection and the features summary (documented formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.artifacts import json_bytes
from pipeline.core.run_folder import add_files
from tests.helpers.configs import write_config
from tests.helpers.report_runs import add_selection, adult_config, copy_run, staged_adult


def report(run: Path) -> dict:
    assert main(["report", "--run", str(run), "-q"]) == 0
    return json.loads((run / "report.json").read_text())


def test_tuning_and_importance_sections_from_the_real_stages(tmp_path_factory):
    run = staged_adult(tmp_path_factory)
    doc = report(run)
    assert doc["section_order"] == [
        "overview",
        "data",
        "cv",
        "classification",
        "holdout",
        "importance",
        "tuning",
        "provenance",
    ]
    study = run.parent / "tune" / "default"
    tune = json.loads((study / "tune.json").read_text())
    tuning = doc["sections"]["tuning"]
    assert tuning["facts"]["best value"] == tune["best"]["value"] and tuning["facts"]["finished trials"] == 3
    assert "this run used its best parameters" in tuning["text"][0]
    best = json.loads((study / "best_params.json").read_text())["params"]
    assert {r[0]: r[1] for r in tuning["tables"]["best_params_default"]["rows"]} == best
    assert len(tuning["figures"]) == 3  # the study's optimisation history, parameter importances, slices

    importance = doc["sections"]["importance"]
    summary = json.loads((run / "importance" / "summary.json").read_text())
    shown = {r[0]: r[1:] for r in importance["tables"]["importance_permutation"]["rows"]}
    for record in summary["permutation"]:
        mean, std, low, high = shown[record["feature"]]
        assert (mean, std, low, high) == (record["value"], record["std"], record["ci_low"], record["ci_high"])
    nulls = {r[0]: r for r in importance["tables"]["importance_null"]["rows"]}
    for record in summary["null"]["features"]:
        assert nulls[record["feature"]][4] == record["p_value"] and nulls[record["feature"]][5] == record["value"]
    assert {"importance_gain", "importance_permutation", "importance_null"} <= set(importance["figures"])


def test_selection_and_features_summary_sections(tmp_path, tmp_path_factory):
    run = copy_run(staged_adult(tmp_path_factory), tmp_path)
    features = ["age", "education-num", "capital-gain", "relationship"]
    add_selection(run, features, nested=0.8812)
    summary = {
        "source": "online_retail.parquet",
        "entity": "CustomerID",
        "time": "InvoiceDate",
        "label": {"column": "label", "definition": "spend in the cutoff month above 300"},
        "event_lines": 541909,
        "excluded_lines_without_entity": 135080,
        "train_cutoffs": ["2011-10-01"],
        "test_cutoff": "2011-11-01",
        "rows_per_cutoff": {"2011-10-01": 3890, "2011-11-01": 4102},
        "positive_rate_per_cutoff": {"2011-10-01": 0.071, "2011-11-01": 0.082},
        "nan_share_per_feature": {"spend_30d": 0.4, "orders_90d": 0.1},
    }
    add_files(run, stage="features", files={"features_summary.json": json_bytes(summary)})
    doc = report(run)
    importance = doc["sections"]["importance"]
    assert importance["facts"]["nested OOF score"] == 0.8812
    assert "this run was not trained on its list" in " ".join(importance["text"])
    rows = importance["tables"]["selection_stability"]["rows"]
    assert {r[0] for r in rows if r[2]} == set(features)
    data = doc["sections"]["data"]
    assert data["tables"]["cutoffs"]["rows"] == [
        ["2011-10-01", "train", 3890, 0.071],
        ["2011-11-01", "test", 4102, 0.082],
    ]
    assert data["tables"]["nan_share"]["rows"] == [["spend_30d", 0.4], ["orders_90d", 0.1]]
    assert data["facts"]["lines without an entity (left out)"] == 135080 and "cutoffs" in data["figures"]
    assert "Nested OOF" not in " ".join(doc["headline"]["lines"])  # the run did not train on the selection


def test_nested_oof_in_the_headline_when_the_run_trained_on_the_selection(tmp_path):
    config = adult_config(tmp_path)
    features = ["age", "education-num", "capital-gain", "relationship", "hours-per-week"]
    assert main(["train", "--config", str(config), "-q", "--set", f"data.features={json.dumps(features)}"]) == 0
    exp = tmp_path / "runs" / "adult"
    run = exp / (exp / "LATEST").read_text().strip()
    add_selection(run, features, nested=0.8765)
    doc = report(run)
    assert any("Nested OOF" in line and "0.8765" in line for line in doc["headline"]["lines"])
    assert "this run was trained on its features" in " ".join(doc["sections"]["importance"]["text"])


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ensemble")
    source = adult_config(base)
    config = write_config(
        base,
        "adult_ens",
        data=json.loads(json.dumps(_data_of(source))),
        cv={"n_splits": 3},
        ensemble={
            "members": [{"name": "lgb", "family": "lightgbm"}, {"name": "logit", "family": "logistic"}],
            "combiners": ["soft_vote", "stack"],
            "bootstrap_n": 200,
        },
    )
    assert main(["ensemble", "--config", str(config), "-q"]) == 0
    exp = base / "runs" / "adult_ens"
    return next(
        p.parent.parent for p in exp.glob("*/ensemble/scores.json") if (p.parent.parent / "manifest.json").is_file()
    )


def _data_of(config: Path) -> dict:
    import tomllib

    return tomllib.loads(config.read_text())["data"]


def test_ensemble_run_report(ensemble_run):
    doc = report(ensemble_run)
    scores = json.loads((ensemble_run / "ensemble" / "scores.json").read_text())
    assert (
        doc["headline"]["score"] == scores["oof_score"] and doc["headline"]["holdout_score"] == scores["holdout_score"]
    )
    assert doc["section_order"] == ["overview", "data", "cv", "classification", "holdout", "ensemble", "provenance"]
    section = doc["sections"]["ensemble"]
    assert section["facts"]["recommended model"] == scores["recommended"]
    rows = {r[0]: r for r in section["tables"]["ensemble_models"]["rows"]}
    assert set(rows) == set(scores["models"]) == {"lgb", "logit", "soft_vote", "stack"}
    for name, model in scores["models"].items():
        assert rows[name][2] == model["oof_score"] and rows[name][3:5] == model["oof_ci"]
    weights = {r[0]: r for r in section["tables"]["ensemble_weights"]["rows"]}
    assert set(weights) == {"soft_vote", "stack"}
    folds = doc["sections"]["cv"]["tables"]["folds"]["rows"]
    assert len(folds) == 3 and sum(r[3] for r in folds) == scores["n_compared"]
    assert any("Ensemble" in line and scores["selected"] in line for line in doc["headline"]["lines"])
