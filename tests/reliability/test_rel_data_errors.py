"""Bad training data: exit 3, a message naming the file, column and count, and nothing written.

Every case runs next to a published run of the same experiment, which must stay byte-identical;
the whole runs folder must be unchanged (no new run, no unfinished run folder, no folds cache, no
temp file).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.reliability import adult_data, adult_rows, assert_message, cli, sklearn_frame

Case = Callable[[Path], tuple[dict, dict]]  # writes files in tmp_path, returns (data, cv) config sections


def _parquet(frame: pd.DataFrame, tmp: Path, name: str = "train.parquet") -> Path:
    frame.to_parquet(tmp / name, index=False)
    return tmp / name


def target_missing(tmp):
    train, _ = adult_rows()
    return adult_data(_parquet(train.drop(columns="income"), tmp)), {}


def target_nan(tmp):
    train, _ = adult_rows()
    train.loc[train.index[:9], "income"] = None
    return adult_data(_parquet(train, tmp)), {}


def target_inf_regression(tmp):
    train, _ = adult_rows()
    train["hours-per-week"] = train["hours-per-week"].astype("float64")
    train.loc[train.index[[3, 50, 51, 700]], "hours-per-week"] = [np.inf, -np.inf, np.inf, np.inf]
    return {"train": str(_parquet(train, tmp)), "target": "hours-per-week", "task": "regression"}, {}


def target_inf_binary(tmp):
    train, _ = adult_rows()
    train["income"] = (train["income"] == ">50K").astype("float64")
    train.loc[train.index[:3], "income"] = np.inf
    return {"train": str(_parquet(train, tmp)), "target": "income", "task": "binary"}, {}


def single_class(tmp):
    train, _ = adult_rows()
    return adult_data(_parquet(train[train["income"] == "<=50K"], tmp)), {}


def rare_class(tmp):
    wine = sklearn_frame("wine")
    wine = pd.concat([wine[wine["target"] != 2], wine[wine["target"] == 2].head(2)])
    return {"train": str(_parquet(wine, tmp)), "target": "target", "task": "multiclass"}, {}


def duplicate_column_names(tmp):
    train, _ = adult_rows()
    text = train.to_csv(index=False).splitlines()
    text[0] = text[0].replace("fnlwgt", "age").replace("capital-loss", "sex")
    (tmp / "train.csv").write_text("\n".join(text) + "\n")
    return adult_data(tmp / "train.csv"), {}


def empty_file(tmp):
    (tmp / "train.csv").write_bytes(b"")
    return adult_data(tmp / "train.csv"), {}


def header_only_csv(tmp):
    train, _ = adult_rows()
    (tmp / "train.csv").write_text(",".join(train.columns) + "\n")
    return adult_data(tmp / "train.csv"), {}


def header_only_parquet(tmp):
    train, _ = adult_rows()
    return adult_data(_parquet(train.head(0), tmp)), {}


def not_utf8(tmp):
    train, _ = adult_rows()
    train.loc[5, "native-country"] = "Côte-d'Ivoire"
    (tmp / "train.csv").write_bytes(train.to_csv(index=False).encode("latin-1"))
    return adult_data(tmp / "train.csv"), {}


def wrong_delimiter(tmp):
    train, _ = adult_rows()
    train.to_csv(tmp / "train.csv", index=False, sep=";")
    return adult_data(tmp / "train.csv"), {}


def duplicate_ids(tmp):
    train, _ = adult_rows()
    train["pid"] = [f"p{i:05d}" for i in range(len(train))]
    train.loc[train.index[10:15], "pid"] = "p00001"
    return adult_data(_parquet(train, tmp), id="pid"), {}


def missing_ids(tmp):
    train, _ = adult_rows()
    train["pid"] = [f"p{i:05d}" for i in range(len(train))]
    train.loc[train.index[[7, 8, 9]], "pid"] = None
    return adult_data(_parquet(train, tmp), id="pid"), {}


def nan_group_keys(tmp):
    train, _ = adult_rows()
    train["household"] = (np.arange(len(train)) % 40).astype("float64")
    train.loc[train.index[100:106], "household"] = np.nan
    return adult_data(_parquet(train, tmp)), {"group": "household"}


def time_not_dates(tmp):
    train, _ = adult_rows()
    train["when"] = pd.date_range("2020-01-01", periods=len(train), freq="h").strftime("%Y-%m-%dT%H:%M:%S")
    train.loc[train.index[[4, 9]], "when"] = ["yesterday", "soon"]
    return adult_data(_parquet(train, tmp)), {"splitter": "time", "time": "when"}


def time_mixed_naive_and_aware(tmp):
    train, _ = adult_rows()
    stamps = pd.date_range("2020-01-01", periods=len(train), freq="h")
    text = stamps.strftime("%Y-%m-%dT%H:%M:%S+00:00").tolist()
    for i in range(0, 30, 3):
        text[i] = stamps[i].strftime("%Y-%m-%d %H:%M:%S")  # 10 values without an offset
    train["when"] = text
    return adult_data(_parquet(train, tmp)), {"splitter": "time", "time": "when"}


def _grouped(train: pd.DataFrame, positive_groups: list[str]) -> pd.DataFrame:
    """Negatives in 60 small groups; positives spread over the given groups."""
    positive = (train["income"] == ">50K").to_numpy()
    groups = np.array([f"n{i % 60}" for i in range(len(train))], dtype=object)
    groups[positive] = [positive_groups[i % len(positive_groups)] for i in range(int(positive.sum()))]
    return train.assign(household=groups)


def fold_without_positive_training_rows(tmp):
    train, _ = adult_rows()
    return adult_data(_parquet(_grouped(train, ["P"]), tmp)), {"splitter": "group", "group": "household"}


def fold_with_one_validation_class(tmp):
    train, _ = adult_rows()
    frame = _grouped(train, ["P1", "P2", "P3"])  # with seed 7 one of 4 group folds gets no positives
    return adult_data(_parquet(frame, tmp)), {"splitter": "group", "group": "household", "n_splits": 4}


CASES: list[tuple[str, Case, list[str]]] = [
    ("target-missing", target_missing, [r"target column 'income' not found in \S*train\.parquet"]),
    ("target-nan", target_nan, [r"target column 'income' in \S*train\.parquet has 9 missing values of 1200"]),
    (
        "target-inf-regression",
        target_inf_regression,
        [r"target column 'hours-per-week' in \S*train\.parquet has 4 infinite values"],
    ),
    ("target-inf-binary", target_inf_binary, [r"target column 'income' in \S*train\.parquet has 3 infinite values"]),
    (
        "single-class",
        single_class,
        [r"target column 'income' in \S*train\.parquet has a single class '<=50K' \(\d+ rows\)"],
    ),
    (
        "rare-class-below-n-splits",
        rare_class,
        [
            r"target column 'target' in \S*train\.parquet has 1 classes with fewer rows than cv\.n_splits=3 "
            r"\(2: 2 rows\)"
        ],
    ),
    (
        "duplicate-column-names",
        duplicate_column_names,
        [r"\S*train\.csv has duplicate column names: \['age', 'sex'\] \(2 repeats\)"],
    ),
    ("empty-file", empty_file, [r"\S*train\.csv is empty \(0 bytes\)"]),
    ("header-only-csv", header_only_csv, [r"\S*train\.csv has a header but 0 rows"]),
    ("header-only-parquet", header_only_parquet, [r"\S*train\.parquet has a header but 0 rows"]),
    ("not-utf8", not_utf8, [r"\S*train\.csv is not UTF-8 \(byte \d+"]),
    (
        "wrong-delimiter",
        wrong_delimiter,
        [
            r"\S*train\.csv has one column 'age;workclass;.*the delimiter looks wrong "
            r"\(expected ','\); set data\.csv_sep"
        ],
    ),
    ("duplicate-ids", duplicate_ids, [r"id column 'pid' in \S*train\.parquet has 5 duplicated values"]),
    ("missing-ids", missing_ids, [r"id column 'pid' in \S*train\.parquet has 3 missing values"]),
    (
        "nan-group-keys",
        nan_group_keys,
        [r"cv\.group column 'household' of the training table has 6 missing values of 1200"],
    ),
    (
        "time-not-dates",
        time_not_dates,
        [
            r"cv\.time column 'when': 2 values of 1200 are not dates or numbers "
            r"\(e\.g\. \['yesterday', 'soon'\]\)"
        ],
    ),
    (
        "time-mixed-naive-aware",
        time_mixed_naive_and_aware,
        [r"cv\.time column 'when': 1190 values carry a time zone and 10 do not"],
    ),
    (
        "fold-training-part-lacks-a-class",
        fold_without_positive_training_rows,
        [r"fold \d \(group split\): its \d+ training rows have no 'income' = '>50K' rows"],
    ),
    (
        "fold-validation-single-class-auc",
        fold_with_one_validation_class,
        [r"fold \d \(group split\): its \d+ validation rows all have 'income' = '<=50K', so AUC is undefined"],
    ),
]


@pytest.mark.parametrize("make, patterns", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_training_data_exits_3_and_writes_nothing(project, capsys, make, patterns):
    data, cv = make(project.root)
    code, err = cli(capsys, "train", "--config", project.config(data, cv), "-q")
    assert code == 3, err
    assert_message(err, *patterns)
    project.assert_untouched()


def test_flattened_names_that_collide_exit_3(project, capsys, monkeypatch):
    """Tuple names from groupby/agg are flattened with '_'; a clash with an existing name is refused."""
    import pipeline.data.prepare as prepare_module
    from pipeline.data.tables import Tables

    train, _ = adult_rows()
    train[("age", "max")] = train["age"]
    train["age_max"] = train["age"]
    tables = Tables(train, None, "features(train)", None)
    monkeypatch.setattr(prepare_module, "experiment_tables", lambda cfg, progress=None: tables)
    code, err = cli(capsys, "train", "--config", project.config(), "-q")
    assert code == 3
    assert_message(err, r"features\(train\): 1 column names collide once flattened to text: \['age_max'\]")
    project.assert_untouched()
