"""gbpipe: honest out-of-fold gradient boosting for tabular data.

The Python API is what the CLI calls: stages are functions over a validated config.

    from pipeline import load_config, train, write_report, OOFLGBMClassifier
    cfg = load_config("configs/adult.toml", ["model.num_threads=2"])
    run_dir = train(cfg)                 # gbpipe train
    report = write_report(run_dir)       # gbpipe report --run
    clf = OOFLGBMClassifier().fit(X, y)  # scikit-learn estimator over the same OOF engine

Everything is imported on first use, so `import pipeline` stays cheap. A stage whose function has
its module's name (`prepare`, `train`, `tune`, `ensemble`, ...) is reached through that module,
which is callable: `pipeline.train(cfg)` runs `pipeline.train.train(cfg)`, while
`import pipeline.train as module` still gives the module with all its helpers.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Stage modules whose main function carries the module's name.
STAGE_MODULES = ("prepare", "train", "tune", "ensemble", "importance", "select")

# Other public names: name -> the module that defines it.
EXPORTS = {
    "Config": "config", "load_config": "config", "validate_config": "config",
    "Progress": "progress",
    "TrainSpec": "cv", "run_cv": "cv",
    "predict_file": "predict", "load_run": "predict",
    "tune_options": "tune",
    "build_report": "report", "write_report": "report", "headline_text": "report",
    "compare_runs": "compare", "write_comparison": "compare", "list_runs": "compare",
    "OOFLGBMClassifier": "estimators", "OOFLGBMRegressor": "estimators",
}


class StageModule(types.ModuleType):
    """A stage module that runs its stage function when called (pipeline.train(cfg) == pipeline.train.train(cfg))."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self.__name__.rpartition(".")[2]
        function = getattr(self, name, None)
        if not callable(function):
            raise TypeError(f"module {self.__name__} has no stage function {name}()")
        return function(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds each loaded submodule here; stage modules become callable.
        if name in STAGE_MODULES and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = StageModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{module}") is not None


def __getattr__(name: str) -> Any:
    if name in STAGE_MODULES:
        if not _available(name):
            raise AttributeError(f"pipeline.{name} is not available in this installation of gbpipe")
        return importlib.import_module(f"{__name__}.{name}")
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [*(n for n, m in EXPORTS.items() if _available(m)), *(m for m in STAGE_MODULES if _available(m))]
