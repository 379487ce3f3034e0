"""Point-in-time aggregation features: an event table and a declarative spec in, a stacked
(entity, cutoff) training table out, with labels from the window after each cutoff.

Modules: spec (the [features] TOML section), names (output column names), expressions (derived
columns, no eval), windows (cutoffs and time spans), aggregations (the plan of named aggregations),
events (input checks), labels, build (the Polars engine: pandas in, pandas out). The cache of built
tables inside an experiment is pipeline/data/feature_cache.py. This package depends on nothing of
`pipeline` beyond `pipeline.core`.
"""

import os

# Polars' allocator (jemalloc) keeps freed pages for 0.5-1 s (Polars' defaults), so the build's freed
# group-by tables still counted in its resident size; returned at once, the build peaks lower for a
# little more build time (bench/README.md, Features). Polars reads this when it is first imported and
# jemalloc takes the last value, so it must be set before any import of Polars.
ALLOCATOR_ENV = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")


def configure_polars_allocator() -> None:
    """Return freed memory to the system at once. Call it before anything imports Polars (the CLI does,
    first thing); a value the user set is kept."""
    os.environ.setdefault(*ALLOCATOR_ENV)
