"""`from pipeline import ...`: the stages as functions over config objects, what the CLI calls."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import pipeline
from tests.helpers.configs import write_config


def test_stage_functions_over_a_config(tmp_path):
    from pipeline import OOFLGBMClassifier, load_config, load_run, prepare_data, run_train, write_report

    config = write_config(
        tmp_path,
        "wine",
        data={"train": "sklearn:wine", "target": "target", "task": "multiclass"},
        model={"params": {"num_leaves": 7, "min_data_in_leaf": 5, "learning_rate": 0.1}},
    )
    cfg = load_config(config)
    prepared = prepare_data(cfg)
    assert prepared.X.shape == (178, 13)
    run_dir = run_train(cfg)
    assert json.loads((run_dir / "scores.json").read_text())["metric"] == "logloss"
    fitted = load_run(run_dir)
    assert fitted.predict(prepared.X).shape == (178, 3)
    report = write_report(run_dir)
    assert report.headline["score"] == json.loads((run_dir / "scores.json").read_text())["oof_score"]
    assert OOFLGBMClassifier().get_params()["n_splits"] == 5


def test_every_export_resolves_and_stage_packages_stay_packages():
    """Each public name resolves to what the CLI calls; `pipeline.train` stays the train package, whose
    facade gives the same function."""
    import pipeline.train.run as module

    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    assert isinstance(pipeline.train, types.ModuleType) and pipeline.train.__path__
    assert pipeline.run_train is module.train is pipeline.train.train
    assert importlib.import_module("pipeline.data.prepare").prepare is pipeline.prepare_data
    for package in ("data", "engine", "train", "tune", "importance", "ensemble", "report"):
        facade = importlib.import_module(f"pipeline.{package}")
        assert facade.__all__ and all(getattr(facade, name) is not None for name in facade.__all__), package


def test_import_pipeline_is_cheap():
    code = "import sys, pipeline; print(int(any(m in sys.modules for m in ('lightgbm', 'sklearn', 'matplotlib'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"
