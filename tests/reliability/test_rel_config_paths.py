"""Config and paths: bad keys, types and ranges exit 2 naming the key and value; no path in a config
leads outside the project unnoticed; nothing overwrites an existing run; no manifest entry or
LATEST pointer leads outside its run folder (exit 4).

The path rule (pipeline/paths.py): relative paths in a config are resolved against the project
root (the working directory), symlinks included, and must stay inside it; absolute paths are
explicit and taken as given.
"""

from __future__ import annotations

import json
import os

import pytest

from pipeline.core.artifacts import manifest_bytes
from tests.helpers.reliability import assert_message, cli


@pytest.mark.parametrize(
    "cv, model, patterns",
    [
        ({"n_fold": 5}, {}, [r"unknown key 'cv\.n_fold'; did you mean 'cv\.n_splits'\?"]),
        (
            {},
            {"num_boost_rounds": 30},
            [r"unknown key 'model\.num_boost_rounds'; did you mean 'model\.num_boost_round'\?"],
        ),
        ({"n_splits": "five"}, {}, [r"cv\.n_splits: Input should be a valid integer.*\(got 'five'\)"]),
        ({"n_splits": 1}, {}, [r"cv\.n_splits: Input should be greater than or equal to 2 \(got 1\)"]),
        ({}, {"num_threads": -2}, [r"model\.num_threads: Input should be greater than or equal to 0 \(got -2\)"]),
        ({}, {"metric": "rmse"}, [r"model\.metric 'rmse' is not available for task 'binary'"]),
    ],
    ids=["unknown-key", "unknown-key-model", "wrong-type", "out-of-range", "negative-threads", "metric-for-task"],
)
def test_bad_config_exits_2_naming_key_and_value(project, capsys, cv, model, patterns):
    code, err = cli(capsys, "train", "--config", project.config(cv=cv, model=model), "-q")
    assert code == 2
    assert_message(err, *patterns)
    project.assert_untouched()


def test_bad_override_exits_2(project, capsys):
    code, err = cli(capsys, "train", "--config", project.config(), "--set", "cv.n_splits=[1, 2]")
    assert code == 2
    assert_message(err, r"cv\.n_splits: Input should be a valid integer \(got \[1, 2\]\)")
    project.assert_untouched()


def test_relative_runs_dir_escaping_with_dotdot_exits_2(project, capsys):
    outside = project.root.parent / f"{project.root.name}-outside"
    config = project.config()
    code, err = cli(capsys, "train", "--config", config, "--set", f"experiment.runs_dir=../{outside.name}")
    assert code == 2
    assert_message(
        err,
        rf"experiment\.runs_dir = '\.\./{outside.name}' leads outside the project root \S+ "
        r"\(via '\.\.'; it resolves to .*\); relative paths must stay inside the project",
    )
    assert not outside.exists()
    project.assert_untouched()


def test_relative_runs_dir_escaping_through_a_symlink_exits_2(project, capsys, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.symlink(elsewhere, project.root / "linked_runs")
    code, err = cli(capsys, "train", "--config", project.config(), "--set", "experiment.runs_dir=linked_runs")
    assert code == 2
    assert_message(
        err,
        r"experiment\.runs_dir = 'linked_runs' leads outside the project root \S+ \(via a symlink; "
        rf"it resolves to {elsewhere}\)",
    )
    assert list(elsewhere.iterdir()) == []
    project.assert_untouched()


def test_relative_data_path_escaping_exits_2(project, capsys):
    data = {**project.data, "train": "../../../etc/passwd.csv"}
    code, err = cli(capsys, "train", "--config", project.config(data), "-q")
    assert code == 2
    assert_message(err, r"data\.train = '\.\./\.\./\.\./etc/passwd\.csv' leads outside the project root")
    project.assert_untouched()


def test_paths_inside_the_project_and_absolute_paths_are_accepted(project, capsys):
    """A relative path through a symlink that stays inside the project, and an absolute path, both work."""
    (project.root / "data").mkdir()
    os.symlink(project.data["train"], project.root / "data" / "train.parquet")
    data = {**project.data, "train": "data/train.parquet"}  # relative, inside
    code, err = cli(
        capsys,
        "train",
        "--config",
        project.config(data),
        "-q",
        "--run-id",
        "inside",
        "--set",
        "experiment.runs_dir=runs",
    )
    assert code == 2  # the symlink leads to the session's data folder, outside this project
    assert_message(err, r"data\.train = 'data/train\.parquet' leads outside the project root .*via a symlink")
    os.unlink(project.root / "data" / "train.parquet")
    os.symlink("../train_copy.parquet", project.root / "data" / "train.parquet")
    (project.root / "train_copy.parquet").write_bytes(open(project.data["train"], "rb").read())
    code, err = cli(
        capsys,
        "train",
        "--config",
        project.config(data),
        "-q",
        "--run-id",
        "inside",
        "--set",
        "experiment.runs_dir=runs",
    )
    assert code == 0, err
    assert (project.exp_dir / "inside" / "manifest.json").is_file()
    project.assert_baseline_intact()


def test_existing_run_is_never_overwritten(project, capsys):
    code, err = cli(capsys, "train", "--config", project.config(), "-q", "--run-id", project.baseline.name)
    assert code == 2
    assert_message(err, rf"run folder \S*{project.baseline.name} already exists and is never overwritten")
    project.assert_untouched()


def _rewrite_manifest(run, change) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_bytes(manifest_bytes(manifest))  # a consistent, re-hashed manifest


def _predict(capsys, project, run) -> tuple[int, str]:
    import pandas as pd

    pd.read_parquet(project.data["test"]).drop(columns="income").to_csv(project.root / "new.csv", index=False)
    return cli(
        capsys, "predict", "--run", run, "--input", project.root / "new.csv", "--output", project.root / "out.csv"
    )


def test_manifest_entry_pointing_outside_the_run_exits_4(project, capsys):
    secret = project.root / "secret.txt"
    secret.write_text("not a model\n")
    run = project.baseline

    def add_escape(manifest):
        manifest["files"]["models/../../../../secret.txt"] = manifest["files"].pop("models/fold_0.txt")

    _rewrite_manifest(run, add_escape)
    code, err = _predict(capsys, project, run)
    assert code == 4
    assert_message(err, r"lists 'models/\.\./\.\./\.\./\.\./secret\.txt', which points outside the run folder")
    assert not (project.root / "out.csv").exists()


def test_model_file_symlinked_outside_the_run_exits_4(project, capsys):
    run = project.baseline
    outside = project.root / "fold_0.txt"
    outside.write_bytes((run / "models" / "fold_0.txt").read_bytes())
    (run / "models" / "fold_0.txt").unlink()
    os.symlink(outside, run / "models" / "fold_0.txt")  # same bytes, same hash: only the place is wrong
    code, err = _predict(capsys, project, run)
    assert code == 4
    assert_message(err, r"lists 'models/fold_0\.txt', which points outside the run folder .*symlink")


def test_latest_pointing_outside_the_experiment_exits_4(project, capsys):
    (project.exp_dir / "LATEST").write_text("../../elsewhere\n")
    code, err = _predict(capsys, project, project.exp_dir)
    assert code == 4
    assert_message(err, r"LATEST names '\.\./\.\./elsewhere', which is not a run folder of")
