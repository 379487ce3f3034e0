"""Helpers of the tuning tests: a small real adult slice, its config, the CLI in a subprocess, the study's trials,
and the PostgreSQL test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from tests.helpers.configs import write_config
from tests.helpers.paths import ROOT

POSTGRES_ENV = "GBPIPE_TEST_POSTGRES_URL"


def tune_config(
    tmp_path: Path, adult: pd.DataFrame, rows: int = 2000, name: str = "adult_tune", params: dict | None = None, **tune
) -> Path:
    """A fast adult experiment: `rows` real training rows, 3 folds, few rounds, one thread, no plots."""
    csv = tmp_path / f"{name}.csv"
    if not csv.exists():
        adult[adult["split"] == "train"].sample(rows, random_state=1).drop(columns="split").to_csv(csv, index=False)
    return write_config(
        tmp_path,
        name,
        data={"train": str(csv), "target": "income", "task": "binary", "positive_label": ">50K"},
        cv={"n_splits": 3},
        model={"num_boost_round": 50, "early_stopping_rounds": 10, "params": params or {"learning_rate": 0.2}},
        tune={"plots": False, "n_startup_trials": 3, **tune},
    )


def study_dir(config: Path, study: str = "default") -> Path:
    return config.parent / "runs" / config.stem / "tune" / study


def cli_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "tune", "--config", str(config), *args]


def run_cli(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(config, *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def journal_trials(journal: Path, study: str = "default") -> list[FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=study, storage=storage).get_trials()


def wait_for_running_trial(
    proc: subprocess.Popen, journal: Path, min_complete: int = 1, min_folds: int = 0, limit: float = 120.0
) -> int:
    """Poll the journal until a trial runs (tagged by its worker, `min_folds` folds done) after
    `min_complete` trials completed; returns its number."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the tuning process ended (code {proc.returncode}) before it could be stopped: {proc.stderr.read()}"
            )
        if journal.exists():
            try:
                trials = journal_trials(journal)
            except (KeyError, ValueError):  # the study is not created yet
                trials = []
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            running = [
                t.number
                for t in trials
                if t.state == TrialState.RUNNING
                and "gbpipe_worker" in t.user_attrs
                and len(t.intermediate_values) >= min_folds
            ]
            if done >= min_complete and running:
                return running[0]
        time.sleep(0.02)
    pytest.fail(f"no running trial seen in {journal} within {limit}s")


def postgres_url() -> str:
    """The test database; skipped when absent, except under GBPIPE_REQUIRE_SERVICES=1 (CI), where it fails."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("GBPIPE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{POSTGRES_ENV} is not set but GBPIPE_REQUIRE_SERVICES=1: the PostgreSQL test must run")
    pytest.skip(f"{POSTGRES_ENV} not set (CI sets it; locally start PostgreSQL as .ci/run does)")
