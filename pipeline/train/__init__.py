"""`gbpipe train`: K-fold OOF LightGBM on an experiment, written to a run folder (run), the forward
backtest of the last training cutoffs (backtest), and the run's short report.md (summary)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {"train": ".run"})
