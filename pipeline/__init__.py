"""gbpipe: honest out-of-fold gradient boosting for tabular data."""
__version__ = "0.1.0"
