"""Data-parallel training on a Dask cluster: adult split into 8 parquet files, read in batches (too large to send
whole to each worker), each fold trained across the workers with lightgbm.dask. The OOF score is within 0.002 of
the in-process run's, each fold's best iteration is recorded with the rule that chose it, and predicting the test
rows split into parts on the cluster gives that run's test_pred.parquet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers.configs import write_config
from tests.helpers.reliability import adult_data, adult_rows, cli


def write_parts(frame: pd.DataFrame, folder, n: int) -> None:
    folder.mkdir()
    bounds = np.linspace(0, len(frame), n + 1).astype(int)
    for k in range(n):
        frame.iloc[bounds[k] : bounds[k + 1]].to_parquet(folder / f"part_{k}.parquet", index=False, row_group_size=500)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dask_address):
    """The same experiment trained in-process and data-parallel on the cluster."""
    tmp_path = tmp_path_factory.mktemp("rows")
    train, test = adult_rows(8000, 1200)
    write_parts(train, tmp_path / "train", 8)
    write_parts(test, tmp_path / "test_parts", 4)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    data = adult_data(tmp_path / "train", tmp_path / "test.parquet", batch_rows=1000)
    model = {"num_boost_round": 120, "early_stopping_rounds": 15, "num_threads": 2, "params": {"learning_rate": 0.1}}
    config = write_config(tmp_path, "adult", data=data, cv={"n_splits": 3}, model=model)
    codes = [
        cli_code("train", "--config", config, "--run-id", "here", "-q"),
        cli_code("train", "--config", config, "--run-id", "there", "-q", "--cluster", dask_address),
    ]
    assert codes == [0, 0]
    return tmp_path, tmp_path / "runs" / "adult"


def cli_code(*argv) -> int:
    from pipeline.cli import main

    return main([str(a) for a in argv])


def test_data_parallel_oof_is_within_0002_of_in_process(runs):
    _, exp = runs
    here, there = (json.loads((exp / name / "scores.json").read_text()) for name in ("here", "there"))
    assert abs(here["oof_score"] - there["oof_score"]) < 0.002
    oof = pd.read_parquet(exp / "there" / "oof.parquet")
    assert there["oof_score"] == pytest.approx(roc_auc_score(oof["target"], oof["pred"]), abs=1e-12)
    assert len(oof) == 8000 and sorted(oof["fold"].unique()) == [0, 1, 2]
    assert len(there["best_iterations"]) == 3 and all(1 <= b <= 120 for b in there["best_iterations"])
    assert there["best_iteration_rule"].startswith("data-parallel (lightgbm.dask")
    assert here["best_iteration_rule"].startswith("early stopping")
    for fold in range(3):  # the fold models are LightGBM text cut at the recorded best iteration
        text = (exp / "there" / "models" / f"fold_{fold}.txt").read_text()
        assert text.count("\nTree=") == there["best_iterations"][fold]
        assert "[machines:" not in text and "local_listen_port" not in text


def test_predict_on_partitioned_input_equals_the_runs_test_pred(runs, capsys, dask_address):
    tmp_path, exp = runs
    output = tmp_path / "predictions"
    code, err = cli(capsys, "predict", "--run", exp / "there", "--input", tmp_path / "test_parts", "--output", output,
                    "--cluster", dask_address)  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in output.iterdir()) == [f"part_{k}.parquet" for k in range(4)]
    predicted = pd.concat([pd.read_parquet(output / f"part_{k}.parquet") for k in range(4)], ignore_index=True)
    test_pred = pd.read_parquet(exp / "there" / "test_pred.parquet")
    np.testing.assert_array_equal(predicted["pred"].to_numpy(), test_pred["pred"].to_numpy())
    assert (predicted["row_id"].to_numpy() == np.arange(1200)).all()
    code, err = cli(capsys, "predict", "--run", exp / "there", "--input", tmp_path / "test_parts", "--output", output)
    assert code == 2 and "already exists" in err  # an earlier folder of predictions is never replaced


def test_predict_on_the_cluster_reads_in_chunks_and_checks_drift_as_here(runs, dask_address):
    """Parts predicted as tasks, 100 rows at a time: the same predictions, conversion counts and drift measures
    (each task counts its rows in the run's reference bins) as the in-process predict."""
    from pipeline.compute.cluster import open_cluster
    from pipeline.predict import predict_file

    tmp_path, exp = runs
    here = predict_file(exp / "here", tmp_path / "test_parts", tmp_path / "chunked_here", chunk_size=100)
    with open_cluster(dask_address) as cluster:
        there = predict_file(exp / "here", tmp_path / "test_parts", tmp_path / "chunked_there", 100, cluster=cluster)
    assert here.drift is not None and there.drift is not None and here.drift.rows == there.drift.rows == 1200
    pd.testing.assert_frame_equal(here.drift.measures, there.drift.measures)
    assert here.conversion == there.conversion and here.rows == there.rows == 1200
    for k in range(4):
        name = f"part_{k}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "chunked_here" / name), pd.read_parquet(tmp_path / "chunked_there" / name)
        )


def test_local_workers_print_nothing_with_q(runs, capfd):
    """`local:N` workers share this terminal: with -q neither they (LightGBM's network notes) nor gbpipe print."""
    tmp_path, exp = runs
    capfd.readouterr()
    code = cli_code("train", "--config", tmp_path / "adult.toml", "--run-id", "quiet", "-q", "--cluster", "local:2")
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.strip() == str(exp / "quiet") and err == ""


def test_a_run_started_in_process_does_not_resume_across_the_workers(runs, capsys, dask_address):
    """Folds trained across the workers are other models: an unfinished in-process run is not finished with them."""
    tmp_path, exp = runs
    shutil.copytree(exp / "here", exp / "halfway.partial")
    (exp / "halfway.partial" / "manifest.json").unlink()
    code, err = cli(capsys, "train", "--config", tmp_path / "adult.toml", "--run-id", "halfway", "--resume",
                    "--cluster", dask_address)  # fmt: skip
    assert code == 2 and "was started with its folds trained another way" in err
    assert not (exp / "halfway").exists()
