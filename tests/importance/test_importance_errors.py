"""Bad input to importance, select and train --features: clear errors, exit codes, nothing written."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.run_folder import RunWriter
from tests.helpers.importance import NOISE, noisy_config
from tests.helpers.runs import train_run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A quick 3-fold run on 2,000 adult rows + noise columns (no importance yet)."""
    tmp = tmp_path_factory.mktemp("small_run")
    config = noisy_config(tmp, "small", n_rows=2000)
    return config, train_run(config)


def copy_run(run, tmp_path):
    target = tmp_path / "runs" / "copy" / run.name
    shutil.copytree(run, target)
    return target


def test_run_without_fold_models(small_run, tmp_path, capsys):
    """A published, intact run folder whose manifest lists no models/fold_<k>.txt."""
    _, run = small_run
    writer = RunWriter(tmp_path / "runs" / "small" / "no-models")
    for name in ("config.toml", "schema.json", "folds.parquet", "importance.parquet", "scores.json"):
        writer.write_bytes(name, (run / name).read_bytes())
    manifest = json.loads((run / "manifest.json").read_text())
    copy = writer.publish({k: manifest[k] for k in ("experiment", "config_hash", "data_fingerprint")})
    assert main(["importance", "--run", str(copy), "-q"]) == 4
    err = capsys.readouterr().err
    assert "has no fold models" in err and "gbpipe train" in err
    assert not (copy / "importance").exists()


def test_fold_model_altered_or_deleted_after_training(small_run, tmp_path, capsys):
    _, run = small_run
    copy = copy_run(run, tmp_path)
    with open(copy / "models" / "fold_1.txt", "a") as handle:
        handle.write("\n")
    assert main(["importance", "--run", str(copy), "-q"]) == 4
    assert "models/fold_1.txt does not match its manifest" in capsys.readouterr().err
    (copy / "models" / "fold_1.txt").unlink()
    assert main(["importance", "--run", str(copy), "-q"]) == 4
    assert "models/fold_1.txt is missing" in capsys.readouterr().err
    assert not (copy / "importance").exists()


def test_data_changed_since_the_run(tmp_path, capsys):
    config = noisy_config(tmp_path, "changing", n_rows=1500, n_noise=1)
    run = train_run(config)
    frame = pd.read_parquet(tmp_path / "changing.parquet")
    frame.loc[0, "age"] += 1
    frame.to_parquet(tmp_path / "changing.parquet")
    assert main(["importance", "--run", str(run), "-q"]) == 3
    assert "changed since run" in capsys.readouterr().err
    assert not (run / "importance").exists()


@pytest.mark.parametrize(
    "setting, code, message",
    [
        ('importance.groups={bad=["age", "no_such_column"]}', 3, "importance.groups.bad names 1 columns that are not"),
        ('importance.group_patterns={none="^zzz"}', 3, "matches no feature column"),
        ('importance.group_patterns={broken="(age"}', 2, "is not a valid regex"),
        ("importance.n_repeats=0", 2, "importance.n_repeats"),
        ("data.train=/elsewhere.parquet", 2, "only importance.* settings"),
    ],
)
def test_bad_importance_settings(small_run, capsys, setting, code, message):
    _, run = small_run
    assert main(["importance", "--run", str(run), "-q", "--set", setting]) == code
    assert message in capsys.readouterr().err
    assert not (run / "importance").exists()


@pytest.mark.parametrize(
    "content, code, message",
    [
        ('{"features": ["age", "no_such_column", "other_missing"]}', 3, "data.features names 2 columns not in"),
        ('["age", "age"]', 3, "names 1 columns twice"),
        ('{"features": []}', 2, "must list feature names"),
        ('{"features": ', 2, "is not valid JSON"),
        (None, 2, "not found"),
    ],
)
def test_bad_feature_lists_for_train(small_run, tmp_path, capsys, content, code, message):
    config, _ = small_run
    path = tmp_path / "features.json"
    if content is not None:
        path.write_text(content)
    before = sorted(p.name for p in (config.parent / "runs" / "small").iterdir())
    assert main(["train", "--config", str(config), "-q", "--features", str(path)]) == code
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in (config.parent / "runs" / "small").iterdir()) == before


def test_train_features_from_a_text_list(small_run, capsys):
    config, _ = small_run
    listing = config.parent / "features.txt"
    listing.write_text("age\ncapital-gain\n" + NOISE[0] + "\n")
    assert main(["train", "--config", str(config), "-q", "--features", str(listing)]) == 0
    run = capsys.readouterr().out.strip()
    schema = json.loads((config.parent / "runs" / "small" / run.rsplit("/", 1)[1] / "schema.json").read_text())
    assert schema["features"]["columns"] == ["age", "capital-gain", NOISE[0]]


def test_select_refuses_an_existing_id_and_bad_settings(small_run, capsys):
    config, _ = small_run
    existing = config.parent / "runs" / "small" / "select" / "taken"
    existing.mkdir(parents=True)
    assert main(["select", "--config", str(config), "-q", "--select-id", "taken"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["select", "--config", str(config), "-q", "--set", 'select.wrapper="magic"']) == 2
    assert "select.wrapper" in capsys.readouterr().err
