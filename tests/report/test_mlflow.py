"""`gbpipe report --run DIR --mlflow FOLDER`: params, scores and report files logged to a local
MLflow tracking folder and read back. Skipped when the optional mlflow extra is not installed."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from tests.helpers.report_runs import adult_runs, copy_run

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")


def test_report_logs_the_run_to_mlflow(tmp_path, tmp_path_factory, capsys):
    from mlflow.tracking import MlflowClient

    from pipeline.report.tracking import tracking_uri

    run = copy_run(adult_runs(tmp_path_factory)[0], tmp_path)
    folder = tmp_path / "mlruns"
    assert main(["report", "--run", str(run), "-q", "--mlflow", str(folder)]) == 0
    run_id = capsys.readouterr().out.split("mlflow: run ")[1].split()[0]
    client = MlflowClient(tracking_uri=tracking_uri(folder))
    logged = client.get_run(run_id)
    scores = json.loads((run / "scores.json").read_text())
    headline = json.loads((run / "report.json").read_text())["headline"]
    metrics = logged.data.metrics
    assert metrics["oof_score"] == scores["oof_score"] and metrics["holdout_score"] == scores["holdout_score"]
    assert (metrics["oof_ci_low"], metrics["oof_ci_high"]) == (headline["ci_low"], headline["ci_high"])
    assert metrics["oof_metrics.logloss"] == scores["oof_metrics"]["logloss"]
    history = client.get_metric_history(run_id, "fold_score")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == scores["fold_scores"]
    assert logged.data.params["config.data.target"] == "income" and logged.data.params["lightgbm.num_leaves"] == "31"
    assert logged.data.tags["gbpipe.run_id"] == run.name and logged.info.run_name == run.name
    files = {f.path for f in client.list_artifacts(run_id, "gbpipe")}
    assert {"gbpipe/report.html", "gbpipe/report.json", "gbpipe/scores.json", "gbpipe/config.toml"} <= files
    assert main(["report", "--compare", str(run), str(run), "--mlflow", str(folder)]) == 2
