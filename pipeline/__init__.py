"""gbpipe: honest out-of-fold gradient boosting for tabular data.

The Python API is what the CLI calls: stages are functions over a validated config.

    from pipeline import load_config, run_train, write_report, OOFLGBMClassifier
    cfg = load_config("configs/adult.toml", ["model.num_threads=2"])
    run_dir = run_train(cfg)             # gbpipe train
    report = write_report(run_dir)       # gbpipe report --run
    clf = OOFLGBMClassifier().fit(X, y)  # scikit-learn estimator over the same OOF engine

Names are imported on first use, so `import pipeline` stays cheap (no LightGBM, scikit-learn or
matplotlib until a stage is used). Stage functions get `run_` names so they never shadow the
modules of the same name (`pipeline.train` stays the module).
"""
from __future__ import annotations

import importlib
from typing import Any

import features  # noqa: F401  first: it sets Polars' allocator options before anything imports Polars

__version__ = "0.1.0"

# Public name -> (module, attribute).
EXPORTS = {
    "Config": ("config", "Config"), "load_config": ("config", "load_config"),
    "validate_config": ("config", "validate_config"), "Progress": ("progress", "Progress"),
    "prepare_data": ("prepare", "prepare"), "run_train": ("train", "train"), "run_tune": ("tune", "tune"),
    "tune_options": ("tune", "tune_options"), "run_importance": ("importance", "run_importance"),
    "run_select": ("selection", "run_select"), "run_ensemble": ("ensemble", "ensemble"),
    "TrainSpec": ("cv", "TrainSpec"), "run_cv": ("cv", "run_cv"),
    "predict_file": ("predict", "predict_file"), "load_run": ("predict", "load_run"),
    "build_report": ("report", "build_report"), "write_report": ("report", "write_report"),
    "headline_text": ("report", "headline_text"), "compare_runs": ("compare", "compare_runs"),
    "write_comparison": ("compare", "write_comparison"), "list_runs": ("compare", "list_runs"),
    "OOFLGBMClassifier": ("estimators", "OOFLGBMClassifier"), "OOFLGBMRegressor": ("estimators", "OOFLGBMRegressor"),
}
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = EXPORTS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
