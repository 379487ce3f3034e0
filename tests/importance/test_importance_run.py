"""`gbpipe importance` end to end on adult with seeded noise columns."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance

from pipeline.cli import main
from pipeline.core.run_folder import RunReader
from pipeline.engine.run_data import load_run_data
from pipeline.importance.run import fold_seed
from tests.helpers.importance import (
    INFORMATIVE,
    NOISE,
    BoosterEstimator,
    aggregated,
    metric_scorer,
    noisy_config,
    read_json,
)
from tests.helpers.runs import train_run

SETTINGS = {
    "n_repeats": 5,
    "seed": 3,
    "null_repeats": 3,
    "null_num_boost_round": 60,
    "group_patterns": {"capital": "^capital-"},
}


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """A 3-fold run on 6,000 adult rows + 5 noise columns, with importance computed (quietly)."""
    tmp = tmp_path_factory.mktemp("noisy_run")
    run = train_run(noisy_config(tmp, "noisy", importance=SETTINGS))
    quiet_err = io.StringIO()
    with contextlib.redirect_stderr(quiet_err):
        assert main(["importance", "--run", str(run), "-q"]) == 0
    (tmp / "quiet_stderr.txt").write_text(quiet_err.getvalue())
    return run


def read_table(run) -> pd.DataFrame:
    return RunReader(run).read_parquet("importance/importance.parquet")


def test_noise_is_indistinguishable_from_zero_and_informative_features_are_not(noisy_run):
    perm = aggregated(read_table(noisy_run), "permutation")
    informative = perm.loc[INFORMATIVE]
    assert (informative["ci_low"] > 0).all(), informative
    noise = perm.loc[NOISE]
    assert (noise["ci_low"] <= 0).all(), noise  # the interval reaches zero: not shown to matter
    assert noise["value"].abs().max() < 0.25 * informative["value"].min()
    summary = read_json(noisy_run / "importance" / "summary.json")
    assert set(NOISE) <= set(summary["not_above_zero"])
    assert not set(INFORMATIVE) & set(summary["not_above_zero"])
    ranked = [row["feature"] for row in summary["permutation"]]
    assert max(ranked.index(f) for f in INFORMATIVE) < min(ranked.index(f) for f in NOISE)


def test_null_importance_separates_real_features_from_noise(noisy_run):
    table = read_table(noisy_run)
    null_score = aggregated(table, "null_score")
    best_p = 1 / (SETTINGS["null_repeats"] + 1)
    assert (null_score.loc[["age", "capital-gain"], "p_value"] == best_p).all()
    assert null_score.loc[INFORMATIVE, "value"].min() > null_score.loc[NOISE, "value"].max()
    per_shuffle = table[(table["kind"] == "null_gain") & (table["fold"] >= 0)]
    assert len(per_shuffle) == SETTINGS["null_repeats"] * 3 * 19


def test_files_rows_and_manifest(noisy_run):
    reader = RunReader(noisy_run)  # verifies every sha256
    names = {n for n, e in reader.files.items() if e["stage"] == "importance"}
    assert {
        "importance/importance.parquet",
        "importance/summary.json",
        "importance/permutation.png",
        "importance/gain.png",
        "importance/permutation_group.png",
    } <= names
    assert reader.read_bytes("importance/permutation.png")[:8] == b"\x89PNG\r\n\x1a\n"
    table = read_table(noisy_run)
    per_fold = table[(table["kind"] == "permutation") & (table["fold"] >= 0)]
    assert len(per_fold) == 19 * 3 * SETTINGS["n_repeats"]  # features x folds x repeats
    assert (aggregated(table, "permutation")["n"] == 3 * SETTINGS["n_repeats"]).all()
    gain = aggregated(table, "gain")
    training = reader.read_parquet("importance.parquet")
    training_gain = training[(training["kind"] == "gain") & (training["fold"] == -1)].set_index("feature")
    assert np.allclose(gain.loc[training_gain.index, "value"], training_gain["value"])
    group = aggregated(table, "permutation_group").loc["capital"]
    assert group["ci_low"] > 0 and group["value"] >= aggregated(table, "permutation").loc["capital-gain", "value"]


def test_per_fold_values_equal_sklearn(noisy_run):
    """Each fold's drops equal sklearn.inspection.permutation_importance on that fold's model, rows,
    seed (fold_seed) and repeats; only the metric's float rounding may differ."""
    table = read_table(noisy_run)
    data = load_run_data(noisy_run)
    columns = list(data.prep.schema.columns)
    for (cv_repeat, fold), booster in zip(data.prep.folds.pairs(), data.fitted.boosters):
        _, valid = data.prep.folds.split(cv_repeat, fold)
        theirs = permutation_importance(
            BoosterEstimator(booster, "binary"),
            data.prep.X[valid],
            data.prep.y[valid],
            scoring=metric_scorer("auc"),
            n_repeats=SETTINGS["n_repeats"],
            random_state=fold_seed(SETTINGS["seed"], cv_repeat, fold),
        )
        ours = table[(table["kind"] == "permutation") & (table["fold"] == fold)]
        ours = ours.pivot(index="feature", columns="repeat", values="value").loc[columns].to_numpy()
        assert np.allclose(ours, theirs.importances, rtol=0, atol=1e-12)


def test_again_needs_replace_and_progress_is_shown_unless_quiet(noisy_run, capsys):
    capsys.readouterr()
    before = (noisy_run / "importance" / "importance.parquet").read_bytes()
    assert main(["importance", "--run", str(noisy_run), "-q"]) == 4
    assert "--replace" in capsys.readouterr().err
    assert (noisy_run / "importance" / "importance.parquet").read_bytes() == before
    assert main(["importance", "--run", str(noisy_run), "--replace", "--set", "importance.null_repeats=0"]) == 4
    assert "stale" in capsys.readouterr().err  # would leave the null rows' plot behind: refused
    assert main(["importance", "--run", str(noisy_run), "--replace"]) == 0
    err = capsys.readouterr().err
    assert "permutation fold 3/3" in err and "feature 20/20" in err and "null importance 3/3" in err
    assert (noisy_run / "importance" / "importance.parquet").read_bytes() == before  # seeded: identical
    RunReader(noisy_run).read_bytes("importance/importance.parquet")
    quiet_err = (noisy_run.parents[2] / "quiet_stderr.txt").read_text()
    assert quiet_err == ""  # the first computation ran with -q
