"""`gbpipe tune`: Optuna TPE search on the OOF score (run, options), trials run here or in spawned
workers on one study (trials, workers), one parameter set scored on every fold (evaluator), the
search space (space), the study (study), where it is stored, journal file or database, with storage URLs
redacted (storage), and the study folder's outputs (output)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__, {"tune": ".run", "tune_options": ".options", "TuneOptions": ".options"}
)
