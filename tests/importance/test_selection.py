"""`gbpipe select`: filters, wrapper, nesting honesty, and `gbpipe train --features`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.run_folder import RunReader
from tests.helpers.configs import write_config
from tests.helpers.importance import (
    ADULT_DATA,
    FAST_MODEL,
    INFORMATIVE,
    NOISE,
    adult_with_noise,
    noisy_config,
    read_json,
    run_select,
)
from tests.helpers.runs import train_run


def test_noise_is_dropped_informative_kept_and_train_uses_the_list(tmp_path):
    config = noisy_config(tmp_path, "noisy")
    out = run_select(config)
    chosen = read_json(out / "selected_features.json")
    doc = read_json(out / "selection.json")
    assert not set(NOISE) & set(chosen["features"])
    assert set(INFORMATIVE) <= set(chosen["features"])
    assert all(doc["stability"][f] <= 1 / 3 for f in NOISE)  # kept in at most one outer fold
    assert all(doc["stability"][f] == 1.0 for f in INFORMATIVE)
    assert len(doc["folds"]) == 3
    assert 0.85 < doc["nested_oof_score"] < 0.95 and doc["nested_oof_score"] > doc["all_features_oof_score"] - 0.01
    manifest = read_json(out / "manifest.json")
    assert set(manifest["files"]) == {"selected_features.json", "selection.json"}
    assert {e["stage"] for e in manifest["files"].values()} == {"select"}
    RunReader(out).read_json("selection.json")  # hashes verify
    run = train_run(config, "--features", str(out / "selected_features.json"))
    assert read_json(run / "schema.json")["features"]["columns"] == chosen["features"]
    assert read_json(run / "scores.json")["n_features"] == len(chosen["features"])
    # The select folder itself (its LATEST selection) works too.
    run = train_run(config, "--features", str(out.parent), "--run-id", "from-select-folder")
    assert read_json(run / "schema.json")["features"]["columns"] == chosen["features"]


def test_shuffled_target_nested_is_chance_level_while_naive_is_optimistic(tmp_path):
    """Adult with its target shuffled and 150 noise columns: nothing can be learned. A wrapper that
    keeps every feature with positive permutation importance overfits its own CV; nested inside the
    outer folds it scores chance, while selecting on all rows and cross-validating looks good."""
    config = noisy_config(
        tmp_path,
        "shuffled",
        n_rows=1000,
        n_noise=150,
        shuffle_target=True,
        cv={"n_splits": 3, "seed": 0},
        model={**FAST_MODEL, "early_stopping_rounds": 50},
        select={"keep_rule": "mean", "n_repeats": 2, "max_rounds": 4, "seed": 10},
    )
    doc = read_json(run_select(config) / "selection.json")
    assert abs(doc["nested_oof_score"] - 0.5) < 0.05
    assert doc["naive_oof_score"] > 0.56
    assert doc["optimism"] == doc["naive_oof_score"] - doc["nested_oof_score"] > 0.05
    inner = np.mean([f["inner_score"] for f in doc["folds"]])  # what selection believed inside each fold
    assert inner > doc["nested_oof_score"] + 0.03
    assert doc["final"]["n_features"] < doc["n_features_total"]


def test_filters_and_embedded_top_k(tmp_path):
    frame = pd.read_parquet(adult_with_noise(tmp_path / "base.parquet", 3000, 1))
    rng = np.random.RandomState(0)
    frame["age_copy"] = frame["age"]  # duplicate
    frame["constant"] = 7.0
    frame["mostly_one"] = np.where(rng.rand(len(frame)) < 0.999, 1.0, 2.0)  # near-constant
    frame["mostly_missing"] = np.where(rng.rand(len(frame)) < 0.97, np.nan, 1.0)
    frame["hours_scaled"] = frame["hours-per-week"] * 2.0 + rng.normal(0, 0.01, len(frame))  # correlated
    path = tmp_path / "filters.parquet"
    frame.to_parquet(path)
    config = write_config(
        tmp_path,
        "filters",
        data={"train": str(path), **ADULT_DATA},
        cv={"n_splits": 3, "seed": 0},
        model=FAST_MODEL,
        select={"wrapper": "none", "top_k": 6, "max_dominant": 0.99, "max_missing": 0.9, "max_correlation": 0.95},
    )
    doc = read_json(run_select(config) / "selection.json")
    dropped = doc["final"]["dropped"]
    assert dropped["duplicate"] == ["age_copy"]
    assert set(dropped["constant"]) == {"constant", "mostly_one"}
    assert dropped["missing"] == ["mostly_missing"]
    assert len({"hours-per-week", "hours_scaled"} & set(dropped["correlated"])) == 1
    assert doc["final"]["n_features"] == 6 and len(dropped["embedded"]) == 20 - 4 - 1 - 6
    assert all(f["n_features"] == 6 for f in doc["folds"])


def test_permutations_run_only_for_the_fits_the_wrapper_reads(tmp_path, monkeypatch):
    """One wrapper round reads the weak columns of one fit per procedure: that fit's inner folds are the only
    ones permuted. The filters' fit, the correlation refit's predecessor and the wrapper's own fits are compared
    on their scores alone (before, every inner fit permuted every column)."""
    import pipeline.importance.selectors as selectors

    calls = []
    real = selectors.permutation_drops

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(selectors, "permutation_drops", counted)
    config = noisy_config(tmp_path, "lazy", n_rows=3000, select={"inner_splits": 2, "max_rounds": 1})
    doc = read_json(run_select(config) / "selection.json")
    n_outer, n_inner, n_naive = 3, 2, 3  # nested: 2 inner folds in each of 3 outer folds; naive: the 3 folds
    assert len(calls) == n_outer * n_inner + n_naive
    assert all(len(f["rounds"]) >= 2 for f in doc["folds"])  # more fits than permuted ones
    calls.clear()
    run_select(noisy_config(tmp_path, "no_wrapper", n_rows=3000, select={"wrapper": "none"}))
    assert calls == []
