"""Point-in-time aggregation features: an event table and a declarative spec in, a stacked
(entity, cutoff) training table out, with labels from the window after each cutoff.

Modules: spec (the [features] TOML section), expressions (derived columns, no eval), windows
(cutoffs and time spans), aggregations (the plan of named aggregations), events (input checks),
labels, build (the Polars engine: pandas in, pandas out), stage (cache inside an experiment).
"""
