"""Where a stage's work runs: in this process (the default), or as tasks on a Dask cluster (cluster) whose
workers keep the run's shared data between tasks (tasks). Below engine and features; above core only."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Cluster": ".cluster",
        "open_cluster": ".cluster",
        "check_address": ".cluster",
    },
)
