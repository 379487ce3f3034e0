"""Awkward but valid training data: gbpipe trains, says what it did (column and count), and the
predictions mean what they claim. The earlier run of the experiment stays byte-identical.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.metrics import score
from pipeline.predict import load_run
from tests.helpers.reliability import adult_data, adult_rows, assert_message, cli, sklearn_frame


def train_ok(project, capsys, data: dict, cv: dict | None = None, run_id: str = "r1") -> tuple[Path, str]:
    code, err = cli(capsys, "train", "--config", project.config(data, cv), "--run-id", run_id)
    assert code == 0, err
    project.assert_baseline_intact()
    return project.exp_dir / run_id, err


def predict_ok(
    capsys, run: Path, frame: pd.DataFrame, tmp: Path, name: str = "new.parquet"
) -> tuple[pd.DataFrame, str]:
    path = tmp / name
    frame.to_parquet(path, index=False) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    out = tmp / f"pred_{Path(name).stem}.parquet"
    code, err = cli(capsys, "predict", "--run", run, "--input", path, "--output", out)
    assert code == 0, err
    return pd.read_parquet(out), err


def write_pair(tmp: Path, train: pd.DataFrame, test: pd.DataFrame, tag: str = "") -> tuple[Path, Path]:
    train.to_parquet(tmp / f"train{tag}.parquet", index=False)
    test.to_parquet(tmp / f"test{tag}.parquet", index=False)
    return tmp / f"train{tag}.parquet", tmp / f"test{tag}.parquet"


def test_class_missing_from_a_folds_training_part_keeps_probability_columns_aligned(project, capsys):
    iris = sklearn_frame("iris")
    iris["target"] = iris["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    iris["plot"] = np.where(iris["target"] == "virginica", "V", [f"g{i % 10}" for i in range(len(iris))])
    iris.to_parquet(project.root / "iris.parquet", index=False)
    data = {"train": str(project.root / "iris.parquet"), "target": "target", "task": "multiclass"}
    run, err = train_ok(project, capsys, data, {"splitter": "group", "group": "plot"})
    assert_message(
        err,
        r"fold (\d) \(group split\): 1 classes of 'target' are not in its \d+ training rows: "
        r"\['virginica'\]; that fold's models give them probabilities near zero",
    )
    oof = pd.read_parquet(run / "oof.parquet")
    columns = ["pred_setosa", "pred_versicolor", "pred_virginica"]
    assert [c for c in oof.columns if c.startswith("pred_")] == columns
    assert np.allclose(oof[columns].sum(axis=1), 1.0)
    assert (oof["label_pred"] == oof[columns].idxmax(axis=1).str.removeprefix("pred_")).all()
    blind = oof["fold"] == oof.loc[oof["target"] == "virginica", "fold"].iloc[0]
    assert (oof.loc[blind, "pred_virginica"] < 0.05).all()  # its models never saw the class
    assert (oof.loc[~blind, "label_pred"] == oof.loc[~blind, "target"]).mean() > 0.9
    pred, _ = predict_ok(capsys, run, iris.drop(columns="target"), project.root)
    assert [c for c in pred.columns if c.startswith("pred_")] == columns


@pytest.mark.parametrize(
    "labels, positive",
    [({"<=50K": 1, ">50K": 2}, None), ({"<=50K": "rest", ">50K": "high"}, "high")],
    ids=["labels-1-2", "labels-strings"],
)
def test_binary_labels_come_back_in_their_own_values(project, capsys, labels, positive):
    train, test = adult_rows()
    train["income"], test["income"] = train["income"].map(labels), test["income"].map(labels)
    data = {
        "train": str(write_pair(project.root, train, test)[0]),
        "test": str(project.root / "test.parquet"),
        "target": "income",
        "task": "binary",
    }
    if positive is not None:
        data["positive_label"] = positive
    run, _ = train_ok(project, capsys, data)
    oof = pd.read_parquet(run / "oof.parquet")
    top = labels[">50K"]
    assert set(oof["label_pred"]) <= set(labels.values()) and set(oof["target"]) == set(labels.values())
    assert score("auc", (oof["target"] == top).to_numpy().astype(int), oof["pred"].to_numpy()) > 0.85
    assert json.loads((run / "schema.json").read_text())["labels"]["classes"][-1] == top
    pred, _ = predict_ok(capsys, run, test.drop(columns="income"), project.root)
    expected = pd.read_parquet(run / "test_pred.parquet")
    assert np.array_equal(pred["pred"], expected["pred"]) and set(pred["label_pred"]) <= set(labels.values())


def test_multiclass_ids_that_are_not_0_to_k_minus_1(project, capsys):
    wine = sklearn_frame("wine")
    wine["target"] = wine["target"].map({0: 0, 1: 3, 2: 7})
    wine.to_parquet(project.root / "wine.parquet", index=False)
    run, _ = train_ok(
        project, capsys, {"train": str(project.root / "wine.parquet"), "target": "target", "task": "multiclass"}
    )
    oof = pd.read_parquet(run / "oof.parquet")
    assert [c for c in oof.columns if c.startswith("pred_")] == ["pred_0", "pred_3", "pred_7"]
    assert set(oof["label_pred"]) <= {0, 3, 7} and (oof["label_pred"] == oof["target"]).mean() > 0.85
    true_class_prob = [row[f"pred_{t}"] for t, (_, row) in zip(oof["target"], oof.iterrows())]
    assert np.mean(true_class_prob) > 0.7


def test_all_nan_and_constant_columns_are_named_and_change_nothing(project, capsys):
    train, test = adult_rows()
    plain = write_pair(project.root, train, test)
    run_plain, _ = train_ok(project, capsys, adult_data(*plain), run_id="plain")
    extra = {"empty": np.nan, "flat": 1.0}
    dull = write_pair(project.root, train.assign(**extra), test.assign(**extra), "_dull")
    run_dull, err = train_ok(project, capsys, adult_data(*dull), run_id="dull")
    assert_message(
        err,
        r"2 feature columns carry no information and are never split on: all missing \['empty'\], "
        r"constant \['flat'\]",
    )
    for name in ("oof.parquet", "test_pred.parquet"):
        a, b = pd.read_parquet(run_plain / name), pd.read_parquet(run_dull / name)
        assert a.equals(b), name


def test_infinities_are_missing_values_in_training_and_in_predict(project, capsys):
    """One policy: +/-inf is treated as a missing value, counted, in train, test and predict alike."""
    train, test = adult_rows()
    rows_tr, rows_te = train.index[::48], test.index[::40]  # 25 and 10 rows
    with_nan = [f.astype({"capital-gain": "float64"}) for f in (train, test)]
    with_nan[0].loc[rows_tr, "capital-gain"] = np.nan
    with_nan[1].loc[rows_te, "capital-gain"] = np.nan
    with_inf = [f.astype({"capital-gain": "float64"}) for f in (train, test)]
    with_inf[0].loc[rows_tr, "capital-gain"] = np.where(np.arange(len(rows_tr)) % 2, np.inf, -np.inf)
    with_inf[1].loc[rows_te, "capital-gain"] = np.inf
    run_nan, _ = train_ok(project, capsys, adult_data(*write_pair(project.root, *with_nan, "_nan")), run_id="nan")
    run_inf, err = train_ok(project, capsys, adult_data(*write_pair(project.root, *with_inf, "_inf")), run_id="inf")
    assert_message(
        err,
        r"train_inf\.parquet: infinite values treated as missing: \{'capital-gain': 25\}",
        r"test_inf\.parquet: infinite values treated as missing: \{'capital-gain': 10\}",
    )
    for name in ("oof.parquet", "test_pred.parquet"):
        assert (run_nan / name).read_bytes() == (run_inf / name).read_bytes(), name
    by_inf, err = predict_ok(capsys, run_inf, with_inf[1].drop(columns="income"), project.root, "inf.parquet")
    assert_message(err, r"inf\.parquet: infinite values treated as missing, per column: \{'capital-gain': 10\}")
    by_nan, _ = predict_ok(capsys, run_inf, with_nan[1].drop(columns="income"), project.root, "nan.parquet")
    assert by_inf.equals(by_nan)


def test_names_with_json_characters_and_spaces(project, capsys):
    train, test = adult_rows()
    names = {
        "age": "age [years]",
        "workclass": "work class",
        "education": '{"edu": 1}',
        "capital-gain": "gain:usd,net",
        "hours-per-week": "work_class",
    }  # 'work class' and 'work_class' clash
    run, _ = train_ok(
        project, capsys, adult_data(*write_pair(project.root, train.rename(columns=names), test.rename(columns=names)))
    )
    schema = json.loads((run / "schema.json").read_text())
    assert set(names.values()) <= set(schema["features"]["columns"])
    model_names = schema["model_names"]
    assert len(set(model_names)) == len(model_names)
    assert not any(ch in name for name in model_names for ch in '[]{}":, ')
    shuffled = test.rename(columns=names).drop(columns="income").sample(frac=1.0, axis=1, random_state=3)
    pred, _ = predict_ok(capsys, run, shuffled, project.root, "new.csv")
    assert np.array_equal(pred["pred"], pd.read_parquet(run / "test_pred.parquet")["pred"])


def test_tuple_names_from_groupby_are_flattened_the_same_way_for_predict(project, capsys, monkeypatch):
    import pipeline.data.prepare as prepare_module
    from pipeline.data.tables import Tables

    train, test = adult_rows()
    tuples = pd.MultiIndex.from_tuples([(c, "") if c in ("income", "sex") else (c, "mean") for c in train.columns])
    tables = Tables(train.set_axis(tuples, axis=1), test.set_axis(tuples, axis=1), "features(train)", "features(test)")
    monkeypatch.setattr(prepare_module, "experiment_tables", lambda cfg, progress=None: tables)
    run, _ = train_ok(project, capsys, adult_data(project.root / "unused.parquet"))
    columns = json.loads((run / "schema.json").read_text())["features"]["columns"]
    assert "age_mean" in columns and "sex" in columns and "capital-gain_mean" in columns
    in_memory = test.drop(columns="income").set_axis(tuples.drop(("income", "")), axis=1)
    from pipeline.data.schema import ConversionReport
    from pipeline.predict import predict_frame

    fitted = load_run(run)
    pred = predict_frame(fitted, in_memory, "frame", ConversionReport())
    assert np.array_equal(pred["pred"], pd.read_parquet(run / "test_pred.parquet")["pred"])


def test_object_columns_become_categories_that_predict_from_text_matches(project, capsys, monkeypatch):
    import pipeline.data.prepare as prepare_module
    from pipeline.data.tables import Tables

    train, test = adult_rows()
    code = lambda f: pd.Series([i % 7 if i % 3 else f"c{i % 5}" for i in range(len(f))], dtype=object)  # noqa: E731
    train, test = train.assign(code=code(train)), test.assign(code=code(test))
    as_object = {c: object for c in ("workclass", "education", "occupation", "native-country")}
    tables = Tables(train.astype(as_object), test.astype(as_object), "frames(train)", "frames(test)")
    monkeypatch.setattr(prepare_module, "experiment_tables", lambda cfg, progress=None: tables)
    run, _ = train_ok(project, capsys, adult_data(project.root / "unused.parquet"))
    schema = json.loads((run / "schema.json").read_text())["features"]
    assert schema["kinds"]["code"] == "categorical" and set(schema["categories"]["code"]) == {
        *map(str, range(7)),
        *(f"c{i}" for i in range(5)),
    }
    pred, err = predict_ok(capsys, run, test.drop(columns="income"), project.root, "new.csv")  # text read back
    assert "'code'" not in err  # every code value read back as text matches the vocabulary
    assert np.array_equal(pred["pred"], pd.read_parquet(run / "test_pred.parquet")["pred"])


def test_nullable_dtypes_with_pd_na_train_like_plain_missing_values(project, capsys):
    train, test = adult_rows()

    def nullable(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.astype({"age": "Int64", "hours-per-week": "Float64", "occupation": "string"})
        out["is_male"] = (frame["sex"] == "Male").astype("boolean")
        blank = out.index[::13]
        out.loc[blank, ["age", "hours-per-week", "occupation", "is_male"]] = pd.NA
        return out

    def plain(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.astype({"age": "float64", "hours-per-week": "float64", "occupation": object})
        out["is_male"] = (frame["sex"] == "Male").astype("float64")
        blank = out.index[::13]
        out.loc[blank, ["age", "hours-per-week", "is_male"]] = np.nan
        out.loc[blank, "occupation"] = None
        return out

    run_na, _ = train_ok(
        project, capsys, adult_data(*write_pair(project.root, nullable(train), nullable(test), "_na")), run_id="na"
    )
    run_plain, _ = train_ok(
        project, capsys, adult_data(*write_pair(project.root, plain(train), plain(test), "_pl")), run_id="plain"
    )
    assert pd.read_parquet(project.root / "train_na.parquet")["age"].dtype == "Int64"  # really nullable on disk
    for name in ("oof.parquet", "test_pred.parquet"):
        assert pd.read_parquet(run_na / name).equals(pd.read_parquet(run_plain / name)), name


def test_id_like_columns_text_excluded_integer_warned(project, capsys):
    train, test = adult_rows()
    for frame in (train, test):
        frame["customer_code"] = [f"C-{i:06d}" for i in range(len(frame))]
        frame["serial"] = np.arange(len(frame)) * 3 + 1000
    run, err = train_ok(project, capsys, adult_data(*write_pair(project.root, train, test)))
    assert_message(
        err,
        r"1 text columns of \S*train\.parquet hold a distinct value on each of its 1200 rows and "
        r"are excluded as identifiers: \['customer_code'\]",
        r"1 integer columns of \S*train\.parquet hold a distinct value on each of its 1200 rows and look "
        r"like ids, but are kept as features: \['serial'\]",
    )
    columns = json.loads((run / "schema.json").read_text())["features"]["columns"]
    assert "customer_code" not in columns and "serial" in columns


def test_mixed_timezone_dates_order_the_time_split_in_utc(project, capsys):
    train, _ = adult_rows()
    rng = np.random.default_rng(0)
    instants = pd.Timestamp("2021-03-01", tz="UTC") + pd.to_timedelta(rng.permutation(len(train)) * 40, unit="min")
    zones = [timezone(timedelta(hours=int(h))) for h in rng.choice([-8, 0, 9], len(train))]
    train["when"] = [t.tz_convert(zone).isoformat() for t, zone in zip(instants, zones)]  # e.g. ...T07:20:00-08:00
    assert not pd.Series(train["when"]).sort_values().index.equals(pd.Series(instants).sort_values().index)
    run, _ = train_ok(
        project,
        capsys,
        adult_data(*write_pair(project.root, train, train.head(5))),
        {"splitter": "time", "time": "when", "n_splits": 3},
    )
    folds = pd.read_parquet(run / "folds.parquet")["fold"].to_numpy()
    utc = pd.Series(instants).to_numpy()
    for k in range(3):
        earlier = utc[(folds < k)]
        assert earlier.max() < utc[folds == k].min(), f"fold {k} trains on rows later than it validates"


def test_bom_file_reads_its_first_column_name_cleanly(project, capsys):
    train, test = adult_rows()
    columns = ["income"] + [c for c in train.columns if c != "income"]
    (project.root / "train.csv").write_bytes(train[columns].to_csv(index=False).encode("utf-8-sig"))
    run, _ = train_ok(project, capsys, adult_data(project.root / "train.csv"))
    assert json.loads((run / "schema.json").read_text())["target"] == "income"
    assert len(pd.read_parquet(run / "oof.parquet")) == 1200


def test_ids_shared_by_train_and_test_are_counted(project, capsys):
    train, test = adult_rows()
    train["pid"] = [f"p{i:05d}" for i in range(len(train))]
    test["pid"] = [f"p{i + 1183:05d}" for i in range(len(test))]  # p01183..p01199 are also training ids
    run, err = train_ok(project, capsys, adult_data(*write_pair(project.root, train, test), id="pid"))
    assert_message(
        err,
        r"id column 'pid': 17 ids of \S*test\.parquet are also in \S*train\.parquet "
        r"\(e\.g\. \['p01183'",
    )
    assert pd.read_parquet(run / "test_pred.parquet")["pid"].tolist() == test["pid"].tolist()


def test_test_entities_unseen_in_training_are_counted_and_treated_as_missing(project, capsys):
    train, test = adult_rows()
    test.loc[test.index[:12], "native-country"] = "Atlantis"
    test.loc[test.index[20:25], "workclass"] = "Space-agency"
    unseen = {c: int((~test[c].isin(train[c]) & test[c].notna()).sum()) for c in ("native-country", "workclass")}
    assert unseen["native-country"] >= 12 and unseen["workclass"] == 5
    run, err = train_ok(project, capsys, adult_data(*write_pair(project.root, train, test)))
    assert_message(
        err,
        r"test\.parquet: categories not seen in training, treated as missing: "
        rf"\{{'workclass': 5, 'native-country': {unseen['native-country']}\}}",
    )
    blanked = test.drop(columns="income").copy()
    for col in unseen:
        blanked.loc[~blanked[col].isin(train[col]), col] = None
    pred, _ = predict_ok(capsys, run, blanked, project.root)
    assert np.array_equal(pred["pred"], pd.read_parquet(run / "test_pred.parquet")["pred"])
