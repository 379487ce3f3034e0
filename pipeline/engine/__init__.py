"""The K-fold out-of-fold LightGBM engine every stage trains through: the resolved spec (spec), one
fold (fold), the one OOF accumulator (oof), the K-fold loop with its parallel folds (cv,
_fold_pool), the files a run leaves (outputs), scores beyond the pooled OOF one (scoring), fold
models loaded back (fitted), a finished run with its data rebuilt and checked, which the stages that study
a run start from (run_data), and scikit-learn estimators over the same loop (estimators)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "TrainSpec": ".spec",
        "train_spec": ".spec",
        "resolve_params": ".spec",
        "run_cv": ".cv",
        "CVResult": ".cv",
        "train_fold": ".fold",
        "FoldResult": ".fold",
        "OOFAccumulator": ".oof",
        "FittedRun": ".fitted",
        "load_fold_models": ".fitted",
        "RunData": ".run_data",
        "load_run_data": ".run_data",
        "OOFLGBMClassifier": ".estimators",
        "OOFLGBMRegressor": ".estimators",
    },
)
