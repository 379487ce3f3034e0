"""Faults: kills, interrupts, full disks, damaged files and foreign library versions.

Training runs in a child process (`python <driver> train ...`, the same `pipeline.cli.main` as
`python -m pipeline`); the driver only adds a fault at a chosen point (SIGKILL right after a fold's
checkpoint, SIGKILL inside a fold, or slow iterations so the parent's SIGINT/SIGTERM lands inside a
fold). After `gbpipe train --resume`, the run must equal an uninterrupted one byte for byte.

Tuning killed mid-trial and resumed is covered by the tuning stage's own tests (tests/tune/).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import pytest

from pipeline.core.artifacts import ArtifactWriteError, atomic_write_bytes, manifest_bytes
from pipeline.core.errors import ArtifactError
from pipeline.core.run_folder import RunReader, check_versions
from pipeline.predict import load_run
from tests.helpers.reliability import EXPERIMENT, assert_message, cli, python, temp_files, write_rel_config

N_SPLITS = 4
COMPARED = [
    "folds.parquet",
    "oof.parquet",
    "test_pred.parquet",
    "importance.parquet",
    "schema.json",
    *(f"models/fold_{k}.txt" for k in range(N_SPLITS)),
]

DRIVER = """
import os, signal, sys, time
import lightgbm
import pipeline.train.run as train_module
from pipeline.cli import main

fault, arg = os.environ["GBPIPE_FAULT"].split(":", 1)
real_save, real_train, calls = train_module.save_fold, lightgbm.train, []

def save_then_die(writer, result, booster):
    real_save(writer, result, booster)
    if fault == "kill-after-fold" and result.fold == int(arg):
        os.kill(os.getpid(), signal.SIGKILL)

def train_with_fault(params, train_set, *args, callbacks=None, **kwargs):
    calls.append(1)
    callbacks = list(callbacks or [])
    if fault == "kill-in-fold" and len(calls) == int(arg) + 1:
        def die(env):
            if env.iteration == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(die)
    if fault == "slow":
        callbacks.append(lambda env: time.sleep(float(arg)))
    return real_train(params, train_set, *args, callbacks=callbacks, **kwargs)

train_module.save_fold = save_then_die
lightgbm.train = train_with_fault
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="session")
def reference(tmp_path_factory, baseline_runs) -> Path:
    """An uninterrupted run with the config the fault tests use."""
    base = tmp_path_factory.mktemp("reference")
    config = write_rel_config(base / "exp.toml", base / "runs", baseline_runs[2], {"n_splits": N_SPLITS})
    from pipeline.cli import main

    assert main(["train", "--config", str(config), "-q", "--run-id", "ref"]) == 0
    return base / "runs" / EXPERIMENT / "ref"


def fault_config(project, batch_rows: int | None = None) -> Path:
    """The fault tests' config; with `batch_rows`, the table is read in batches of that many rows."""
    data = project.data if batch_rows is None else {**project.data, "batch_rows": batch_rows}
    return project.config(data, cv={"n_splits": N_SPLITS})


def start(project, fault: str, *argv: str, batch_rows: int | None = None) -> subprocess.Popen:
    driver = project.root / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "GBPIPE_FAULT": fault}
    return subprocess.Popen(
        [python(), str(driver), "train", "--config", str(fault_config(project, batch_rows)), *argv],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path.name} appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def assert_same_as(run: Path, reference: Path) -> None:
    for name in COMPARED:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), (
            f"{name} differs from the uninterrupted run"
        )


def stamps(folder: Path, folds: range) -> dict[str, tuple[int, int]]:
    return {
        f"models/fold_{k}.txt": (
            (folder / f"models/fold_{k}.txt").stat().st_ino,
            (folder / f"models/fold_{k}.txt").stat().st_mtime_ns,
        )
        for k in folds
    }


def resume_and_check(project, capsys, reference: Path, staging: Path, done: int, batch_rows: int | None = None) -> Path:
    """Resume the killed run: only the unfinished folds are trained, and the result equals the reference."""
    finished = stamps(staging, range(done))
    config = fault_config(project, batch_rows)
    code, err = cli(capsys, "train", "--config", config, "--resume", "--run-id", "victim")
    assert code == 0, err
    assert_message(err, rf"resume: {done} of {N_SPLITS} folds already done, training the rest")
    assert err.count("\nfold ") + err.startswith("fold ") == N_SPLITS - done  # one progress line per trained fold
    run = project.exp_dir / "victim"
    assert stamps(run, range(done)) == finished  # the finished folds' files were kept, not rewritten
    assert_same_as(run, reference)
    project.assert_baseline_intact()
    return run


@pytest.mark.parametrize(
    "fault, done, batch_rows",
    [("kill-after-fold:1", 2, None), ("kill-in-fold:2", 2, None), ("kill-in-fold:1", 1, 300)],
    ids=["sigkill-between-folds", "sigkill-inside-a-fold", "sigkill-inside-a-fold-reading-batches"],
)
def test_sigkill_then_resume_redoes_only_unfinished_folds(project, capsys, reference, fault, done, batch_rows):
    """The reference reads the table whole: the run read in batches, killed and resumed, equals it too."""
    proc = start(project, fault, "--run-id", "victim", batch_rows=batch_rows)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, stderr
    staging = project.exp_dir / "victim.partial"
    assert sorted(p.name for p in (staging / "models").glob("*.txt")) == [f"fold_{k}.txt" for k in range(done)]
    assert not (project.exp_dir / "victim").exists()
    # A kill during an atomic write leaves its temp file behind; resume must clear it, never publish it.
    (staging / ".oof.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half a file")
    run = resume_and_check(project, capsys, reference, staging, done, batch_rows)
    assert not temp_files(run)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_sigint_and_sigterm_exit_130_with_no_partial_file(project, capsys, reference, sig):
    proc = start(project, "slow:0.03", "--run-id", "victim")
    staging = project.exp_dir / "victim.partial"
    wait_for(staging / "models" / "fold_0.json", proc)
    proc.send_signal(sig)  # lands inside fold 1
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: no partial file was written; finished folds are kept for --resume" in stderr
    assert not temp_files(project.root) and not (project.exp_dir / "victim").exists()
    for model in (staging / "models").glob("*.txt"):  # every file left is whole
        lgb.Booster(model_str=model.read_text())
    for name in ("folds.parquet",):
        pd.read_parquet(staging / name)
    project.assert_baseline_intact(unfinished_ok=True)
    done = len(list((staging / "models").glob("*.txt")))
    assert 1 <= done < N_SPLITS
    resume_and_check(project, capsys, reference, staging, done)


def test_resume_refuses_changed_data(project, capsys, monkeypatch, tmp_path):
    import pipeline.train.run as train_module

    real_save = train_module.save_fold

    def save_then_interrupt(writer, result, booster):
        real_save(writer, result, booster)
        raise KeyboardInterrupt  # Ctrl-C right after the first fold's checkpoint

    monkeypatch.setattr(train_module, "save_fold", save_then_interrupt)
    data_file = tmp_path / "train.parquet"
    pd.read_parquet(project.data["train"]).to_parquet(data_file, index=False)
    config = project.config({**project.data, "train": str(data_file)}, cv={"n_splits": N_SPLITS})
    code, _ = cli(capsys, "train", "--config", config, "--run-id", "victim", "-q")
    assert code == 130
    monkeypatch.setattr(train_module, "save_fold", real_save)
    changed = pd.read_parquet(data_file)
    changed.loc[changed.index[:10], "age"] += 1
    changed.to_parquet(data_file, index=False)
    code, err = cli(capsys, "train", "--config", config, "--run-id", "victim", "--resume", "-q")
    assert code == 3
    assert_message(
        err,
        r"--resume: the data changed since \S*victim\.partial was started \(fingerprint \w{12} then, "
        r"\w{12} now\)",
    )
    assert not (project.exp_dir / "victim").exists()


def _enospc_for(fragment: str):
    real_fsync = os.fsync

    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    return fsync


def test_enospc_in_an_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    target.write_bytes(b'{"oof_score": 0.9}\n')
    monkeypatch.setattr(os, "fsync", _enospc_for("scores.json"))
    with pytest.raises(ArtifactWriteError, match=r"could not write \S*scores\.json: No space left on device") as info:
        atomic_write_bytes(target, b'{"oof_score": 0.1, "half": ')
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_bytes() == b'{"oof_score": 0.9}\n'
    assert not temp_files(tmp_path)


def test_enospc_during_training_exits_4_and_resume_finishes(project, capsys, monkeypatch, reference):
    monkeypatch.setattr(os, "fsync", _enospc_for(".oof.parquet."))
    code, err = cli(capsys, "train", "--config", fault_config(project), "--run-id", "victim", "-q")
    assert code == 4
    assert_message(err, r"could not write \S*victim\.partial/oof\.parquet: No space left on device \(errno 28\)")
    assert not temp_files(project.root) and not (project.exp_dir / "victim").exists()
    monkeypatch.undo()
    monkeypatch.chdir(project.root)
    resume_and_check(project, capsys, reference, project.exp_dir / "victim.partial", N_SPLITS)


def test_enospc_during_predict_keeps_the_previous_output(project, capsys, monkeypatch):
    new = project.root / "new.csv"
    pd.read_parquet(project.data["test"]).drop(columns="income").to_csv(new, index=False)
    out = project.root / "out.parquet"
    out.write_bytes(b"earlier predictions")
    monkeypatch.setattr(os, "fsync", _enospc_for(".out.parquet."))
    code, err = cli(capsys, "predict", "--run", project.baseline, "--input", new, "--output", out)
    assert code == 4
    assert_message(err, r"could not write \S*out\.parquet: No space left on device")
    assert out.read_bytes() == b"earlier predictions"
    assert not temp_files(project.root)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


DAMAGE = {
    "truncated": lambda data, _: data[: len(data) // 2],
    "byte-flipped": lambda data, at: _flip(data, at if at is not None else len(data) // 2),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", ["models/fold_1.txt", "oof.parquet", "test_pred.parquet"])
def test_damaged_run_file_is_reported_by_name(project, capsys, name, damage):
    path = project.baseline / name
    path.write_bytes(DAMAGE[damage](path.read_bytes(), None))
    with pytest.raises(ArtifactError, match=rf"{name} does not match its manifest entry .*truncated or altered"):
        RunReader(project.baseline).read_bytes(name)
    if name.startswith("models/"):
        code, err = cli(
            capsys,
            "predict",
            "--run",
            project.baseline,
            "--input",
            project.data["test"],
            "--output",
            project.root / "out.csv",
        )
        assert code == 4
        assert_message(err, rf"{name} does not match its manifest entry")
        assert not (project.root / "out.csv").exists()


@pytest.mark.parametrize("where", ["truncated", "config_hash", "size", "versions", "sha256"])
def test_damaged_manifest_is_reported_by_name(project, capsys, where):
    manifest = project.baseline / "manifest.json"
    data = manifest.read_bytes()
    if where == "truncated":
        damaged = data[: len(data) // 2]
    else:
        text = data.decode()
        anchor = {
            "config_hash": '"config_hash": "',
            "size": '"size": ',
            "versions": '"lightgbm": "',
            "sha256": '"sha256": "',
        }[where]
        damaged = _flip(data, text.index(anchor) + len(anchor) + 1)  # still valid JSON, one value changed
        json.loads(damaged)
    manifest.write_bytes(damaged)
    code, err = cli(
        capsys,
        "predict",
        "--run",
        project.baseline,
        "--input",
        project.data["test"],
        "--output",
        project.root / "out.csv",
    )
    assert code == 4
    assert_message(err, r"\S*manifest\.json (is corrupt|was altered after it was written)")
    assert not (project.root / "out.csv").exists()


@pytest.mark.parametrize("library, foreign", [("lightgbm", "3.3.5"), ("sklearn", "0.24.2")])
def test_run_from_another_major_version_is_refused_unless_allowed(project, capsys, library, foreign):
    manifest_path = project.baseline / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    installed = manifest["versions"][library]
    manifest["versions"][library] = foreign
    manifest_path.write_bytes(manifest_bytes(manifest))
    argv = ["predict", "--run", project.baseline, "--input", project.data["test"], "--output", project.root / "o.csv"]
    code, err = cli(capsys, *argv)
    assert code == 4
    assert_message(
        err,
        rf"manifest\.json was made with {library} {foreign} but {installed} is installed; major "
        r"versions differ.*--allow-version-mismatch",
    )
    assert not (project.root / "o.csv").exists()
    code, err = cli(capsys, *argv, "--allow-version-mismatch")
    assert code == 0, err
    assert len(pd.read_csv(project.root / "o.csv")) == 400
    with pytest.raises(ArtifactError, match=rf"made with {library} {foreign}"):
        load_run(project.baseline)
    same_major = installed.split(".")[0] + ".999.0"
    check_versions({library: same_major}, manifest_path)  # another minor version is fine
