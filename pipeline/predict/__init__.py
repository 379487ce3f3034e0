"""`gbpipe predict`: a run's fold models or ensemble over new rows (run), and the file or folder of parts it
writes, whole or not at all (output)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "predict_file": ".run",
        "load_run": ".run",
        "predict_frame": ".run",
        "read_chunks": ".run",
    },
)
