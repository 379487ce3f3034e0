"""`gbpipe report --run` on real runs (adult binary, california_housing regression, wine multiclass):
the files it writes, that its numbers are the run's numbers, and the sections each task gets."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.metrics import score
from pipeline.core.run_folder import RunReader
from tests.helpers.report_runs import adult_runs, copy_run, housing_run, wine_run

REPORT_FILES = ("report.html", "report.json", "report/report.md")


def write_report(run: Path) -> dict:
    assert main(["report", "--run", str(run), "-q"]) == 0
    return json.loads((run / "report.json").read_text())


def scores_of(run: Path) -> dict:
    return json.loads((run / "scores.json").read_text())


def test_binary_report_files_numbers_and_sections(tmp_path, tmp_path_factory, capsys):
    run = copy_run(adult_runs(tmp_path_factory)[0], tmp_path)
    training_md = (run / "report.md").read_bytes()
    doc = write_report(run)
    out = capsys.readouterr().out
    scores = scores_of(run)
    assert f"report: {run / 'report.html'}" in out and f"{scores['oof_score']:.5g}" in out
    manifest = RunReader(run).manifest["files"]
    for name in REPORT_FILES:
        assert manifest[name]["stage"] == "report"
        assert manifest[name]["sha256"] == hashlib.sha256((run / name).read_bytes()).hexdigest()
    assert (run / "report.md").read_bytes() == training_md and manifest["report.md"]["stage"] == "train"
    head = doc["headline"]
    assert head["score"] == scores["oof_score"] and head["holdout_score"] == scores["holdout_score"]
    assert head["ci_low"] < head["score"] < head["ci_high"] and head["ci_high"] - head["ci_low"] < 0.1
    assert doc["section_order"] == ["overview", "data", "cv", "classification", "holdout", "importance", "provenance"]
    sections = doc["sections"]
    assert sections["classification"]["facts"]["ROC AUC (OOF)"] == pytest.approx(
        scores["oof_metrics"]["auc"], abs=1e-12
    )
    folds = sections["cv"]["tables"]["folds"]["rows"]
    assert [r[6] for r in folds] == scores["fold_scores"] and [r[5] for r in folds] == scores["best_iterations"]
    assert sum(r[3] for r in folds) == scores["n_rows"] == 3000
    thresholds = sections["classification"]["tables"]["thresholds"]["rows"]
    at_half = next(r for r in thresholds if r[0] == 0.5)
    assert at_half[6] == pytest.approx(scores["oof_metrics"]["accuracy"], abs=1e-12)
    metrics = {r[0]: r for r in sections["holdout"]["tables"]["metrics"]["rows"]}
    assert metrics["auc"][2] == scores["holdout_metrics"]["auc"]
    balance = {r[0]: r[1] for r in sections["data"]["tables"]["target"]["rows"]}
    oof = pd.read_parquet(run / "oof.parquet")
    assert balance == oof["target"].value_counts().to_dict()


def test_report_is_self_contained_and_markdown_links_resolve(tmp_path, tmp_path_factory):
    run = copy_run(adult_runs(tmp_path_factory)[0], tmp_path)
    doc = write_report(run)
    page = (run / "report.html").read_text()
    n_figures = sum(len(s["figures"]) for s in doc["sections"].values())
    assert n_figures >= 7 and page.count("<img ") == n_figures
    assert re.findall(r'<img [^>]*src="(?!data:image/png;base64,)', page) == []
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must not load anything from the network"
    md = (run / "report/report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(links) == n_figures and all((run / "report" / link).is_file() for link in links)
    for entry in doc["sections"]["provenance"]["tables"]["artifacts"]["rows"]:
        assert entry[1] != "report"  # the report lists the run as it was before the report


def test_report_again_replaces_its_own_files_only(tmp_path, tmp_path_factory):
    run = copy_run(adult_runs(tmp_path_factory)[0], tmp_path)
    write_report(run)
    before = json.loads((run / "manifest.json").read_text())["files"]
    write_report(run)
    after = json.loads((run / "manifest.json").read_text())["files"]
    assert {k: v for k, v in after.items() if v["stage"] != "report"} == {
        k: v for k, v in before.items() if v["stage"] != "report"
    }
    RunReader(run)  # every hash still verifies
    for name in after:
        RunReader(run).path(name)


def test_regression_report(tmp_path, tmp_path_factory):
    run = copy_run(housing_run(tmp_path_factory), tmp_path)
    doc = write_report(run)
    scores = scores_of(run)
    assert doc["headline"]["score"] == scores["oof_score"] and doc["headline"]["metric"] == "rmse"
    assert doc["section_order"] == ["overview", "data", "cv", "regression", "holdout", "importance", "provenance"]
    reg = doc["sections"]["regression"]
    assert reg["facts"]["RMSE"] == pytest.approx(scores["oof_metrics"]["rmse"], rel=1e-12)
    assert reg["facts"]["R²"] == pytest.approx(scores["oof_metrics"]["r2"], rel=1e-12)
    ranges = reg["tables"]["error_by_range"]["rows"]
    assert sum(r[1] for r in ranges) == scores["n_validated"] == 2400 and len(ranges) == 10
    oof = pd.read_parquet(run / "oof.parquet")
    assert ranges[-1][2] > ranges[0][2]  # ranges go up the target
    assert np.average([r[5] for r in ranges], weights=[r[1] for r in ranges]) == pytest.approx(
        score("mae", oof["target"].to_numpy(), oof["pred"].to_numpy()), rel=1e-9
    )
    missing = {r[0]: r[1] for r in doc["sections"]["data"]["tables"]["missing"]["rows"]}
    assert set(missing) == {"total_bedrooms"} and 0 < missing["total_bedrooms"] < 0.05
    schema = json.loads((run / "schema.json").read_text())
    n_categories = len(schema["features"]["categories"]["ocean_proximity"])
    assert doc["sections"]["data"]["tables"]["categorical"]["rows"][0][:2] == ["ocean_proximity", n_categories]
    assert n_categories >= 4


def test_multiclass_report(tmp_path, tmp_path_factory):
    run = copy_run(wine_run(tmp_path_factory), tmp_path)
    doc = write_report(run)
    scores = scores_of(run)
    assert doc["headline"]["score"] == scores["oof_score"] and doc["headline"]["metric"] == "logloss"
    cls = doc["sections"]["classification"]
    per_class = cls["tables"]["per_class"]["rows"]
    assert [r[0] for r in per_class] == ["0", "1", "2"] and sum(r[1] for r in per_class) == scores["n_rows"]
    assert cls["facts"]["accuracy"] == pytest.approx(scores["oof_metrics"]["accuracy"], abs=1e-12)
    assert cls["facts"]["macro F1"] == pytest.approx(scores["oof_metrics"]["f1_macro"], abs=1e-12)
    confusion = cls["tables"]["confusion"]["rows"]
    assert [sum(r[1:]) for r in confusion] == [r[1] for r in per_class]
    assert "holdout" in doc["sections"] and doc["headline"]["holdout_score"] == scores["holdout_score"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--run", "{missing}"], 2, "does not exist"),
        (["--run", "{unfinished}"], 4, "manifest.json is missing"),
        (["--run", "{run}", "--n-boot", "10"], 2, "--n-boot must be at least 100"),
        (["--run", "{run}", "--output", "{tmp}"], 2, "--output goes with --compare"),
        (["--compare", "{run}"], 2, "at least two runs"),
    ],
)
def test_report_errors(tmp_path, tmp_path_factory, capsys, args, code, message):
    run = adult_runs(tmp_path_factory)[0]
    (tmp_path / "unfinished").mkdir()
    filled = [
        a.format(missing=tmp_path / "nope", unfinished=tmp_path / "unfinished", run=run, tmp=tmp_path) for a in args
    ]
    assert main(["report", *filled, "-q"]) == code
    assert message in capsys.readouterr().err
