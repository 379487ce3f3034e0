"""Reproducibility: the same config, data and seed give byte-identical artifacts, on repeated runs
and with the thread count changed.

What may differ between two runs is wall-clock time only: `seconds` in scores.json and in
models/fold_<k>.json, `build_seconds` in the features summary, the fold table of report.md, and the
manifests (which hash those files).
config.toml, schema.json and report.md also record model.num_threads, so they differ when the
thread count does; the model files themselves leave it out (LightGBM with deterministic=True and
force_col_wise=True grows the same trees on any number of threads).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.helpers.datasets import shared_file
from tests.helpers.paths import ROOT
from tests.helpers.reliability import adult_data, adult_rows, untimed, write_rel_config

TIMED = {"scores.json", "report.md", "manifest.json"}


def train(config: Path, run_id: str, *overrides: str) -> Path:
    sets = [arg for o in overrides for arg in ("--set", o)]
    assert main(["train", "--config", str(config), "-q", "--run-id", run_id, *sets]) == 0
    return next((config.parent / "runs").glob(f"*/{run_id}"))


def assert_identical_runs(a: Path, b: Path, skip: set[str] = frozenset()) -> list[str]:
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    compared = []
    for name in files:
        if name in skip or name in TIMED:
            continue
        if name.endswith(".json") and (a / name).read_bytes() != (b / name).read_bytes():
            assert untimed(json.loads((a / name).read_text())) == untimed(json.loads((b / name).read_text())), name
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"
        compared.append(name)
    assert untimed(json.loads((a / "scores.json").read_text())) == untimed(json.loads((b / "scores.json").read_text()))
    return compared


def _adult_config(tmp_path: Path, n_train: int = 1200) -> Path:
    train, test = adult_rows(n_train, 400)
    train.to_parquet(tmp_path / "train.parquet", index=False)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    return write_rel_config(
        tmp_path / "exp.toml", tmp_path / "runs", adult_data(tmp_path / "train.parquet", tmp_path / "test.parquet")
    )


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_repeated_runs_are_byte_identical(tmp_path, task):
    if task == "binary":
        config = _adult_config(tmp_path)
    else:
        name = "wine" if task == "multiclass" else "diabetes"
        config = write_rel_config(
            tmp_path / "exp.toml",
            tmp_path / "runs",
            {"train": f"sklearn:{name}", "target": "target", "task": task, "test_size": 0.25},
        )
    first, second = train(config, "first"), train(config, "second")
    compared = assert_identical_runs(first, second)
    assert {
        "folds.parquet",
        "oof.parquet",
        "test_pred.parquet",
        "importance.parquet",
        "schema.json",
        "config.toml",
        "models/fold_0.txt",
        "models/fold_2.txt",
    } <= set(compared)


def test_thread_count_does_not_change_artifacts(tmp_path):
    config = _adult_config(tmp_path, n_train=3000)
    one = train(config, "one_thread", "model.num_threads=1")
    two = train(config, "two_threads", "model.num_threads=2")
    compared = assert_identical_runs(one, two, skip={"config.toml", "schema.json"})
    assert {
        "folds.parquet",
        "oof.parquet",
        "test_pred.parquet",
        "importance.parquet",
        "models/fold_0.txt",
        "models/fold_1.txt",
        "models/fold_2.txt",
    } <= set(compared)
    for name in ("config.toml", "schema.json"):  # these record the setting itself, and nothing else differs
        a, b = (
            [line for line in (run / name).read_text().splitlines() if "num_threads" not in line] for run in (one, two)
        )
        assert a == b, name


RETAIL = ROOT / "configs" / "retail_1y.toml"  # one year: the faster flagship config


def test_retail_pipeline_twice_gives_identical_hashes(tmp_path, monkeypatch):
    """The flagship task twice: features, training and importance. The first run's features and
    folds caches are moved away before the second run, so both are rebuilt, not read back; they and
    every file of the two runs (importance included) must hash the same. Selection and ensembles
    have their own reproducibility tests in their stages' suites."""
    monkeypatch.chdir(ROOT)
    runs_dir = tmp_path / "runs"
    events = shared_file("online_retail/online_retail.parquet")  # data/raw, else ../shared/data
    argv = [
        "train",
        "--config",
        str(RETAIL),
        "-q",
        "--set",
        f"experiment.runs_dir={runs_dir}",
        "--set",
        f"features.events={json.dumps(str(events))}",
        "--set",
        "model.num_threads=1",
        "--set",
        "model.num_boost_round=60",
        "--set",
        "model.early_stopping_rounds=10",
    ]
    assert main([*argv, "--run-id", "first"]) == 0
    exp_dir = runs_dir / "retail_1y"
    (exp_dir / "features").rename(tmp_path / "first_features")
    (exp_dir / "folds").rename(tmp_path / "first_folds")
    assert main([*argv, "--run-id", "second"]) == 0
    for run in ("first", "second"):  # permutation and gain importance, kept cheap (no null-importance refits)
        assert (
            main(
                [
                    "importance",
                    "--run",
                    str(exp_dir / run),
                    "-q",
                    "--set",
                    "importance.n_repeats=2",
                    "--set",
                    "importance.null_repeats=0",
                    "--set",
                    "importance.n_jobs=1",
                ]
            )
            == 0
        )
    assert_identical_runs(exp_dir / "first", exp_dir / "second")
    for cache, first in (("features", tmp_path / "first_features"), ("folds", tmp_path / "first_folds")):
        again = exp_dir / cache
        names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
        assert names and names == sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file())
        for name in names:
            if name.endswith("manifest.json"):
                continue  # hashes summary.json, whose build time differs
            if name.endswith(".json"):
                assert untimed(json.loads((first / name).read_text())) == untimed(
                    json.loads((again / name).read_text())
                )
            else:
                assert (first / name).read_bytes() == (again / name).read_bytes(), f"{cache}/{name} differs"
