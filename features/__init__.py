"""Point-in-time aggregation features: an event table and a declarative spec in, a stacked
(entity, cutoff) training table out, with labels from the window after each cutoff.

Modules: spec (the [features] TOML section), expressions (derived columns, no eval), windows
(cutoffs and time spans), aggregations (the plan of named aggregations), events (input checks),
labels, build (the Polars engine: pandas in, pandas out), stage (cache inside an experiment).
"""
import os

# Polars' allocator (jemalloc) keeps freed pages for 0.5-1 s (Polars' defaults), so the build's freed
# group-by tables still counted in its resident size: returned at once, the 10M-event build peaked at
# 1.34 GB instead of 1.55 GB, for 8 % more build time (bench/README.md, Features). Polars appends this
# to its defaults when it is first imported, and jemalloc takes the last value: hence here, before
# any import of Polars. A value the user set is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
