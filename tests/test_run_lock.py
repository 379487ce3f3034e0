"""Run ids never collide, and a run being written is locked: a second writer is refused, `--resume` without an id
skips it, and a killed writer leaves no lock that blocks the resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.core.run_folder import RunWriter, new_run_id
from tests.helpers.configs import write_config
from tests.helpers.paths import ROOT

HOLDER = """
import sys, time
from pipeline.core.run_folder import RunWriter
writer = RunWriter(sys.argv[1], resume=True)
writer.write_text("note.txt", "written by the first process")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def config(tmp_path: Path, adult: pd.DataFrame) -> Path:
    """A tiny adult experiment: 1,500 real training rows, 3 folds, few rounds."""
    csv = tmp_path / "adult.csv"
    adult[adult["split"] == "train"].sample(1500, random_state=2).drop(columns="split").to_csv(csv, index=False)
    return write_config(
        tmp_path,
        "locked",
        data={"train": str(csv), "target": "income", "task": "binary", "positive_label": ">50K"},
        cv={"n_splits": 3},
        model={"num_boost_round": 40, "early_stopping_rounds": 10},
    )


def exp_dir(config: Path) -> Path:
    return config.parent / "runs" / config.stem


def published(config: Path) -> list[str]:
    return sorted(p.name for p in exp_dir(config).iterdir() if (p / "manifest.json").is_file())


def assert_clean(config: Path) -> None:
    """No unfinished folder and no lock file left, none inside a run, none listed by a manifest."""
    left = [p.name for p in exp_dir(config).iterdir() if p.name.endswith((".partial", ".lock"))]
    assert not left, left
    for name in published(config):
        assert not list((exp_dir(config) / name).rglob("*.lock"))
        assert not [
            f for f in json.loads((exp_dir(config) / name / "manifest.json").read_text())["files"] if "lock" in f
        ]


@pytest.mark.parametrize("kind, suffix", [("", ""), ("ensemble", "-ensemble")])
def test_run_ids_made_in_one_second_differ_and_keep_the_sortable_prefix(kind, suffix):
    # few enough draws of 32 bits that a chance clash cannot make this test flaky
    ids = [new_run_id("0123456789abcdef", kind) for _ in range(50)]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        assert re.fullmatch(rf"\d{{8}}-\d{{6}}-012345-[0-9a-f]{{8}}{suffix}", run_id), run_id


def test_two_trains_of_one_config_started_at_once_both_finish_in_their_own_runs(config):
    command = [sys.executable, "-m", "pipeline", "train", "--config", str(config), "-q"]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    runs = published(config)
    assert len(runs) == 2 and sorted(Path(out.strip()).name for out, _ in outputs) == runs
    assert_clean(config)


def test_a_second_writer_of_a_run_being_written_is_refused_naming_the_pid(tmp_path):
    final = tmp_path / "runs" / "exp" / "victim"
    first = RunWriter(final)
    try:
        with pytest.raises(ConfigError, match=rf"run victim is being written by another process \(pid {os.getpid()} "):
            RunWriter(final, resume=True)
        with pytest.raises(ConfigError, match=r"being written by another process .*--resume --run-id victim"):
            RunWriter(final)
    finally:
        first.release()
    RunWriter(final, resume=True).publish({}, stage="test", update_latest=False)
    assert (final / "manifest.json").is_file() and not (final.parent / ".victim.lock").exists()


@pytest.fixture
def holder(config):
    """A process that started writing run `victim` (real RunWriter) and holds it until killed."""
    staging = exp_dir(config) / "victim"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(staging)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_resume_is_refused_while_the_writer_lives_and_succeeds_after_it_is_killed(config, holder, capsys):
    assert main(["train", "--config", str(config), "--resume", "--run-id", "victim", "-q"]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"run victim is being written by another process \(pid {holder.pid} on \S+, started ", err), err
    assert main(["train", "--config", str(config), "--resume", "-q"]) == 2  # the only unfinished run is locked
    assert "every unfinished run" in capsys.readouterr().err
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert main(["train", "--config", str(config), "--resume", "-q"]) == 0
    assert published(config) == ["victim"]
    assert (exp_dir(config) / "victim" / "note.txt").read_text() == "written by the first process"
    assert_clean(config)


def test_resume_without_an_id_skips_the_run_another_process_is_writing(config, holder):
    (exp_dir(config) / "older.partial").mkdir()  # an unfinished run nobody writes (its writer died), older by name
    assert main(["train", "--config", str(config), "--resume", "-q"]) == 0
    assert published(config) == ["older"]
    assert (exp_dir(config) / "victim.partial" / "note.txt").is_file()  # the locked run is untouched
