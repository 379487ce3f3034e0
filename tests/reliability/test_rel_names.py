"""User-given names never leave their folder, and outputs never land in what gbpipe manages.

Every name that becomes a path (experiment, study, run id, selection id, ensemble member) goes through one
validator (pipeline/core/names.py): exit 2 naming the key and the rule, nothing written anywhere. An output
(`predict --output`, `report --compare --output`) may not point into a run or experiment folder.
"""

from __future__ import annotations

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.names import MAX_NAME_LENGTH, check_name, check_run_id
from tests.helpers.reliability import EXPERIMENT, assert_message, cli, tree_hashes

ESCAPES = [
    "..",
    ".",
    ".hidden",
    "../../../../x",
    "a/b",
    "a\\b",
    "a\x01b",
    "x" * (MAX_NAME_LENGTH + 1),
    "-rf",
    "",
    "run.partial",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_check_name_refuses_anything_but_a_plain_name(name):
    with pytest.raises(ConfigError, match=r"^--run-id = .*(plain name|must not end)"):
        check_name(name, "--run-id")


@pytest.mark.parametrize("name", ["baseline", "v2.1", "a-b_c", "_x", "x" * MAX_NAME_LENGTH])
def test_check_name_accepts_plain_names(name):
    assert check_name(name, "--run-id") == name


@pytest.mark.parametrize("name", ["LATEST", "folds", "tune", "features", "select", "member_cache"])
def test_run_ids_cannot_take_the_experiment_folders_own_names(name):
    with pytest.raises(ConfigError, match=rf"--run-id = '{name}' is a name gbpipe uses"):
        check_run_id(name, "--run-id")


def _outside(project) -> list:
    """Everything next to the project folder, and the project's own top level: where an escape would land."""
    return sorted(p.name for p in project.root.parent.iterdir()) + sorted(p.name for p in project.root.iterdir())


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["tune", "--study-name", "../../../../x", "--n-trials", "1"], r"--study-name = '\.\./\.\./\.\./\.\./x'"),
        (["tune", "--set", "tune.study_name=..", "--n-trials", "1"], r"tune\.study_name: must be a plain name"),
        (["tune", "--set", 'tune.study_name="a/b"', "--n-trials", "1"], r"tune\.study_name: must be a plain name"),
        (["train", "--set", "experiment.name=.."], r"experiment\.name: must be a plain name"),
        (["train", "--set", 'experiment.name="x\\u0007y"'], r"experiment\.name: must be a plain name"),
        (["features", "--set", "experiment.name=.."], r"experiment\.name: must be a plain name"),
        (["train", "--run-id", "../evil"], r"--run-id = '\.\./evil'"),
        (["train", "--run-id", "LATEST"], r"--run-id = 'LATEST' is a name gbpipe uses"),
        (["train", "--run-id", "folds"], r"--run-id = 'folds' is a name gbpipe uses"),
        (["train", "--run-id", "x" * 300], r"--run-id = 'x{60}\.\.\.'.*at most 100 characters"),
        (["select", "--select-id", ".."], r"--select-id = '\.\.'"),
        (["ensemble", "--run-id", "../../e"], r"--run-id = '\.\./\.\./e'"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_names_that_would_escape_exit_2_and_write_nothing(project, capsys, argv, pattern):
    config = project.config()
    config.write_text(config.read_text() + '\n[[ensemble.members]]\nname = "lgb"\nfamily = "lightgbm"\n')
    before = _outside(project)
    code, err = cli(capsys, *argv[:1], "--config", config, *argv[1:], "-q")
    assert code == 2, err
    assert_message(err, pattern)
    assert _outside(project) == before
    project.assert_untouched()


def test_member_name_escaping_exits_2(project, capsys):
    config = project.config()
    config.write_text(config.read_text() + '\n[[ensemble.members]]\nname = "../m"\nfamily = "lightgbm"\n')
    code, err = cli(capsys, "ensemble", "--config", config, "-q")
    assert code == 2
    assert_message(err, r"ensemble\.members\.0\.name: must be a plain name")
    project.assert_untouched()


@pytest.mark.parametrize(
    "output, pattern",
    [
        (f"runs/{EXPERIMENT}/LATEST", r"which gbpipe manages for the experiment"),
        (f"runs/{EXPERIMENT}/tune/default/x.csv", r"which gbpipe manages for the experiment"),
        (f"runs/{EXPERIMENT}/baseline/preds.csv", r"inside the stage folder"),
        (f"runs/{EXPERIMENT}/baseline/models/fold_0.txt", r"inside the stage folder"),
        (f"runs/{EXPERIMENT}/folds/x.parquet", r"which gbpipe manages for the experiment"),
        ("elsewhere/LATEST", r"LATEST is a file name gbpipe manages"),
    ],
)
def test_predict_output_into_managed_files_exits_2(project, capsys, output, pattern):
    code, err = cli(
        capsys, "predict", "--run", project.exp_dir, "--input", project.data["test"], "--output", output, "-q"
    )
    assert code == 2
    assert_message(err, rf"--output {output}[ :]", pattern)
    project.assert_untouched()
    # the pointer still works: the next stage reading runs/<exp> finds the baseline run
    code, err = cli(capsys, "predict", "--run", project.exp_dir, "--input", project.data["test"], "--output", "p.csv")
    assert code == 0, err


@pytest.mark.parametrize("target", ["LATEST", "baseline/rows.parquet", "folds/rows.parquet"])
def test_test_rows_into_managed_files_exits_2(project, capsys, target):
    code, err = cli(capsys, "features", "--config", project.config(), "--test-rows", project.exp_dir / target, "-q")
    assert code == 2
    assert_message(err, r"--test-rows \S+ is (inside the stage folder|\S+, or inside it, which gbpipe manages)")
    project.assert_untouched()


def test_compare_output_into_a_run_folder_exits_2(project, capsys):
    run = project.baseline
    assert cli(capsys, "train", "--config", project.config(), "--run-id", "second", "-q")[0] == 0
    project.before = tree_hashes(project.runs_dir)
    code, err = cli(
        capsys, "report", "--compare", run, project.exp_dir / "second", "--output", run / "cmp", "--n-boot", "100"
    )
    assert code == 2
    assert_message(err, r"--output \S+cmp is inside the stage folder")
    project.assert_untouched()
