"""`gbpipe auto`: one time budget over the whole search. The portfolio it runs (portfolio, portfolio.toml), where
a run is written and what it continues (place), the record of its steps (steps), and the search itself (run),
made of the tuning and ensemble stages' own steps under pipeline/core/budget.py's rule. Nothing but the CLI
imports this package."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {"auto": ".run", "AutoOptions": ".run", "load_portfolio": ".portfolio"},
)
