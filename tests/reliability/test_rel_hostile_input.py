"""Anything a user can type or feed ends in exit 0, 2, 3 or 4 with a message, never in a traceback.

A table of malformed configs, overrides, expressions and files, fed through `main([...])` next to a published
run; each case names the exit code it must give. The table grows with every input found to end otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomli_w

from tests.helpers.reliability import EXPERIMENT, adult_data, adult_rows, cli

Case = Callable[["Project"], list]  # noqa: F821 - builds files in project.root, returns the argv


def _train(project, *extra) -> list:
    return ["train", "--config", project.config(), "-q", *extra]


def _train_table(project, frame: pd.DataFrame | None = None, raw: bytes | None = None, name="t.csv", **data) -> list:
    path = project.root / name
    if raw is not None:
        path.write_bytes(raw)
    elif name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return ["train", "--config", project.config(data=adult_data(path, **data)), "-q"]


def _nested(project, target_nested: bool = False) -> list:
    train, _ = adult_rows(300)
    table = pa.Table.from_pandas(train, preserve_index=False)
    table = table.append_column("tags", pa.array([[1, 2]] * len(train)))
    table = table.append_column("point", pa.array([{"x": 1.0}] * len(train)))
    if target_nested:
        table = table.drop(["income"]).append_column("income", pa.array([["a"]] * len(train)))
        table = table.replace_schema_metadata(None)  # pandas' metadata would still call it a string column
    pq.write_table(table, project.root / "nested.parquet")
    return ["train", "--config", project.config(data=adult_data(project.root / "nested.parquet")), "-q"]


def _regression_rows(project, n_rows: int, n_splits: int) -> list:
    frame = pd.DataFrame({"x": range(n_rows), "y": [float(i) for i in range(n_rows)]})
    frame.to_csv(project.root / "tiny.csv", index=False)
    data = {"train": str(project.root / "tiny.csv"), "target": "y", "task": "regression"}
    return ["train", "--config", project.config(data=data, cv={"n_splits": n_splits}), "-q"]


def _config_bytes(project, raw: bytes) -> list:
    (project.root / "bad.toml").write_bytes(raw)
    return ["train", "--config", project.root / "bad.toml", "-q"]


def _features_config(project, derive: str, events: Path | None = None, when: list | None = None) -> list:
    """A tiny [features] experiment whose derived column is `derive` (events: another events file; when: other
    event times)."""
    times = when if when is not None else pd.to_datetime(["2011-01-05", "2011-02-05", "2011-01-20", "2011-03-15"])
    pd.DataFrame({"who": [1, 1, 2, 2], "when": times, "q": [1.0, 2.0, 3.0, 4.0]}).to_parquet(
        project.root / "events.parquet", index=False
    )
    config = {
        "experiment": {"name": EXPERIMENT, "runs_dir": str(project.runs_dir)},
        "data": {"target": "label", "task": "binary", "id": "row_key", "keep": ["who", "cutoff"]},
        "features": {
            "events": str(events or project.root / "events.parquet"),
            "entity": "who",
            "time": "when",
            "windows": [1],
            "derive": {"v": derive},
            "aggregations": {"v": ["sum"]},
            "cutoffs": {"first": "2011-02-01", "test": "2011-03-01"},
            "label": {"column": "v", "aggregate": "sum", "above": 1.0},
        },
    }
    (project.root / "feat.toml").write_text(tomli_w.dumps(config))
    return ["features", "--config", project.root / "feat.toml", "-q"]


def _write(path, raw: bytes):
    path.write_bytes(raw)
    return path


def _predict(project, input_path, *extra) -> list:
    return ["predict", "--run", project.exp_dir, "--input", input_path, "--output", project.root / "p.csv", *extra]


def _predict_frame(project, frame: pd.DataFrame, name: str = "in.parquet") -> list:
    frame.to_parquet(project.root / name, index=False)
    return _predict(project, project.root / name, "-q")


CASES: dict[str, tuple[int, Case]] = {
    # the config file and --set
    "config-is-a-directory": (2, lambda p: ["train", "--config", p.root, "-q"]),
    "config-not-utf8": (2, lambda p: _config_bytes(p, b"\xff\xfe[x]")),
    "config-empty": (2, lambda p: _config_bytes(p, b"")),
    "config-section-is-a-value": (2, lambda p: _train(p, "--set", "model=3")),
    "override-without-key": (2, lambda p: _train(p, "--set", "=3")),
    "override-without-equals": (2, lambda p: _train(p, "--set", "cv.n_splits")),
    "override-into-a-value": (2, lambda p: _train(p, "--set", "cv.n_splits.x=3")),
    "override-removes-required": (2, lambda p: _train(p, "--set", "experiment.name=")),
    "huge-integer": (2, lambda p: _train(p, "--set", "cv.n_splits=1e400")),
    "learning-rate-nan": (2, lambda p: _train(p, "--set", "model.params.learning_rate=nan")),
    "threshold-infinite": (2, lambda p: _train(p, "--set", "drift.psi_major=inf")),
    "num-leaves-1": (2, lambda p: _train(p, "--set", "model.params.num_leaves=1")),
    # derived-column expressions
    "expression-valid": (0, lambda p: _features_config(p, "abs(-(q * 2)) / 2")),  # the cases below fail on theirs
    "expression-nested-deep": (2, lambda p: _features_config(p, "(" * 300 + "q" + ")" * 300)),
    "expression-long-chain": (2, lambda p: _features_config(p, " + ".join(["q"] * 3000))),
    "expression-unknown-function": (2, lambda p: _features_config(p, "exp(q)")),
    "expression-unbalanced": (2, lambda p: _features_config(p, "(q * 2")),
    # training tables
    "train-is-a-directory": (3, lambda p: _train(p, "--set", f'data.train="{p.root}"')),
    "train-empty-file": (3, lambda p: _train_table(p, raw=b"")),
    "train-header-only": (3, lambda p: _train_table(p, raw=b"age,income\n")),
    "train-garbage-parquet": (3, lambda p: _train_table(p, raw=b"PAR1 not really", name="t.parquet")),
    "train-not-utf8-csv": (3, lambda p: _train_table(p, raw=b"age,income\n1,\xff\xfe\n2,>50K\n")),
    "train-unknown-extension": (3, lambda p: _train_table(p, raw=b"a,b\n", name="t.xlsx")),
    "train-nested-columns": (0, lambda p: _nested(p)),
    "train-nested-target": (3, lambda p: _nested(p, target_nested=True)),
    "regression-more-folds-than-rows": (3, lambda p: _regression_rows(p, 4, 10)),
    "one-class-target": (3, lambda p: _train_table(p, adult_rows(200)[0].assign(income="<=50K"))),
    "duplicate-column-names": (3, lambda p: _train_table(p, raw=b"age,age,income\n1,2,>50K\n3,4,<=50K\n")),
    # predict
    "predict-missing-input": (3, lambda p: _predict(p, p.root / "nope.csv")),
    "predict-garbage-parquet": (
        3,
        lambda p: _predict(p, _write(p.root / "g.parquet", b"PAR1xx")),
    ),
    "predict-chunk-size-0": (2, lambda p: _predict(p, p.data["test"], "--chunk-size", "0")),
    "predict-missing-features": (3, lambda p: _predict_frame(p, adult_rows()[1][["age", "income"]])),
    "predict-nested-columns": (
        0,
        lambda p: _predict_frame(p, adult_rows()[1].assign(tags=[[1]] * 400)),
    ),
    "predict-run-missing": (2, lambda p: ["predict", "--run", p.root / "x", "--input", "a", "--output", "b.csv"]),
    "predict-run-is-a-file": (
        2,
        lambda p: ["predict", "--run", p.data["train"], "--input", p.data["test"], "--output", "b.csv"],
    ),
    # other stages
    "report-run-missing": (2, lambda p: ["report", "--run", p.root / "nope", "-q"]),
    "report-few-bootstraps": (2, lambda p: ["report", "--run", p.baseline, "--n-boot", "5", "-q"]),
    "importance-run-missing": (2, lambda p: ["importance", "--run", p.root / "nope", "-q"]),
    "tune-zero-trials": (2, lambda p: ["tune", "--config", p.config(), "--n-trials", "0", "-q"]),
    "tune-negative-timeout": (2, lambda p: ["tune", "--config", p.config(), "--timeout", "-1", "-q"]),
    "tune-storage-unknown-scheme": (
        2,
        lambda p: ["tune", "--config", p.config(), "--storage", "nosuchdb://x/y", "--n-trials", "1", "-q"],
    ),
    "tune-storage-bad-sqlite-path": (
        2,
        lambda p: ["tune", "--config", p.config(), "--storage", "sqlite:////no/such/dir/x.db", "--n-trials", "1"],
    ),
    "params-file-missing": (2, lambda p: _train(p, "--params", p.root / "nope.json")),
    "params-file-a-list": (2, lambda p: _train(p, "--params", _write(p.root / "l.json", b"[1, 2]"))),
    "params-file-unknown-key": (2, lambda p: _train(p, "--params", _write(p.root / "k.json", b'{"num_leave": 3}'))),
    "test-table-other-columns": (
        3,
        lambda p: _train_table(p, adult_rows(300)[0], test=str(_write(p.root / "o.csv", b"a,b\n1,2\n"))),
    ),
    "duplicate-ids": (3, lambda p: _train_table(p, adult_rows(300)[0].assign(key=1), id="key")),
    "events-missing": (3, lambda p: _features_config(p, "q", events=p.root / "none.parquet")),
    "events-time-not-dates": (3, lambda p: _features_config(p, "q", when=["a", "b", "c", "d"])),
    "compare-one-run": (2, lambda p: ["report", "--compare", p.baseline, "--n-boot", "100"]),
    "importance-zero-repeats": (
        2,
        lambda p: ["importance", "--run", p.baseline, "--set", "importance.n_repeats=0", "-q"],
    ),
    "drift-run-missing": (2, lambda p: ["drift", "--run", p.root / "nope", "-q"]),
    "drift-input-garbage": (
        3,
        lambda p: ["drift", "--run", p.baseline, "--input", _write(p.root / "g.parquet", b"PAR1")],
    ),
    "drift-set-outside-drift": (2, lambda p: ["drift", "--run", p.baseline, "--set", "cv.n_splits=3", "-q"]),
    "drift-bad-threshold": (2, lambda p: ["drift", "--run", p.baseline, "--set", "drift.psi_moderate=-1", "-q"]),
    "runs-missing-experiment-dir": (2, lambda p: ["runs", "--experiment-dir", p.root / "nope"]),
    # auto and the time budgets
    "auto-no-budget": (2, lambda p: ["auto", "--config", p.config(), "-q"]),
    "auto-budget-not-a-duration": (2, lambda p: ["auto", "--config", p.config(), "--time-budget", "1d", "-q"]),
    "auto-negative-max-trials": (2, lambda p: ["auto", "--config", p.config(), "--max-trials", "-1", "-q"]),
    "auto-resume-nothing": (2, lambda p: ["auto", "--config", p.config(), "--resume", "--max-trials", "1", "-q"]),
    "auto-run-id-a-path": (2, lambda p: ["auto", "--config", p.config(), "--max-trials", "1", "--run-id", "../x"]),
    "auto-portfolio-missing": (
        2,
        lambda p: ["auto", "--config", p.config(), "--max-trials", "1", "--portfolio", p.root / "nope.toml"],
    ),
    "auto-portfolio-not-utf8": (
        2,
        lambda p: [
            "auto",
            "--config",
            p.config(),
            "--max-trials",
            "1",
            "--portfolio",
            _write(p.root / "p.toml", b"\xff"),
        ],
    ),
    "ensemble-budget-not-a-duration": (2, lambda p: ["ensemble", "--config", p.config(), "--time-budget", "0"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_exits_cleanly_without_traceback(project, capsys, name):
    expected, case = CASES[name]
    argv = case(project)
    capsys.readouterr()
    code, err = cli(capsys, *argv)
    assert "Traceback" not in err, err
    assert code == expected, f"{name}: exit {code}, expected {expected}\n{err}"
    if code:
        assert err.startswith("error: ") or "\nerror: " in err, err
        assert "unexpected" not in err, err
    project.assert_baseline_intact()
