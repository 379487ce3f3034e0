"""`gbpipe importance` and `gbpipe select`: permutation importance per fold (run, permutation, treepaths,
plots) and feature selection inside the folds, nested against naive (selection, selectors)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {"run_importance": ".run", "run_select": ".selection"})
