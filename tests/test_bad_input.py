"""Bad input gets a clear error naming the file, column and count, and the right exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from tests.helpers.configs import write_config


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame.head(300)


def _missing_target(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["target"])


def _nan_target(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({"target": "float64"})
    df.loc[df.index[:7], "target"] = float("nan")
    return df


def _single_class(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["target"] == 1]


def _rare_class(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df[df["target"] == 1], df[df["target"] == 0].head(3)])


BAD_TABLES = [
    (_missing_target, r"target column 'target' not found in .*train\.csv; columns are: mean radius"),
    (_nan_target, r"target column 'target' in .*train\.csv has 7 missing values of 300"),
    (_single_class, r"target column 'target' in .*train\.csv has a single class 1 \(\d+ rows\)"),
    (_rare_class, r"has 1 classes with fewer rows than cv.n_splits=5 \(0: 3 rows\)"),
]


@pytest.mark.parametrize(
    "corrupt, match", BAD_TABLES, ids=["missing-target", "nan-target", "single-class", "rare-class"]
)
def test_bad_training_tables_exit_3(tmp_path, capsys, corrupt, match):
    corrupt(breast_cancer()).to_csv(tmp_path / "train.csv", index=False)
    config = write_config(tmp_path, data={"train": str(tmp_path / "train.csv"), "target": "target", "task": "binary"})
    assert main(["train", "--config", str(config), "-q"]) == 3
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not list((tmp_path / "runs").glob("exp/*/manifest.json"))  # no run was published


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"train\.csv is empty \(0 bytes\)"),
        (b"a,b,target\n", r"train\.csv has a header but 0 rows"),
        (b"a,b,a,target\n1,2,3,0\n4,5,6,1\n", r"train\.csv has duplicate column names: \['a'\] \(1 repeats\)"),
        (b"a;b;target\n1;2;0\n", r"train\.csv has one column 'a;b;target'; the delimiter looks wrong"),
        ("a,b,target\n\xe9,2,0\n".encode("latin-1"), r"train\.csv is not UTF-8"),
    ],
)
def test_unreadable_files_exit_3(tmp_path, capsys, content, match):
    (tmp_path / "train.csv").write_bytes(content)
    config = write_config(tmp_path, data={"train": str(tmp_path / "train.csv"), "target": "target", "task": "binary"})
    assert main(["train", "--config", str(config), "-q"]) == 3
    assert re.search(match, capsys.readouterr().err)


def test_unknown_config_key_exits_2(tmp_path, capsys):
    config = write_config(tmp_path, data={"train": "x.csv", "target": "target", "task": "binary"}, cv={"n_fold": 5})
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown key 'cv.n_fold'; did you mean 'cv.n_splits'?" in capsys.readouterr().err


@pytest.fixture
def trained_run(tmp_path) -> Path:
    breast_cancer().to_csv(tmp_path / "train.csv", index=False)
    config = write_config(tmp_path, data={"train": str(tmp_path / "train.csv"), "target": "target", "task": "binary"})
    assert main(["train", "--config", str(config), "-q", "--run-id", "r1"]) == 0
    return tmp_path / "runs" / "exp" / "r1"


def test_column_missing_at_predict_exits_3(trained_run, tmp_path, capsys):
    breast_cancer().drop(columns=["target", "mean radius", "worst area"]).to_csv(tmp_path / "new.csv", index=False)
    code = main(
        [
            "predict",
            "--run",
            str(trained_run),
            "--input",
            str(tmp_path / "new.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ]
    )
    assert code == 3
    assert "new.csv lacks 2 feature columns the model needs: ['mean radius', 'worst area']" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv*"))


def test_extra_columns_at_predict_are_dropped_with_a_warning(trained_run, tmp_path, capsys):
    frame = breast_cancer().drop(columns=["target"]).assign(note="x", other=1)
    frame.to_csv(tmp_path / "new.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained_run),
                "--input",
                str(tmp_path / "new.csv"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
        == 0
    )
    assert "2 columns the model does not use were dropped: ['note', 'other']" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "out.csv")) == 300


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_model_file_exits_4(trained_run, tmp_path, capsys, damage):
    model = trained_run / "models" / "fold_2.txt"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:100] + b"X" + data[101:])
    breast_cancer().drop(columns=["target"]).to_csv(tmp_path / "new.csv", index=False)
    code = main(
        [
            "predict",
            "--run",
            str(trained_run),
            "--input",
            str(tmp_path / "new.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ]
    )
    assert code == 4
    assert "fold_2.txt does not match its manifest entry" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", [["report"], ["importance"], ["predict", "--input", "x.csv", "--output", "y.csv"]])
def test_mistyped_run_folder_is_a_usage_error(tmp_path, capsys, command):
    missing = tmp_path / "runs" / "exp" / "no_such_run"
    code = main([command[0], "--run", str(missing), *command[1:], "-q"])
    assert code == 2
    assert f"run folder {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
