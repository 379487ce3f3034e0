"""A trial-count budget is reproducible: `gbpipe auto --max-trials N` twice, every member retrained and a new study
each time, gives the same files but for wall-clock times and the run's own names."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.helpers.auto import auto_config, run_auto, scores, steps
from tests.helpers.reliability import NAMING as RUN_NAMING
from tests.helpers.reliability import untimed

NAMING = RUN_NAMING | {"study"}  # which run or study a document belongs to: differs by design
PORTFOLIO = """
[tune]
n_startup_trials = 2
[ensemble]
combiners = ["soft_vote", "optimized", "stack", "greedy"]
cache = false
bootstrap_n = 100
[[members]]
name = "lgb_extra_trees"
family = "lightgbm"
params = { extra_trees = true }
[[members]]
name = "logistic"
family = "logistic"
[[members]]
name = "forest"
family = "random_forest"
params = { n_estimators = 20 }
"""


def skops_content(path: Path) -> list[int]:
    """The arrays a skops file holds (their checksums): skops names them by memory address and stamps the time,
    so two files of the same model differ as bytes but not in content."""
    with zipfile.ZipFile(path) as archive:
        return sorted(info.CRC for info in archive.infolist() if info.filename.endswith(".npy"))


def test_max_trials_without_a_time_budget_gives_identical_files(tmp_path):
    portfolio = tmp_path / "portfolio.toml"
    portfolio.write_text(PORTFOLIO)
    config = auto_config(tmp_path, "twice")
    first = run_auto(config, "--max-trials", "3", "--portfolio", str(portfolio), "--run-id", "first")
    second = run_auto(config, "--max-trials", "3", "--portfolio", str(portfolio), "--run-id", "second")
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    identical = []
    for name in files:
        a, b = first / name, second / name
        if name == "manifest.json":  # hashes the documents whose times differ
            continue
        if name.endswith(".json"):
            assert untimed(json.loads(a.read_text()), NAMING) == untimed(json.loads(b.read_text()), NAMING), name
        elif name.endswith(".skops"):
            assert skops_content(a) == skops_content(b), name
        else:
            assert a.read_bytes() == b.read_bytes(), f"{name} differs"
            identical.append(name)
    assert {
        "config.toml",
        "ensemble/oof.parquet",
        "ensemble/test_pred.parquet",
        "members/lgb/models/fold_0.txt",
        "members/lgb_extra_trees/models/fold_4.txt",
    } <= set(identical)
    assert steps(first)["study"] != steps(second)["study"]  # two studies, the same trials
    budget = scores(first)["budget"]
    assert not budget["clock_dependent"] and budget["reproducibility"].startswith("reproducible")
    assert budget["skipped"] == []
    members = scores(first)["members"]  # the tuned one only when a trial beat the default parameters
    assert [m for m in members if m != "lgb_tuned"] == ["lgb", "lgb_extra_trees", "logistic", "forest"]
