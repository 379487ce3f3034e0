"""`gbpipe ensemble`: members of several families on the shared folds (members, extra_families, result,
store), combiners learnt from OOF predictions only (combiners, combiner_settings, stack), their honest
comparison (scores), the run's steps one member or combiner at a time (steps) under a time budget's estimates
(budget), and an ensemble run loaded for prediction (model)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {"ensemble": ".run"})
