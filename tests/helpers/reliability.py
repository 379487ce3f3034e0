"""Shared pieces of the reliability tests: small real data, configs of experiment `rel`, and the checks every
case makes (exit code, message, nothing half-written, earlier runs untouched). The fixtures that publish
the baseline run and copy it into each test are in tests/reliability/conftest.py."""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
import tomli_w

from pipeline.cli import main
from tests.helpers.datasets import shared_file

EXPERIMENT = "rel"
FAST_MODEL = {
    "num_boost_round": 30,
    "early_stopping_rounds": 5,
    "num_threads": 1,
    "params": {"learning_rate": 0.2, "num_leaves": 15},
}
TARGET = "income"


@lru_cache(maxsize=1)
def _adult() -> pd.DataFrame:
    return pd.read_parquet(shared_file("adult/adult.parquet"))


def adult_rows(n_train: int = 1200, n_test: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real adult rows: a training and a test sample (the test keeps its labels)."""
    adult = _adult()
    train = adult[adult["split"] == "train"].sample(n_train, random_state=seed).drop(columns="split")
    test = adult[adult["split"] == "test"].sample(n_test, random_state=seed).drop(columns="split")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def sklearn_frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def write_rel_config(
    path: Path, runs_dir: Path, data: dict, cv: dict | None = None, model: dict | None = None, name: str = EXPERIMENT
) -> Path:
    """An experiment TOML at `path` (3 folds, few rounds, one thread) with its runs under `runs_dir`."""
    config = {
        "experiment": {"name": name, "runs_dir": str(runs_dir)},
        "data": data,
        "cv": {"n_splits": 3, "seed": 7, **(cv or {})},
        "model": {**FAST_MODEL, **(model or {})},
    }
    path.write_text(tomli_w.dumps(config))
    return path


def adult_data(train: Path, test: Path | None = None, **extra) -> dict:
    data = {"train": str(train), "target": TARGET, "task": "binary", "positive_label": ">50K", **extra}
    if test is not None:
        data["test"] = str(test)
    return data


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (hidden ones too), by relative path."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_files(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*.tmp")] + [p for p in Path(root).rglob(".*.tmp*")]


def published_runs(exp_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(exp_dir).iterdir() if (p / "manifest.json").is_file())


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run `gbpipe argv...` in-process; returns the exit code and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_message(err: str, *patterns: str) -> None:
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in stderr:\n{err}"


@dataclass
class Project:
    """A tmp project with a runs folder that already holds a published run of the same experiment."""

    root: Path
    runs_dir: Path
    baseline: Path
    data: dict
    before: dict[str, str] = field(default_factory=dict)

    @property
    def exp_dir(self) -> Path:
        return self.runs_dir / EXPERIMENT

    def config(
        self, data: dict | None = None, cv: dict | None = None, model: dict | None = None, file: str = "exp.toml"
    ) -> Path:
        return write_rel_config(self.root / file, self.runs_dir, data if data is not None else self.data, cv, model)

    def assert_untouched(self) -> None:
        """Failure case: not one file under runs/ was added, changed or removed, and no temp file anywhere."""
        assert tree_hashes(self.runs_dir) == self.before
        assert not temp_files(self.root), temp_files(self.root)

    def assert_baseline_intact(self, unfinished_ok: bool = False) -> None:
        """Success case: the earlier run is byte-identical and no temp file is left anywhere."""
        run_files = {k: v for k, v in self.before.items() if k.startswith(f"{EXPERIMENT}/{self.baseline.name}/")}
        now = {k: v for k, v in tree_hashes(self.runs_dir).items() if k in run_files}
        assert now == run_files
        assert not temp_files(self.root), temp_files(self.root)
        if not unfinished_ok:
            assert not list(self.exp_dir.glob("*.partial")), "an unfinished run folder was left behind"


def python() -> str:
    return sys.executable


NAMING = frozenset({"run", "run_id"})  # which run a document belongs to: differs by design between two runs


def untimed(doc, naming: frozenset[str] = NAMING):
    """A JSON document without its wall-clock fields (`seconds`, `build_seconds`, ...) and the `naming` keys."""
    if isinstance(doc, dict):
        return {k: untimed(v, naming) for k, v in doc.items() if not k.endswith("seconds") and k not in naming}
    if isinstance(doc, list):
        return [untimed(v, naming) for v in doc]
    return doc
