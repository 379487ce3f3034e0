"""From files to the matrices every stage trains on: one table file read with clear errors (read), a
table given as a folder or glob of parts (parts), the experiment's tables and labels (tables), the
feature schema (schema), folds (folds), the point-in-time feature cache of an experiment
(feature_cache), `prepare` that joins them, the reference bins later rows are counted in
(feature_bins), and `gbpipe data`, which puts the real datasets in place (fetch), checked against
their catalog (catalog) and built from public downloads when needed (conversion)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Prepared": ".prepare",
        "prepare": ".prepare",
        "experiment_tables": ".prepare",
        "Tables": ".tables",
        "load_tables": ".tables",
        "Folds": ".folds",
        "make_folds": ".folds",
        "FeatureSchema": ".schema",
        "ReferenceBins": ".feature_bins",
        "fit_reference": ".feature_bins",
        "cached_features": ".feature_cache",
        "fetch_all": ".fetch",
    },
)
