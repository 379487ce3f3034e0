"""gbpipe: honest out-of-fold gradient boosting for tabular data.

The Python API is what the CLI calls: stages are functions over a validated config.

    from pipeline import load_config, run_train, write_report, OOFLGBMClassifier
    cfg = load_config("configs/adult.toml", ["model.num_threads=2"])
    run_dir = run_train(cfg)             # gbpipe train
    report = write_report(run_dir)       # gbpipe report --run
    clf = OOFLGBMClassifier().fit(X, y)  # scikit-learn estimator over the same OOF engine

Names are imported on first use, so `import pipeline` stays cheap (no LightGBM, scikit-learn or
matplotlib until a stage is used). The packages follow the workflow, each importing only those
below it: core < compute (where work runs: here or on a Dask cluster) < (features) < config < data < engine <
train, tune, importance, ensemble, drift < report; auto/ (over tune and ensemble), cli/ and predict/ sit on top,
and only cli/ imports auto/.
"""

from pipeline.core.lazy import attach
from pipeline.core.version import __version__ as __version__

# Stage functions get `run_` names so they never shadow the stage packages (`pipeline.train` is a package).
__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Config": ".config",
        "load_config": ".config",
        "validate_config": ".config",
        "Progress": ".core.progress",
        "prepare_data": ".data.prepare:prepare",
        "run_train": ".train.run:train",
        "run_tune": ".tune.run:tune",
        "tune_options": ".tune.options",
        "run_importance": ".importance.run",
        "run_select": ".importance.selection",
        "run_ensemble": ".ensemble.run:ensemble",
        "run_drift": ".drift.run",
        "TrainSpec": ".engine.spec",
        "run_cv": ".engine.cv",
        "predict_file": ".predict.run",
        "load_run": ".predict.run",
        "build_report": ".report.build",
        "write_report": ".report.build",
        "headline_text": ".report.build",
        "compare_runs": ".report.compare",
        "write_comparison": ".report.compare",
        "list_runs": ".report.run_list",
        "OOFLGBMClassifier": ".engine.estimators",
        "OOFLGBMRegressor": ".engine.estimators",
    },
)
