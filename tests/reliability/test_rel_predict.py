"""`gbpipe predict` on drifting input: columns matched by name, every change counted, bad input
refused with exit 3 and no output written (an earlier output file stays as it was). The run is
read-only: it is byte-identical after every test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.reliability import (
    adult_data,
    adult_rows,
    assert_message,
    cli,
    temp_files,
    tree_hashes,
    write_rel_config,
)

OLD_OUTPUT = b"pid,pred\nkeep,0.5\n"


@pytest.fixture(scope="session")
def fitted(tmp_path_factory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A run with an id column and an integer-coded categorical, plus its test rows and test_pred."""
    base = tmp_path_factory.mktemp("predict_run")
    train, test = adult_rows()
    for frame, start in ((train, 0), (test, 50_000)):
        frame.insert(0, "pid", [f"p{start + i:06d}" for i in range(len(frame))])
    train.to_parquet(base / "train.parquet", index=False)
    test.to_parquet(base / "test.parquet", index=False)
    data = adult_data(base / "train.parquet", base / "test.parquet", id="pid", categorical=["education-num"])
    config = write_rel_config(base / "exp.toml", base / "runs", data)
    assert cli_plain(["train", "--config", str(config), "-q", "--run-id", "p1"]) == 0
    run = base / "runs" / "rel" / "p1"
    return run, test.drop(columns="income"), pd.read_parquet(run / "test_pred.parquet")


def cli_plain(argv: list[str]) -> int:
    from pipeline.cli import main

    return main(argv)


@pytest.fixture
def run(fitted, tmp_path, monkeypatch):
    """The session run; after the test it must be byte-identical and no temp file may be left."""
    monkeypatch.chdir(tmp_path)
    before = tree_hashes(fitted[0])
    yield fitted[0]
    assert tree_hashes(fitted[0]) == before
    assert not temp_files(tmp_path) and not temp_files(fitted[0].parent)


def predict(
    capsys, run: Path, frame: pd.DataFrame | bytes, tmp: Path, name: str = "new.csv", *extra: str
) -> tuple[int, str, Path]:
    path, out = tmp / name, tmp / "out.csv"
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    elif name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    code, err = cli(capsys, "predict", "--run", run, "--input", path, "--output", out, *extra)
    return code, err, out


def same_as_test_pred(out: Path, test_pred: pd.DataFrame) -> None:
    pred = pd.read_csv(out)
    assert pred["pid"].tolist() == test_pred["pid"].tolist()
    assert np.array_equal(pred["pred"].to_numpy(), test_pred["pred"].to_numpy())


def test_reordered_columns_give_identical_predictions(run, fitted, capsys, tmp_path):
    _, test, test_pred = fitted
    code, _, out = predict(capsys, run, test, tmp_path, "in_order.csv")
    assert code == 0
    first = out.read_bytes()
    same_as_test_pred(out, test_pred)
    reordered = test[list(reversed(test.columns))]
    code, _, out = predict(capsys, run, reordered, tmp_path, "reordered.csv")
    assert code == 0 and out.read_bytes() == first
    assert out.stat().st_mode & 0o777 == 0o644  # the temp file's 0600 would hide predictions from their readers


def test_missing_columns_are_listed_and_nothing_is_written(run, fitted, capsys, tmp_path):
    (tmp_path / "out.csv").write_bytes(OLD_OUTPUT)
    code, err, out = predict(capsys, run, fitted[1].drop(columns=["age", "occupation"]), tmp_path)
    assert code == 3
    assert_message(err, r"new\.csv lacks 2 feature columns the model needs: \['age', 'occupation'\]")
    assert out.read_bytes() == OLD_OUTPUT


def test_extra_columns_are_dropped_with_a_warning(run, fitted, capsys, tmp_path):
    _, test, test_pred = fitted
    code, err, out = predict(capsys, run, test.assign(note="x", score_2020=1.5), tmp_path)
    assert code == 0
    assert_message(err, r"new\.csv: 2 columns the model does not use were dropped: \['note', 'score_2020'\]")
    same_as_test_pred(out, test_pred)


def test_numeric_column_arriving_as_text_is_cast_and_counted(run, fitted, capsys, tmp_path):
    _, test, test_pred = fitted
    drifted = test.astype({"age": str, "hours-per-week": str})
    code, err, out = predict(capsys, run, drifted, tmp_path, "new.parquet")
    assert code == 0
    assert_message(
        err,
        r"new\.parquet: numeric columns that arrived as text were cast to numbers, values per "
        r"column: \{'age': 400, 'hours-per-week': 400\}",
    )
    same_as_test_pred(out, test_pred)


def test_numeric_column_with_words_is_refused_with_a_count(run, fitted, capsys, tmp_path):
    drifted = fitted[1].astype({"age": str})
    drifted.loc[drifted.index[:6], "age"] = "unknown"
    code, err, out = predict(capsys, run, drifted, tmp_path, "new.parquet")
    assert code == 3
    assert_message(
        err, r"column 'age' in \S*new\.parquet should be numeric but 6 values are not \(e\.g\. \['unknown'\]\)"
    )
    assert not out.exists()


def test_integer_categories_read_back_as_floats_still_match(run, fitted, capsys, tmp_path):
    """One blank in a CSV column turns its integer codes into floats (13 -> 13.0): still the same category."""
    _, test, test_pred = fitted
    drifted = test.astype({"education-num": "float64"})
    drifted.loc[drifted.index[0], "education-num"] = np.nan
    code, err, out = predict(capsys, run, drifted, tmp_path)
    assert code == 0
    assert "education-num" not in err
    pred = pd.read_csv(out)
    assert np.array_equal(pred["pred"].to_numpy()[1:], test_pred["pred"].to_numpy()[1:])


def test_unseen_categories_are_counted(run, fitted, capsys, tmp_path):
    test = fitted[1].copy()
    test.loc[test.index[:9], "workclass"] = "Moon-base"
    code, err, _ = predict(capsys, run, test, tmp_path)
    assert code == 0
    assert_message(
        err,
        r"categories not seen in training \(treated as missing\), rows per column: "
        r"\{'workclass': 9",
    )


@pytest.mark.parametrize(
    "content, name, match",
    [
        (b"", "new.csv", r"input file \S*new\.csv is empty \(0 bytes\)"),
        (None, "new.csv", r"\S*new\.csv has no rows to predict \(0 data rows\)"),
        (None, "new.parquet", r"\S*new\.parquet has no rows to predict \(0 data rows\)"),
    ],
    ids=["zero-bytes", "header-only-csv", "zero-row-parquet"],
)
def test_empty_input_exits_3_and_keeps_the_earlier_output(run, fitted, capsys, tmp_path, content, name, match):
    (tmp_path / "out.csv").write_bytes(OLD_OUTPUT)
    code, err, out = predict(capsys, run, fitted[1].head(0) if content is None else content, tmp_path, name)
    assert code == 3
    assert_message(err, match)
    assert out.read_bytes() == OLD_OUTPUT


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda f: f.drop(columns="pid"), r"\S*new\.csv lacks the id column 'pid'"),
        (
            lambda f: f.assign(pid=f["pid"].where(f.index % 50 != 7)),
            r"id column 'pid' in \S*new\.csv has 8 missing values",
        ),
        (
            lambda f: f.assign(pid=f["pid"].where(f.index % 100 != 3, "p050000")),
            r"id column 'pid' in \S*new\.csv has 4 duplicated values",
        ),
    ],
    ids=["id-missing", "id-blank", "id-duplicated"],
)
def test_bad_ids_exit_3_and_write_nothing(run, fitted, capsys, tmp_path, damage, match):
    code, err, out = predict(capsys, run, damage(fitted[1]), tmp_path)
    assert code == 3
    assert_message(err, match)
    assert not out.exists()


def test_ids_duplicated_across_chunks_are_caught(run, fitted, capsys, tmp_path):
    test = fitted[1].copy()
    test.loc[test.index[-1], "pid"] = test.loc[test.index[0], "pid"]  # first and last chunk
    code, err, out = predict(capsys, run, test, tmp_path, "new.csv", "--chunk-size", "64")
    assert code == 3
    assert_message(err, r"id column 'pid' in \S*new\.csv has 1 duplicated values \(e\.g\. \['p050000'\]\)")
    assert not out.exists()


def test_predictions_are_the_same_in_chunks(run, fitted, capsys, tmp_path):
    _, test, test_pred = fitted
    code, _, out = predict(capsys, run, test, tmp_path, "new.csv", "--chunk-size", "37")
    assert code == 0
    same_as_test_pred(out, test_pred)


def test_output_inside_a_run_folder_is_refused(run, fitted, capsys, tmp_path):
    fitted[1].to_csv(tmp_path / "new.csv", index=False)
    for target in (run / "oof.parquet", run / "models" / "extra.csv", run / "preds.csv"):
        code, err = cli(capsys, "predict", "--run", run, "--input", tmp_path / "new.csv", "--output", target)
        assert code == 2
        assert_message(
            err, rf"--output \S*{target.name} is inside the stage folder \S*{run.name}, whose files gbpipe wrote"
        )


def test_interrupted_predict_writes_nothing(run, fitted, capsys, tmp_path, monkeypatch):
    import pipeline.predict.run as predict_module

    real, calls = predict_module.predict_frame, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third chunk is being predicted
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_frame", interrupted)
    (tmp_path / "out.csv").write_bytes(OLD_OUTPUT)
    code, err, out = predict(capsys, run, fitted[1], tmp_path, "new.csv", "--chunk-size", "50")
    assert code == 130 and "interrupted" in err
    assert out.read_bytes() == OLD_OUTPUT


def test_run_copied_elsewhere_still_predicts(run, fitted, capsys, tmp_path):
    """A run folder is self-contained: moved or copied, it predicts the same."""
    _, test, test_pred = fitted
    copy = tmp_path / "moved" / "p1"
    shutil.copytree(run, copy)
    test.to_csv(tmp_path / "new.csv", index=False)
    code, _ = cli(capsys, "predict", "--run", copy, "--input", tmp_path / "new.csv", "--output", tmp_path / "o.csv")
    assert code == 0
    same_as_test_pred(tmp_path / "o.csv", test_pred)
