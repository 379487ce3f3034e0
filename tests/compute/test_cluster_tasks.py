"""Stages on a Dask cluster of 2 single-threaded workers, task-parallel (the table fits one worker): train, tune,
ensemble, importance and select give the files the in-process run gives, byte for byte but for wall-clock times;
a worker killed mid-train is replaced and the run's files are the same; bad addresses and mismatched workers are
refused with exit 2."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.compute.cluster import refuse_mismatched_workers
from pipeline.core.errors import ConfigError
from tests.helpers.configs import write_config
from tests.helpers.reliability import adult_data, adult_rows, assert_message, cli, tree_hashes, untimed

TIMED = ("manifest.json", "report.md", "scores.json", "summary.json", "tune.json", "member.json", "selection.json")
NAMING = frozenset({"run", "run_id", "select_id"})  # which run or selection a document belongs to


def adult_config(tmp_path: Path, **sections) -> Path:
    """Real adult rows (3,000 train, 800 test), 4 folds, two LightGBM threads: folds side by side in process."""
    train, test = adult_rows(3000, 800)
    train.to_parquet(tmp_path / "train.parquet", index=False)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    model = {"num_boost_round": 120, "early_stopping_rounds": 15, "num_threads": 2, "params": {"learning_rate": 0.1}}
    data = adult_data(tmp_path / "train.parquet", tmp_path / "test.parquet")
    return write_config(tmp_path, "adult", data=data, cv={"n_splits": 4}, model=model, **sections)


def same_run_files(a: Path, b: Path) -> None:
    """Every file of two run folders equal: byte for byte, or as JSON without wall-clock fields and run names."""
    hashes_a, hashes_b = tree_hashes(a), tree_hashes(b)
    assert sorted(hashes_a) == sorted(hashes_b)
    for name, digest in hashes_a.items():
        if name == "manifest.json":  # the sha256 of each file, timed ones included: the files are compared instead
            continue
        if name.endswith(".skops"):  # a zip stamped with the time it was written; its predictions are compared
            continue
        if name.endswith(".json") and (name.endswith(TIMED) or name.startswith(("models/", "members/", "selected"))):
            first, second = (json.loads((root / name).read_text()) for root in (a, b))
            assert untimed(first, NAMING) == untimed(second, NAMING), name
        elif not name.endswith(TIMED):
            assert hashes_b[name] == digest, name


def test_train_on_cluster_equals_in_process(tmp_path, capsys, dask_address):
    config = adult_config(tmp_path)
    runs = tmp_path / "runs" / "adult"
    assert cli(capsys, "train", "--config", config, "--run-id", "here", "-q")[0] == 0
    code, err = cli(capsys, "train", "--config", config, "--run-id", "there", "--cluster", dask_address)
    assert code == 0, err
    assert "Dask cluster" in err and "2 workers" in err
    same_run_files(runs / "here", runs / "there")
    oof = pd.read_parquet(runs / "there" / "oof.parquet")
    assert len(oof) == 3000 and oof["fold"].nunique() == 4


def test_killed_worker_is_replaced_and_the_run_is_the_same(tmp_path, capsys, dask_address):
    from distributed import Client

    config = adult_config(tmp_path)
    runs = tmp_path / "runs" / "adult"
    assert cli(capsys, "train", "--config", config, "--run-id", "here", "-q")[0] == 0
    killed: list[int] = []
    with Client(dask_address) as observer:
        thread = threading.Thread(target=_kill_a_busy_worker, args=(observer, killed), daemon=True)
        thread.start()
        code, err = cli(capsys, "train", "--config", config, "--run-id", "there", "--cluster", dask_address, "-q")
        thread.join(timeout=60)
        assert code == 0, err
        assert killed, "no worker was busy with a fold to kill"
        observer.wait_for_workers(2, timeout=60)  # the nanny started a new one: later tests keep two
    same_run_files(runs / "here", runs / "there")


def _kill_a_busy_worker(client, killed: list[int]) -> None:
    """SIGKILL the process of the first worker seen training a fold of the run."""
    deadline = time.time() + 60
    while time.time() < deadline:
        busy = [w for w, keys in client.processing().items() if any("fold_task" in str(k) for k in keys)]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            time.sleep(0.3)  # into the fold's boosting rounds
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_tune_on_cluster_equals_in_process(tmp_path, capsys, dask_address):
    # Two trials proposed at a time: on the cluster both trials' folds are tasks at once.
    tune = {"plots": False, "n_startup_trials": 2, "n_trials": 3, "batch_trials": 2}
    config = adult_config(tmp_path, tune=tune)
    studies = {}
    for name, extra in (("here", ()), ("there", ("--cluster", dask_address))):
        code, err = cli(capsys, "tune", "--config", config, "--study-name", name, "-q", *extra)
        assert code == 0, err
        studies[name] = tmp_path / "runs" / "adult" / "tune" / name
    trials = [pd.read_parquet(s / "trials.parquet") for s in studies.values()]
    kept = [c for c in trials[0].columns if "time" not in c and "duration" not in c and "seconds" not in c]
    pd.testing.assert_frame_equal(trials[0][kept], trials[1][kept])
    best = [json.loads((s / "best_params.json").read_text()) for s in studies.values()]
    assert untimed(best[0], frozenset({"study", "usage"})) == untimed(best[1], frozenset({"study", "usage"}))
    assert best[0]["final"] is None or best[0]["final"]["fold_scores"] == best[1]["final"]["fold_scores"]


def test_importance_drift_ensemble_and_select_on_cluster_equal_in_process(tmp_path, capsys, dask_address, monkeypatch):
    monkeypatch.setattr("pipeline.importance.run.TASKS_PER_WORKER", 6)  # each fold's features in 3 tasks
    ensemble = {
        "members": [
            {"name": "lgb", "family": "lightgbm"},
            {"name": "lgb_deep", "family": "lightgbm", "params": {"num_leaves": 63}},
            {"name": "forest", "family": "extra_trees"},
        ],
        "combiners": ["soft_vote", "greedy"],
        "cache": False,
    }
    importance = {"n_repeats": 2, "null_repeats": 1, "null_num_boost_round": 30}
    select = {"inner_splits": 2, "num_boost_round": 40, "max_rounds": 2, "n_repeats": 1}
    config = adult_config(tmp_path, ensemble=ensemble, importance=importance, select=select)
    runs = tmp_path / "runs" / "adult"
    for name, extra in (("here", ()), ("there", ("--cluster", dask_address))):
        assert cli(capsys, "train", "--config", config, "--run-id", name, "-q")[0] == 0
        for stage in (("importance", "--run", runs / name), ("drift", "--run", runs / name)):
            code, err = cli(capsys, *stage, "-q", *extra)
            assert code == 0, err
        code, err = cli(capsys, "ensemble", "--config", config, "--run-id", f"{name}-ens", "-q", *extra)
        assert code == 0, err
        code, err = cli(capsys, "select", "--config", config, "--select-id", name, "-q", *extra)
        assert code == 0, err
    same_run_files(runs / "here", runs / "there")  # with its importance/ and drift/ files
    same_run_files(runs / "here-ens", runs / "there-ens")
    same_run_files(runs / "select" / "here", runs / "select" / "there")


def test_an_ensemble_sends_the_runs_data_to_the_workers_once(tmp_path, capsys, dask_address):
    """Three members of two families train their folds on the cluster, and the matrix, labels, folds and test rows
    go to the workers once for all of them (each as one task, run once), not once per member or fold."""
    from distributed import Client, get_task_stream

    members = [
        {"name": "lgb", "family": "lightgbm"},
        {"name": "lgb_deep", "family": "lightgbm", "params": {"num_leaves": 63}},
        {"name": "forest", "family": "extra_trees", "params": {"n_estimators": 20}},
    ]
    config = adult_config(tmp_path, ensemble={"members": members, "combiners": ["soft_vote"], "cache": False})
    with Client(dask_address) as observer, get_task_stream(observer) as stream:
        code, err = cli(capsys, "ensemble", "--config", config, "-q", "--cluster", dask_address)
    assert code == 0, err
    keys = [str(task["key"]) for task in stream.data]
    assert sum("as_sent" in key for key in keys) == 4  # X, y, folds, X_test
    assert sum("fold_task" in key for key in keys) == 8 and sum("sklearn_fold" in key for key in keys) == 4


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("local:0", r"'local:0' is not a Dask cluster address.*local:N"),
        ("http://host:8786", r"'http://host:8786' is not a Dask cluster address.*tcp://host:8786"),
        ("host:8786", r"'host:8786' is not a Dask cluster address"),
        ("tcp://127.0.0.1:9", r"tcp://127.0.0.1:9: no Dask scheduler answered.*dask scheduler"),
    ],
)
def test_bad_cluster_address_is_exit_2(tmp_path, capsys, address, message):
    config = write_config(tmp_path, "adult", data=adult_data(tmp_path / "absent.csv"))
    code, err = cli(capsys, "train", "--config", config, "--cluster", address)
    assert code == 2
    assert_message(err, message)
    assert not (tmp_path / "runs").exists()


def test_compute_cluster_in_the_config_is_checked(tmp_path, capsys):
    config = write_config(tmp_path, "adult", data=adult_data(tmp_path / "absent.csv"), compute={"cluster": "nowhere"})
    code, err = cli(capsys, "train", "--config", config)
    assert code == 2
    assert_message(err, r"compute\.cluster", r"'nowhere' is not a Dask cluster address")


def test_workers_with_other_versions_are_refused_by_name():
    mine = {"gbpipe": "0.1.0", "lightgbm": "4.7.0", "numpy": "2.4.6"}
    workers = {
        "tcp://10.0.0.1:4000": dict(mine),
        "tcp://10.0.0.2:4000": {**mine, "lightgbm": "4.5.0"},
        "tcp://10.0.0.3:4000": {**mine, "gbpipe": "not installed"},
    }
    with pytest.raises(ConfigError, match=r"10\.0\.0\.2:4000: lightgbm 4\.5\.0 \(here 4\.7\.0\)") as error:
        refuse_mismatched_workers(mine, workers, "--cluster tcp://sched:8786")
    assert "10.0.0.3:4000: gbpipe not installed (here 0.1.0)" in str(error.value)
    assert "10.0.0.1" not in str(error.value)
    refuse_mismatched_workers(mine, {"tcp://10.0.0.1:4000": dict(mine)}, "--cluster tcp://sched:8786")
