"""Training tables read in Arrow batches (data.batch_rows): the same run as a whole read, byte for byte, for
binary, multiclass and regression, with categoricals, NaN and an integer column whose missing values sit in one
row group only; importance on such a run; the memory guard; and what cannot be streamed refused clearly."""

from __future__ import annotations

import gc
import re
import sys
import weakref

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data import stream as stream_module
from pipeline.data.prepare import Prepared, prepare
from pipeline.data.schema import ConversionReport
from pipeline.data.stream import StreamedMatrix
from pipeline.engine import fold as fold_module
from pipeline.engine.cv import run_cv
from pipeline.engine.spec import train_spec
from pipeline.engine.streamed import MatrixSequence
from pipeline.predict import run as predict_module
from pipeline.train import run as train_module
from tests.helpers.configs import write_config
from tests.helpers.datasets import shared_file
from tests.helpers.reliability import adult_rows, assert_message, cli

COMPARED = ["oof.parquet", "test_pred.parquet", "folds.parquet", "importance.parquet", "drift_reference.json"]
ROW_GROUP = 700  # row groups and batches that do not line up: a batch spans two groups


def write_parquet(frame: pd.DataFrame, path) -> str:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROW_GROUP)
    return str(path)


def adult_with_gaps(tmp_path) -> tuple[str, str]:
    """Real adult rows with NaN in a float column and, in the first row group only, in an integer and a boolean
    one (a whole read makes them Int64 and object, a batch without a gap would not); a struct column first,
    empty in the first row group, so its parquet leaves shift every later column's."""
    train, test = adult_rows(2400, 600)
    for frame in (train, test):
        frame.loc[frame.index % 17 == 0, "age"] = np.nan
        frame.insert(0, "address", [None if i < 800 else {"zip": i % 90, "city": "x"} for i in range(len(frame))])
        frame["over_40h"] = frame["hours-per-week"] > 40
    train["hours-per-week"] = train["hours-per-week"].astype("Int64")
    train.loc[:40, "hours-per-week"] = pd.NA
    train["over_40h"] = train["over_40h"].astype(object)
    train.loc[:40, "over_40h"] = None
    return write_parquet(train, tmp_path / "train.parquet"), write_parquet(test, tmp_path / "test.parquet")


def numeric_housing(tmp_path) -> str:
    """Real california_housing rows, numbers only (read from Arrow without pandas): an Int64 column whose gaps sit
    in the first row group only, an int16 one, and infinities in a float one."""
    housing = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(3000, random_state=1)
    housing = housing.drop(columns="ocean_proximity").reset_index(drop=True)
    housing["households"] = housing["households"].astype("Int64")
    housing.loc[:40, "households"] = pd.NA
    housing["housing_median_age"] = housing["housing_median_age"].astype("int16")
    housing.loc[housing.index % 97 == 0, "total_rooms"] = np.inf
    housing.loc[housing.index % 89 == 0, "total_rooms"] = -np.inf
    return write_parquet(housing, tmp_path / "numeric.parquet")


def tasks(tmp_path) -> dict[str, dict]:
    train, test = adult_with_gaps(tmp_path)
    housing = pd.read_parquet(shared_file("california_housing/housing.parquet")).sample(3000, random_state=0)
    return {
        "numeric": {"train": numeric_housing(tmp_path), "target": "median_house_value", "task": "regression"},
        "binary": {"train": train, "test": test, "target": "income", "task": "binary", "positive_label": ">50K"},
        "multiclass": {"train": train, "test": test, "target": "relationship", "task": "multiclass"},
        "regression": {
            "train": write_parquet(housing, tmp_path / "housing.parquet"),
            "target": "median_house_value",
            "task": "regression",
        },
    }


def train_run(tmp_path, name: str, data: dict, batch_rows, model: dict | None = None) -> tuple:
    data = {**data, "batch_rows": batch_rows}
    config = write_config(tmp_path, name, data=data, cv={"n_splits": 3, "seed": 3}, model=model or {})
    assert main(["train", "--config", str(config), "-q", "--run-id", "run"]) == 0
    return config, tmp_path / "runs" / name / "run"


@pytest.mark.parametrize(
    "task, model",
    [
        ("binary", None),
        ("multiclass", None),
        ("regression", None),
        ("binary", {"num_threads": 2, "fold_workers": 2}),
        ("binary", {"params": {"learning_rate": 0.1, "bin_construct_sample_cnt": 500}}),
        ("regression", {"early_stopping": "inner"}),
        ("numeric", None),
    ],
    ids=[
        "binary",
        "multiclass",
        "regression",
        "binary-two-folds-at-once",
        "binary-bins-from-a-sample",
        "regression-inner-early-stopping",
        "regression-numbers-only",
    ],
)
def test_a_table_read_in_batches_trains_the_run_a_whole_read_trains(tmp_path, task, model, recwarn):
    data = tasks(tmp_path)[task]
    _, whole = train_run(tmp_path, "whole", data, "whole", model)
    whole_warnings = sorted(str(w.message) for w in recwarn)
    recwarn.clear()
    config, batched = train_run(tmp_path, "batched", data, 500, model)
    assert sorted(str(w.message) for w in recwarn) == whole_warnings
    compared = [n for n in COMPARED if (whole / n).is_file()] + [f"models/fold_{k}.txt" for k in range(3)]
    assert "test_pred.parquet" in compared or data["task"] == "regression"
    for name in compared:
        assert (batched / name).read_bytes() == (whole / name).read_bytes(), name
    prep = prepare(load_config(config), stream=True)
    assert isinstance(prep.X, StreamedMatrix) and prep.X.shape == (len(prep.y), len(prep.schema.columns))
    whole_prep = prepare(load_config(config, ["data.batch_rows=whole"]), stream=True)
    assert prep.data_fingerprint == whole_prep.data_fingerprint
    assert prep.schema == whole_prep.schema
    rows = np.array([5, 1, 1999, 700, 699, 3])
    np.testing.assert_array_equal(prep.X[rows], whole_prep.X[rows])
    np.testing.assert_array_equal(prep.X[:, 2], whole_prep.X[:, 2])


def test_number_columns_read_from_arrow_hold_what_pandas_makes_of_them(tmp_path, monkeypatch):
    """A table of integer and float columns is converted straight from Arrow, the hot path of every pass over the
    file: each cell, its bits, and the counted infinities are what the pandas conversion gives."""
    config = write_config(
        tmp_path,
        "numeric",
        data={
            "train": numeric_housing(tmp_path),
            "target": "median_house_value",
            "task": "regression",
            "batch_rows": 500,
        },
    )
    prep = prepare(load_config(config), stream=True)
    rows = np.flatnonzero(np.arange(len(prep.y)) % 3 != 1)  # a fold's rows: every row group, part of each
    from_arrow, from_pandas = ConversionReport(), ConversionReport()

    def no_pandas(*args, **kwargs):
        raise AssertionError("a table of numbers went through pandas")

    with monkeypatch.context() as patch:
        patch.setattr(stream_module, "to_matrix", no_pandas)
        arrow_blocks = [np.concatenate(list(prep.X.blocks(r, from_arrow))) for r in (None, rows)]
    monkeypatch.setattr(StreamedMatrix, "_plain", False)
    plain = StreamedMatrix(prep.X.source, prep.X.schema, prep.X.batch_rows)
    pandas_blocks = [np.concatenate(list(plain.blocks(r, from_pandas))) for r in (None, rows)]
    for arrow, pandas in zip(arrow_blocks, pandas_blocks):
        assert arrow.flags["C_CONTIGUOUS"] and arrow.tobytes() == pandas.tobytes()
    assert from_arrow.infinite_to_nan == from_pandas.infinite_to_nan
    assert from_arrow.infinite_to_nan["total_rooms"] > 0 and np.isnan(arrow_blocks[0][:41, 6]).all()


def test_predict_converts_number_columns_from_arrow_as_pandas_does(tmp_path, monkeypatch, capsys):
    """`gbpipe predict` on a parquet table of numbers skips the pandas frame, as training does: the same bytes out,
    the same infinities counted in its warning, and the id carried through."""
    _, run_dir = train_run(tmp_path, "numeric", tasks(tmp_path)["numeric"], 500)
    table = tmp_path / "numeric.parquet"
    outputs, warned = {}, {}

    def predict(name: str) -> None:
        capsys.readouterr()
        out = tmp_path / f"{name}.parquet"
        assert main(["predict", "--run", str(run_dir), "--input", str(table), "--output", str(out),
                     "--chunk-size", "900", "-q"]) == 0  # fmt: skip
        outputs[name] = out.read_bytes()
        warned[name] = [line for line in capsys.readouterr().err.splitlines() if "infinite" in line]

    with monkeypatch.context() as patch:
        patch.setattr(predict_module, "to_matrix", lambda *a, **k: pytest.fail("numbers went through pandas"))
        predict("arrow")
    monkeypatch.setattr(predict_module, "arrow_matrix", lambda *args: None)
    predict("pandas")
    assert outputs["arrow"] == outputs["pandas"]
    assert warned["arrow"] == warned["pandas"] and len(warned["arrow"]) == 1 and "total_rooms" in warned["arrow"][0]
    pred = pd.read_parquet(tmp_path / "arrow.parquet")
    assert len(pred) == 3000 and pred["pred"].notna().all()


@pytest.mark.parametrize("table", ["numeric", "binary"])  # read from Arrow, and through pandas frames
def test_a_row_group_is_let_go_before_the_next_one_is_decoded(tmp_path, monkeypatch, table):
    """Reading in batches holds one decoded row group: when a batch spans two groups (as LightGBM asks for a
    fold's rows), the first is no longer held, by the reader or by the batch made from it, as the second decodes."""
    config = write_config(tmp_path, table, data={**tasks(tmp_path)[table], "batch_rows": 500})
    prep = prepare(load_config(config), stream=True)
    source = prep.X.source
    held_at_decode, group_bytes = [], []

    def decode(real):
        def read_row_group(*args, **kwargs):
            gc.collect()  # what is still referenced, not garbage awaiting collection
            held_at_decode.append(pa.total_allocated_bytes() - before)
            group = real(*args, **kwargs)
            group_bytes.append(group.nbytes)
            return group

        return read_row_group

    for part in source._files:
        monkeypatch.setattr(part, "read_row_group", decode(part.read_row_group))
    source.release()
    before = pa.total_allocated_bytes()
    rows = np.flatnonzero(np.arange(len(prep.y)) % 3 != 1)  # a fold's rows, from every row group
    sequence = MatrixSequence(prep.X.take(rows))
    for start in range(0, len(sequence), sequence.batch_size):  # as LightGBM pushes rows into bins
        assert len(sequence[start : start + sequence.batch_size]) == min(sequence.batch_size, len(rows) - start)
    for _ in prep.X.blocks():
        pass
    assert len(held_at_decode) == 2 * source._files[0].metadata.num_row_groups  # each group decoded once a pass
    assert max(held_at_decode) < min(group_bytes), (held_at_decode, group_bytes)


def test_the_block_sampled_for_bin_boundaries_is_let_go_when_rows_are_pushed(tmp_path):
    """LightGBM samples single rows of a Sequence for the bin boundaries, then pushes slices of it: the block the
    last sampled row came from is not held beside the batches pushed."""
    config = write_config(tmp_path, "sampled", data={**tasks(tmp_path)["numeric"], "batch_rows": 500})
    sequence = MatrixSequence(prepare(load_config(config), stream=True).X)
    row = sequence[1234]  # as LightGBM's sampling asks, which caches the row's block for the next row
    np.testing.assert_array_equal(row, sequence.matrix[1234:1235][0])
    block = weakref.ref(row.base)
    del row
    gc.collect()
    assert block() is not None
    assert len(sequence[0:500]) == 500
    gc.collect()
    assert block() is None


def test_a_fold_read_in_batches_holds_its_own_rows_bins_and_no_whole_dataset(tmp_path, monkeypatch):
    """What makes a table read in batches fit: while a fold trains, the only binned data alive is its training and
    early-stopping rows (read from the file against the whole table's bins), never the whole table's Dataset."""
    config = write_config(tmp_path, "held", data={**tasks(tmp_path)["binary"], "batch_rows": 500}, cv={"n_splits": 3})
    prep = prepare(load_config(config), stream=True)
    spec = train_spec(load_config(config), prep)
    held: list[list[int]] = []
    real_train = lgb.train

    def constructed() -> list[lgb.Dataset]:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, lgb.Dataset) and o._handle is not None]

    earlier = {id(d) for d in constructed()}  # other tests' Datasets, kept by caches this test does not own

    def train_and_look(params, train_set, **kwargs):
        fold_sets = [d for d in constructed() if id(d) not in earlier]
        held.append(sorted(d.num_data() for d in fold_sets))
        # LightGBM holds the labels; a Python copy of them would be held beside, as long as the fold's rows
        labels.append([d.label is None for d in fold_sets])
        np.testing.assert_array_equal(train_set.get_label(), prep.y[prep.folds.assignments[0] != len(held) - 1])
        row_arrays.append(sorted(len(a) for a in arrays_in_callers() if a.dtype.kind in "iu"))
        return real_train(params, train_set, **kwargs)

    labels: list[list[bool]] = []
    row_arrays: list[list[int]] = []
    monkeypatch.setattr(fold_module.lgb, "train", train_and_look)
    result = run_cv(prep.X, prep.y, prep.folds, spec)
    assert len(held) == 3 and len(result.folds) == 3
    for fold, sizes, found in zip(result.folds, held, row_arrays):
        assert sorted(sizes) == sorted([1, fold.n_train, fold.n_valid]), sizes  # the bin plan's row, the fold's
        in_fold = int((prep.folds.assignments[0] == fold.fold).sum())  # counted from the folds, not the run
        assert sorted(sizes) == sorted([1, len(prep.y) - in_fold, in_fold]), sizes
        # the fold's training rows are let go once binned; its validation rows are kept to predict them
        assert fold.n_train not in found and fold.n_valid in found, found
    assert labels == [[True, True, True]] * 3


def arrays_in_callers() -> list[np.ndarray]:
    """The arrays the frames calling this one hold in their variables."""
    frame, found = sys._getframe(1), []
    while frame is not None:
        found += [v for v in frame.f_locals.values() if isinstance(v, np.ndarray)]
        frame = frame.f_back
    return found


def test_a_run_read_in_batches_holds_no_ids_while_its_folds_train(tmp_path, monkeypatch):
    """The ids are as long as the table and no model uses them: while the folds train they wait in the run's
    folds.parquet, and the run's files are the whole read's, ids in their own type included."""
    train, test = (pd.read_parquet(path) for path in adult_with_gaps(tmp_path))
    train.insert(1, "customer", [f"c{i:05d}" for i in range(len(train))])  # not first: it goes back in its place
    test.insert(1, "customer", [f"t{i:05d}" for i in range(len(test))])
    data = {
        **tasks(tmp_path)["binary"],
        "train": write_parquet(train, tmp_path / "ids.parquet"),
        "test": write_parquet(test, tmp_path / "ids_test.parquet"),
        "id": "customer",
    }
    _, whole = train_run(tmp_path, "whole", data, "whole")
    real_train, seen = lgb.train, []

    def prepared() -> list[Prepared]:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, Prepared)]

    earlier = {id(p) for p in prepared()}  # other tests' data, kept by caches this test does not own

    def train_and_look(params, train_set, **kwargs):
        seen.append(sorted(len(p.ids) for p in prepared() if id(p) not in earlier))
        return real_train(params, train_set, **kwargs)

    monkeypatch.setattr(fold_module.lgb, "train", train_and_look)
    _, batched = train_run(tmp_path, "batched", data, 500)
    assert seen == [[0]] * 3
    for name in COMPARED + [f"models/fold_{k}.txt" for k in range(3)]:
        assert (batched / name).read_bytes() == (whole / name).read_bytes(), name
    assert pd.read_parquet(batched / "oof.parquet")["customer"].tolist() == train["customer"].tolist()
    prep = prepare(load_config(tmp_path / "batched.toml"), stream=True)
    back = prep.without_ids().with_ids(prep.ids.astype(object), prep.tables.train.columns)
    pd.testing.assert_series_equal(back.ids, prep.ids)
    pd.testing.assert_frame_equal(back.tables.train, prep.tables.train)


def test_ids_changed_in_the_staged_folds_file_while_training_stop_the_run(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, "tampered", data={**tasks(tmp_path)["binary"], "batch_rows": 500})
    real_run_cv = train_module.run_cv

    def run_cv_then_cut_the_ids(*args, **kwargs):
        result = real_run_cv(*args, **kwargs)
        staged = tmp_path / "runs" / "tampered" / "run.partial" / "folds.parquet"
        pq.write_table(pq.read_table(staged).slice(0, 10), staged)
        return result

    monkeypatch.setattr(train_module, "run_cv", run_cv_then_cut_the_ids)
    code, err = cli(capsys, "train", "--config", str(config), "-q", "--run-id", "run")
    assert code == 4
    assert_message(err, r"folds\.parquet holds 10 ids for 2400 training rows: it was changed while the run trained")
    assert not (tmp_path / "runs" / "tampered" / "run").exists()


def test_importance_of_a_run_trained_in_batches_equals_the_whole_read_one(tmp_path):
    data = tasks(tmp_path)["binary"]
    runs = [train_run(tmp_path, name, data, rows)[1] for name, rows in (("whole", "whole"), ("batched", 1000))]
    for run in runs:
        assert main(["importance", "--run", str(run), "-q", "--set", "importance.null_repeats=1"]) == 0
    tables = [pd.read_parquet(run / "importance" / "importance.parquet") for run in runs]
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_the_memory_guard_stops_before_any_run_folder_with_the_estimate(tmp_path, monkeypatch, capsys):
    data = tasks(tmp_path)["binary"]
    monkeypatch.setenv("GBPIPE_MEMORY_LIMIT", "64K")
    for rows in ("whole", 500):
        config = write_config(tmp_path, "guarded", data={**data, "batch_rows": rows})
        assert main(["train", "--config", str(config)]) == 3
        err = capsys.readouterr().err
        assert "2,400 rows x 16 features will not fit in memory" in err
        assert "the limit GBPIPE_MEMORY_LIMIT=64K" in err and "max_bin to 15" in err
        if rows == 500:
            assert "(one row group and one block at a time)" in err and "smaller row groups" in err
            assert "then, in its place, the bins of the 1 fold training at once" in err
        else:
            assert "(the table and its float64 matrix)" in err and "data.batch_rows = 100000" in err
    assert not (tmp_path / "runs" / "guarded").exists() or not any((tmp_path / "runs" / "guarded").iterdir())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"test_size": 0.2, "test": None}, "data.test_size splits the table at random"),
        ({"train": "TRAIN_CSV", "test": None}, "is neither one parquet file nor a folder of parquet parts"),
    ],
    ids=["test-size", "csv"],
)
def test_batches_refused_where_a_table_cannot_be_streamed(tmp_path, capsys, change, message):
    data = {**tasks(tmp_path)["binary"], "batch_rows": 500}
    if change.get("train") == "TRAIN_CSV":
        pd.read_parquet(data["train"]).to_csv(tmp_path / "train.csv", index=False)
        change = {**change, "train": str(tmp_path / "train.csv")}
    data = {k: v for k, v in {**data, **change}.items() if v is not None}
    config = write_config(tmp_path, "refused", data=data)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "data.batch_rows = 500 reads a parquet training table in batches" in err and message in err


def test_a_folder_of_parquet_parts_read_in_batches_is_the_file_read_whole(tmp_path, capsys):
    """Parts are one table in name order: batches across parts give the run the whole file gives."""
    data = tasks(tmp_path)["binary"]
    whole = pd.read_parquet(data["train"])
    (tmp_path / "parts").mkdir()
    for k, start in enumerate(range(0, len(whole), 500)):  # parts of 500 rows, row groups of 700: groups span none
        write_parquet(whole.iloc[start : start + 500], tmp_path / "parts" / f"part_{k:02d}.parquet")
    configs = {
        "whole": write_config(tmp_path, "whole", data={**data, "batch_rows": "whole"}),
        "parts": write_config(tmp_path, "parts", data={**data, "train": str(tmp_path / "parts"), "batch_rows": 300}),
    }
    for config in configs.values():
        assert main(["train", "--config", str(config), "--run-id", "r", "-q"]) == 0, capsys.readouterr().err
    for name in ("oof.parquet", "test_pred.parquet", "folds.parquet", "models/fold_0.txt"):
        assert (tmp_path / "runs" / "whole" / "r" / name).read_bytes() == (
            tmp_path / "runs" / "parts" / "r" / name
        ).read_bytes(), name


def test_auto_reads_a_small_table_whole(tmp_path):
    config = write_config(tmp_path, "auto", data=tasks(tmp_path)["binary"])
    assert isinstance(prepare(load_config(config), stream=True).X, np.ndarray)


@pytest.mark.parametrize(
    "frame, config, code, message",
    [
        (pd.DataFrame({"x": [1.0] * 60, "row_id": range(60), "y": [0, 1] * 30}), {}, 3, "has a column 'row_id'"),
        (
            pd.DataFrame({"x": [1.0] * 60, "y": [0, 1] * 30}),
            {"id": "key"},
            3,
            "id column 'key' not found.*columns are: x, y",
        ),
        (
            pd.DataFrame({"x": [1.0] * 60, "y": [0, 1] * 30}),
            {"target": "label"},
            3,
            "'label' not found.*columns are: x, y",
        ),
        (
            pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=int)}),
            {},
            3,
            "has a header but 0 rows",
        ),
    ],
    ids=["row-id-column", "missing-id", "missing-target", "no-rows"],
)
@pytest.mark.parametrize("batch_rows", ["whole", 100])
def test_bad_tables_are_refused_alike_whole_or_in_batches(tmp_path, capsys, frame, config, code, message, batch_rows):
    path = write_parquet(frame, tmp_path / "t.parquet")
    data = {"train": path, "target": "y", "task": "binary", "batch_rows": batch_rows, **config}
    assert main(["train", "--config", str(write_config(tmp_path, "bad", data=data))]) == code
    assert re.search(message, capsys.readouterr().err)
