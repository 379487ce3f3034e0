"""Interrupted, resumed and shared studies: kill -9 mid-trial, SIGTERM, concurrent processes on one
journal file, --workers, and several "machines" on one PostgreSQL database."""

from __future__ import annotations

import json
import re
import signal
import uuid
from collections import Counter

import optuna
from optuna.trial import TrialState

from pipeline.cli import main
from pipeline.tune.study import EXCLUDED_ATTR, REASON_ATTR, WORKER_ATTR
from tests.helpers.tune import journal_trials, postgres_url, run_cli, study_dir, tune_config, wait_for_running_trial

# Trials of about a second, so a signal sent once a trial has finished its first fold lands mid-trial.
SLOW = (
    "--set",
    "model.num_boost_round=120",
    "--set",
    "model.early_stopping_rounds=120",
    "--set",
    "model.params.learning_rate=0.05",
)


def check_shared_study(trials, n_trials: int) -> Counter:
    """Exactly n_trials counted trials with unique, gap-free numbers, nothing left running, one default
    trial; returns how many trials each worker ran."""
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    numbers = [t.number for t in trials]
    assert len(counted) == n_trials, Counter(t.state.name for t in trials)
    assert sorted(numbers) == list(range(len(numbers)))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    extra = [t for t in trials if t.state == TrialState.FAIL]  # only surplus claims of a race, never run
    assert all(t.user_attrs.get(EXCLUDED_ATTR) and "surplus" in t.user_attrs[REASON_ATTR] for t in extra)
    assert sum(t.user_attrs.get("gbpipe_role") == "defaults" for t in trials) == 1
    return Counter(t.user_attrs[WORKER_ATTR]["pid"] for t in counted)


def test_kill_9_mid_trial_then_resume_ends_with_exactly_n_trials(tmp_path, adult):
    config = tune_config(tmp_path, adult, pruner="none")
    journal = study_dir(config) / "study.journal"
    proc = run_cli(config, "--n-trials", "4", "-q", *SLOW)
    killed = wait_for_running_trial(proc, journal, min_complete=1, min_folds=1)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert journal_trials(journal)[killed].state == TrialState.RUNNING  # left behind by the dead process

    assert main(["tune", "--config", str(config), "--n-trials", "4", "--resume", "-q", *SLOW]) == 0
    trials = journal_trials(journal)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert sorted(t.number for t in trials) == list(range(5))
    dead = trials[killed]
    assert dead.state == TrialState.FAIL and dead.user_attrs[EXCLUDED_ATTR]
    assert "gone (killed or crashed)" in dead.user_attrs[REASON_ATTR]
    summary = json.loads((study_dir(config) / "tune.json").read_text())
    assert summary["counts"] == {
        "complete": 4,
        "pruned": 0,
        "failed": 0,
        "failed_excluded": 1,
        "running": 0,
        "waiting": 0,
    }


def test_sigterm_marks_the_running_trial_failed_and_exits_130(tmp_path, adult):
    config = tune_config(tmp_path, adult, pruner="none")
    journal = study_dir(config) / "study.journal"
    proc = run_cli(config, "--n-trials", "20", *SLOW)
    running = wait_for_running_trial(proc, journal, min_complete=1, min_folds=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    trials = journal_trials(journal)
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [running] == [trials[-1].number]
    assert "interrupted" in trials[running].user_attrs[REASON_ATTR] and trials[running].user_attrs[EXCLUDED_ATTR]


def test_three_processes_on_one_journal_record_every_trial_once(tmp_path, adult):
    config = tune_config(tmp_path, adult)
    n_per_worker = 4
    procs = [run_cli(config, "--n-trials", str(3 * n_per_worker), "--resume") for _ in range(3)]
    ran = 0
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        ran += int(re.search(r"this process ran (\d+) trial", err).group(1))
    per_worker = check_shared_study(journal_trials(study_dir(config) / "study.journal"), 3 * n_per_worker)
    assert ran == 3 * n_per_worker == sum(per_worker.values())  # none lost: each process's count is recorded
    assert len(per_worker) >= 2


def test_workers_option_runs_processes_sharing_the_budget(tmp_path, adult):
    config = tune_config(tmp_path, adult)
    assert main(["tune", "--config", str(config), "--n-trials", "8", "--workers", "2", "-q"]) == 0
    per_worker = check_shared_study(journal_trials(study_dir(config) / "study.journal"), 8)
    summary = json.loads((study_dir(config) / "tune.json").read_text())
    assert summary["workers"] == 2 and summary["threads_per_worker"] == 1 and summary["n_finished"] == 8
    assert sum(per_worker.values()) == 8


def test_three_machines_on_one_postgresql_database(tmp_path, adult):
    url = postgres_url()
    name = f"test-{uuid.uuid4().hex[:8]}"
    config = tune_config(tmp_path, adult)
    procs = [run_cli(config, "--storage", url, "--study-name", name, "--n-trials", "12", "--resume") for _ in range(3)]
    try:
        ran = 0
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            ran += int(re.search(r"this process ran (\d+) trial", err).group(1))
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
        per_worker = check_shared_study(trials, 12)
        assert ran == 12 == sum(per_worker.values())
        summary = json.loads((study_dir(config, name) / "tune.json").read_text())
        assert summary["storage"].startswith("postgresql") and ":***@" in summary["storage"]
    finally:
        for proc in procs:
            proc.kill()
        if name in optuna.get_all_study_names(url):
            optuna.delete_study(study_name=name, storage=url)
