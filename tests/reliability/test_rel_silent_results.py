"""No silent wrong result: inputs that used to train or predict with exit 0 and a wrong answer are refused or
named in a warning.

- A column named row_id (the name gbpipe gives row positions) was trained on and replaced by positions.
- Numbers written as "1,234", or a numeric column with a few stray dates, silently became categorical.
- `tune --n-trials 1` queued the default trial and then ran nothing.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers.reliability import adult_data, adult_rows, assert_message, cli


def _write(project, frame: pd.DataFrame, name: str) -> str:
    path = project.root / name
    frame.to_csv(path, index=False)
    return str(path)


def _with_row_id(frame: pd.DataFrame, start: int) -> pd.DataFrame:
    return frame.assign(row_id=range(start, start + len(frame)))[["row_id", *frame.columns]]


def test_a_row_id_column_without_data_id_exits_3(project, capsys):
    train, _ = adult_rows()
    data = adult_data(_write(project, _with_row_id(train, 1000), "train.csv"))
    code, err = cli(capsys, "train", "--config", project.config(data=data), "-q")
    assert code == 3
    assert_message(
        err, r"train\.csv has a column 'row_id', the name gbpipe gives row positions", r"data\.id = 'row_id'"
    )
    project.assert_untouched()


def test_data_id_row_id_keys_predictions_by_the_users_column(project, capsys):
    train, test = adult_rows()
    data = adult_data(_write(project, _with_row_id(train, 1000), "train.csv"), id="row_id")
    assert cli(capsys, "train", "--config", project.config(data=data), "--run-id", "keyed", "-q")[0] == 0
    new_rows = _with_row_id(test.drop(columns="income"), 50_000).iloc[::-1]  # ids not in row order
    source = _write(project, new_rows, "new.csv")
    code, err = cli(capsys, "predict", "--run", project.exp_dir / "keyed", "--input", source, "--output", "p.csv")
    assert code == 0, err
    predicted = pd.read_csv(project.root / "p.csv")
    assert predicted["row_id"].tolist() == new_rows["row_id"].tolist()
    oof = pd.read_parquet(project.exp_dir / "keyed" / "oof.parquet")
    assert sorted(oof["row_id"]) == list(range(1000, 1000 + len(train)))


def test_predicting_a_row_id_column_with_a_positional_run_exits_3(project, capsys):
    _, test = adult_rows()
    source = _write(project, _with_row_id(test, 7), "new.csv")
    code, err = cli(capsys, "predict", "--run", project.baseline, "--input", source, "--output", "p.csv")
    assert code == 3
    assert_message(err, r"new\.csv has a column 'row_id', but the run was trained without data\.id")
    assert not (project.root / "p.csv").exists()


@pytest.mark.parametrize(
    "column, spoil, pattern",
    [
        ("capital-gain", lambda s: s.map(lambda v: f"{v:,}"), r"\d+ written with thousands separators \(e\.g\. \['"),
        ("hours-per-week", lambda s: s.astype(str).where(s.index >= 5, "2011-01-03"), r"5 are not numbers"),
    ],
    ids=["thousands-separators", "stray-dates"],
)
def test_numbers_read_as_text_are_named_in_a_warning(project, capsys, column, spoil, pattern):
    train, _ = adult_rows()
    train[column] = spoil(train[column])
    data = adult_data(_write(project, train, "train.csv"))
    code, err = cli(capsys, "train", "--config", project.config(data=data), "-q")
    assert code == 0, err
    assert_message(err, rf"warning: \S+train\.csv: column '{column}' is read as text and used as a categorical")
    assert_message(err, pattern)
    listed = adult_data(data["train"], categorical=[column])
    code, err = cli(capsys, "train", "--config", project.config(data=listed), "-q")
    assert code == 0 and "read as text" not in err


def test_text_columns_that_are_not_numbers_are_not_warned_about(project, capsys):
    code, err = cli(capsys, "train", "--config", project.config(), "-q")
    assert code == 0 and "read as text" not in err


def test_tune_with_a_budget_of_one_trial_runs_the_default_trial(project, capsys):
    code, err = cli(capsys, "tune", "--config", project.config(), "--n-trials", "1", "-q")
    assert code == 0, err
    trials = pd.read_parquet(project.exp_dir / "tune" / "default" / "trials.parquet")
    assert trials["state"].tolist() == ["COMPLETE"]
