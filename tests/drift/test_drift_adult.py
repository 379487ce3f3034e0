"""`gbpipe drift` and predict's drift check on real adult rows: two random halves cannot be told apart, men
and women can (by the proxies of the dropped `sex` column); the files, their manifest entries, refusals,
reproducibility, and predictions that do not depend on the check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.run_folder import RunReader
from pipeline.data.feature_bins import REFERENCE_FILE
from pipeline.drift.run import COLUMNS
from tests.helpers.configs import write_config
from tests.helpers.paths import ROOT
from tests.helpers.runs import train_run, without_reference

ADULT = {"target": "income", "task": "binary", "positive_label": ">50K"}
FAST = {"num_boost_round": 60, "early_stopping_rounds": 10, "num_threads": 1, "params": {"learning_rate": 0.2}}
SUMMARY_KEYS = {
    "new_rows_source",
    "n_train",
    "n_new",
    "thresholds",
    "adversarial",
    "top_features",
    "smoothing",
    "ks_correction",
}
ADVERSARIAL_KEYS = {"auc", "ci_low", "ci_high", "n_splits", "sample_rows", "share_train_like_new"}


def training_rows(adult: pd.DataFrame) -> pd.DataFrame:
    return adult[adult["split"] == "train"].drop(columns="split").reset_index(drop=True)


def run_on(base: Path, name: str, rows: pd.DataFrame, exclude: tuple[str, ...] = ()) -> Path:
    """A 3-fold run (few rounds, one thread) trained on `rows`."""
    rows.to_parquet(base / f"{name}.parquet")
    data = {"train": str(base / f"{name}.parquet"), **ADULT, "exclude": list(exclude)}
    return train_run(write_config(base, name, data=data, cv={"n_splits": 3, "seed": 0}, model=FAST))


def drift(run: Path, *extra: str) -> int:
    return main(["drift", "--run", str(run), "-q", *extra])


@pytest.fixture(scope="module")
def sex_run(tmp_path_factory, adult) -> Path:
    """Trained on the men of adult (sex excluded), compared with its women."""
    base = tmp_path_factory.mktemp("sex")
    rows = training_rows(adult)
    men = rows["sex"].str.strip() == "Male"
    rows[~men].to_parquet(base / "women.parquet")
    run = run_on(base, "men", rows[men], exclude=("sex",))
    assert drift(run, "--input", str(base / "women.parquet")) == 0
    return run


def features_of(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "drift" / "features.parquet")


def summary_of(run: Path) -> dict:
    return json.loads((run / "drift" / "summary.json").read_text())


def test_two_random_halves_cannot_be_told_apart(tmp_path, adult):
    rows = training_rows(adult).sample(frac=1.0, random_state=3).reset_index(drop=True)
    half = len(rows) // 2
    rows.iloc[half:].to_parquet(tmp_path / "other_half.parquet")
    run = run_on(tmp_path, "half", rows.iloc[:half])
    assert drift(run, "--input", str(tmp_path / "other_half.parquet")) == 0
    summary, features = summary_of(run), features_of(run)
    assert abs(summary["adversarial"]["auc"] - 0.5) < 0.02, summary["adversarial"]
    assert summary["adversarial"]["ci_low"] < 0.5 < summary["adversarial"]["ci_high"]
    assert (features["flag"] == "none").all() and features["psi"].max() < 0.1, features.head()
    assert (features["ks_p_adjusted"].dropna() > 0.05).all()


def test_the_proxies_of_a_dropped_column_drift_most(sex_run):
    features, summary = features_of(sex_run), summary_of(sex_run)
    assert "sex" not in set(features["feature"])
    assert set(summary["top_features"][:2]) == {"relationship", "marital-status"}, summary["top_features"]
    assert features.set_index("feature").loc["relationship", "flag"] == "major"
    adversarial = summary["adversarial"]
    assert adversarial["auc"] > 0.85 and adversarial["ci_low"] > 0.8, adversarial
    by_gain = features.sort_values("adversarial_gain_share", ascending=False)["feature"].tolist()
    by_shuffle = features.sort_values("adversarial_permutation", ascending=False)["feature"].tolist()
    assert by_gain[0] == by_shuffle[0] == "relationship"
    # women's native countries include some no man had: counted as unseen, not as missing
    assert features.set_index("feature").loc["native-country", "unseen_new"] > 0


def test_the_files_are_written_through_the_manifest(sex_run):
    reader = RunReader(sex_run)  # checks every sha256
    written = {name for name, entry in reader.files.items() if entry["stage"] == "drift"}
    assert written == {
        "drift/features.parquet",
        "drift/summary.json",
        "drift/plots/psi.png",
        "drift/plots/adversarial.png",
    }
    assert reader.files[REFERENCE_FILE]["stage"] == "train"
    features = reader.read_parquet("drift/features.parquet")
    assert list(features.columns) == COLUMNS and len(features) == 13
    assert features["ks_p_adjusted"].isna().tolist() == (features["kind"] == "categorical").tolist()
    assert features["train_gain_share"].sum() == pytest.approx(1.0)
    assert features["adversarial_gain_share"].sum() == pytest.approx(1.0)
    summary = reader.read_json("drift/summary.json")
    assert SUMMARY_KEYS <= set(summary) and ADVERSARIAL_KEYS <= set(summary["adversarial"])
    assert summary["new_rows_source"] == "women.parquet" and summary["ks_correction"] == "holm"
    assert summary["n_new"] + summary["n_train"] == 32561
    for name in written - {"drift/features.parquet", "drift/summary.json"}:
        assert reader.read_bytes(name).startswith(b"\x89PNG")


def test_again_needs_replace_and_a_missing_column_is_a_data_error(sex_run, tmp_path, capsys, adult):
    before = (sex_run / "drift" / "features.parquet").read_bytes()
    capsys.readouterr()
    assert drift(sex_run, "--input", str(sex_run.parent.parent.parent / "women.parquet")) == 2
    assert "--replace" in capsys.readouterr().err
    assert (sex_run / "drift" / "features.parquet").read_bytes() == before
    training_rows(adult).drop(columns=["age"]).head(500).to_csv(tmp_path / "no_age.csv", index=False)
    assert drift(sex_run, "--input", str(tmp_path / "no_age.csv"), "--replace") == 3
    assert "no_age.csv lacks 1 feature columns the model needs: ['age']" in capsys.readouterr().err
    assert drift(sex_run, "--set", "model.num_leaves=3", "--replace") == 2
    assert "only drift.* settings" in capsys.readouterr().err
    assert (sex_run / "drift" / "features.parquet").read_bytes() == before


def test_predictions_are_byte_identical_with_and_without_the_drift_check(sex_run, tmp_path, capsys):
    women = sex_run.parent.parent.parent / "women.parquet"
    old = without_reference(sex_run, tmp_path / "old")
    outputs = {}
    for name, run in (("checked", sex_run), ("old", old)):
        capsys.readouterr()
        out = tmp_path / f"{name}.parquet"
        assert main(["predict", "--run", str(run), "--input", str(women), "--output", str(out), "-q"]) == 0
        outputs[name] = (out.read_bytes(), capsys.readouterr().err)
    assert outputs["checked"][0] == outputs["old"][0]
    checked_err = outputs["checked"][1]
    assert "warning: " in checked_err and "drift from the training rows" in checked_err
    assert "relationship" in checked_err and "gbpipe drift --run" in checked_err
    assert "drift from the training rows" not in outputs["old"][1]
    assert pd.read_parquet(tmp_path / "old.parquet")["pred"].notna().all()
    # fewer rows than drift.min_predict_rows: their shares are mostly sampling noise, so no warning
    pd.read_parquet(women).head(500).to_parquet(tmp_path / "few.parquet")
    capsys.readouterr()
    args = ["predict", "--run", str(sex_run), "--input", str(tmp_path / "few.parquet"), "-q"]
    assert main([*args, "--output", str(tmp_path / "few_out.parquet")]) == 0
    assert "drift from the training rows" not in capsys.readouterr().err


def test_a_run_without_a_reference_rebuilds_it_from_its_training_rows(tmp_path, monkeypatch):
    """A run written before drift existed (the legacy fixture): `gbpipe drift` on its own test rows."""
    shutil.copytree(ROOT / "tests" / "fixtures" / "legacy_runs" / "legacy-train", tmp_path / "legacy-train")
    monkeypatch.chdir(tmp_path)  # its config keeps the folds cache under runs/, relative to the working folder
    assert drift(tmp_path / "legacy-train") == 0
    summary = summary_of(tmp_path / "legacy-train")
    assert summary["reference"] == "rebuilt from the run's training rows"
    assert summary["new_rows_source"] == "test rows" and (summary["n_train"], summary["n_new"]) == (133, 45)
    assert not (tmp_path / "legacy-train" / REFERENCE_FILE).exists()  # the training files stay as they were


def test_same_config_and_seed_give_identical_files(tmp_path, adult_small):
    config = write_config(
        tmp_path,
        "twice",
        data={"train": str(adult_small), "split_column": "split", **ADULT},
        cv={"n_splits": 3, "seed": 0},
        model=FAST,
        drift={"sample_rows": 1000, "n_splits": 3},
    )
    runs = [train_run(config, "--run-id", name) for name in ("a", "b")]
    for run in runs:
        assert drift(run) == 0
    for name in (REFERENCE_FILE, "drift/features.parquet"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    first, second = summary_of(runs[0]), summary_of(runs[1])
    assert {**first, "run": ""} == {**second, "run": ""}
    assert first["new_rows_source"] == "test rows" and first["adversarial"]["n_splits"] == 3


def test_without_test_rows_drift_asks_for_input(sex_run, capsys):
    before = (sex_run / "drift" / "features.parquet").read_bytes()
    capsys.readouterr()
    assert drift(sex_run, "--replace") == 2
    err = capsys.readouterr().err
    assert "has no test rows" in err and "pass --input FILE" in err
    assert (sex_run / "drift" / "features.parquet").read_bytes() == before


def test_the_reference_counts_every_training_row(sex_run):
    reference = RunReader(sex_run).read_json(REFERENCE_FILE)
    rows = reference["n_rows"]
    assert all(sum(f["counts"]) == rows for f in reference["features"])
    age = next(f for f in reference["features"] if f["name"] == "age")
    assert age["kind"] == "numeric" and 5 <= len(age["edges"]) <= 9 and np.all(np.diff(age["edges"]) > 0)
    relationship = next(f for f in reference["features"] if f["name"] == "relationship")
    assert relationship["counts"][-1] == 0  # no training row is unseen
