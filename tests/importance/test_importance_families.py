"""A [features] experiment's importance also shuffles each feature family (window, source column, lags,
recency) together: the spec knows what each feature is built from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.config.sections import ImportanceSection
from pipeline.importance.run import feature_groups
from tests.helpers.retail import FAST, only_run, retail_config, retail_slice, retail_spec, write_events

FAST_IMPORTANCE = ["--set", "importance.n_repeats=1", "--set", "importance.null_repeats=0"]


@pytest.fixture(scope="module")
def retail_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("families")
    config = retail_config(base, write_events(base, retail_slice()), {"cv.backtest": 0})
    assert main(["train", "--config", str(config), *FAST]) == 0
    return only_run(base / "runs" / "retail_1y")


def test_families_follow_the_spec():
    families = retail_spec().feature_families()
    assert families["window 3m"] == tuple(
        n for n in retail_spec().feature_names() if n.endswith("_3m") or "_3m_trend_" in n
    )
    assert families["column total"] == tuple(n for n in retail_spec().feature_names() if n.startswith("total_"))
    assert families["lags"] == tuple(f"total_sum_lag{k}" for k in range(1, 7))
    assert families["recency"] == ("days_since_first", "days_since_last")
    assert all(len(names) > 1 for names in families.values())


def test_importance_shuffles_each_family(retail_run, capsys):
    assert main(["importance", "--run", str(retail_run), *FAST_IMPORTANCE, "-q"]) == 0
    summary = json.loads((retail_run / "importance" / "summary.json").read_text())
    assert summary["groups"] == {name: list(names) for name, names in retail_spec().feature_families().items()}
    table = pd.read_parquet(retail_run / "importance" / "importance.parquet")
    groups = table[(table["kind"] == "permutation_group") & (table["fold"] == -1)].set_index("feature")["value"]
    assert set(groups.index) == set(summary["groups"])
    # The model lives on spend: shuffling every spend feature at once costs far more than any one of them.
    single = table[(table["kind"] == "permutation") & (table["fold"] == -1)].set_index("feature")["value"]
    assert groups["column total"] > 3 * single[list(summary["groups"]["column total"])].max() > 0


def test_a_named_group_wins_and_families_can_be_turned_off(retail_run):
    args = ["importance", "--run", str(retail_run), *FAST_IMPORTANCE, "--replace", "-q"]
    assert main([*args, "--set", 'importance.groups={ recency = ["days_since_last", "total_sum_1m"] }']) == 0
    summary = json.loads((retail_run / "importance" / "summary.json").read_text())
    assert summary["groups"]["recency"] == ["days_since_last", "total_sum_1m"] and "window 1m" in summary["groups"]
    config = load_config(retail_run / "config.toml")
    columns = list(retail_spec().feature_names())
    assert feature_groups(ImportanceSection(feature_families=False), columns, config) == []
    assert len(feature_groups(ImportanceSection(), columns, config)) == len(retail_spec().feature_families())
