"""Runs written before the stage packages (tests/fixtures/legacy_runs, made by the flat layout) still load,
predict the numbers they predicted then, and report."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline import load_run
from pipeline.cli import main
from tests.helpers.paths import ROOT

LEGACY = ROOT / "tests" / "fixtures" / "legacy_runs"


@pytest.fixture
def legacy(tmp_path):
    """A copy of the fixture runs: the report adds files to a run, and the fixture stays as the old code left it."""
    for name in ("legacy-train", "legacy-ensemble"):
        shutil.copytree(LEGACY / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    "run, expected", [("legacy-train", "pred_train.csv"), ("legacy-ensemble", "pred_ensemble.csv")]
)
def test_a_legacy_run_predicts_what_it_predicted_then(legacy, capsys, run, expected):
    out = legacy / f"{run}.csv"
    assert (
        main(
            [
                "predict",
                "--run",
                str(legacy / run),
                "--input",
                str(LEGACY / "wine_rows.csv"),
                "--output",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    # Within a few units in the last place: the probabilities go through exp (LightGBM's, NumPy's softmax), whose
    # last bit depends on the CPU's vector instructions, and the fixture was written on another machine.
    pd.testing.assert_frame_equal(
        pd.read_csv(out), pd.read_csv(LEGACY / expected), check_exact=False, rtol=1e-12, atol=1e-15
    )


def test_a_legacy_run_loads_through_the_api(legacy):
    fitted = load_run(legacy / "legacy-train")
    assert len(fitted.boosters) == 3 and fitted.task == "multiclass"
    frame = pd.read_csv(LEGACY / "wine_rows.csv")
    proba = fitted.predict(frame[list(fitted.schema.columns)].to_numpy(dtype="float64"))
    expected = pd.read_csv(LEGACY / "pred_train.csv")[["pred_0", "pred_1", "pred_2"]].to_numpy()
    assert proba.shape == expected.shape and abs(proba - expected).max() < 1e-12


@pytest.mark.parametrize("run, scores", [("legacy-train", "scores.json"), ("legacy-ensemble", "ensemble/scores.json")])
def test_a_legacy_run_reports(legacy, capsys, run, scores):
    assert main(["report", "--run", str(legacy / run), "-q"]) == 0
    report = json.loads((legacy / run / "report.json").read_text())
    saved = json.loads((legacy / run / scores).read_text())
    assert report["headline"]["score"] == pytest.approx(saved["oof_score"], abs=1e-12)
