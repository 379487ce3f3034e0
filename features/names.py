"""Output column names of the feature table: fixed by the spec alone and stable across runs.

`total_sum_3m`, `InvoiceNo_nunique_all`, `active_months_6m`, `active_days_30d`, `days_since_last`,
`total_sum_lag2`, `total_sum_3m_year_ago`, `total_sum_next1m_year_ago`: the column, the function and the
window say what a column holds.
"""

from __future__ import annotations

import re

ALL = "all"
Window = int | str  # whole months (int), "<n>d" days, or "all"
_DAYS = re.compile(r"^([1-9][0-9]*)d$")


def window_days(window: Window) -> int | None:
    """The length in days of a "<n>d" window; None for months and all history."""
    match = _DAYS.match(window) if isinstance(window, str) else None
    return int(match.group(1)) if match else None


def window_suffix(window: Window) -> str:
    return window if isinstance(window, str) else f"{window}m"


def active_name(window: Window) -> str:
    """Distinct calendar months with an event; distinct days in a window of days."""
    unit = "days" if window_days(window) is not None else "months"
    return f"active_{unit}_{window_suffix(window)}"


def agg_name(column: str, function: str, window: Window) -> str:
    return f"{column}_{function}_{window_suffix(window)}"


def recency_names(column: str) -> tuple[str, str]:
    """The days since the first and since the last event where `column` is not 0."""
    return f"days_since_first_{column}", f"days_since_last_{column}"


def lag_name(column: str, function: str, k: int) -> str:
    return f"{column}_{function}_lag{k}"


def lags_above_names(column: str, function: str, months: int, above: float) -> tuple[str, str]:
    """Of the `months` monthly lags: how many exceed `above` (`total_sum_lags12_above300`), and the latest one that
    does (`total_sum_lag_above300`: 1 for the month before the cutoff; missing when none does)."""
    return f"{column}_{function}_lags{months}_above{above:g}", f"{column}_{function}_lag_above{above:g}"


def year_ago_name(column: str, function: str, window: Window) -> str:
    """The window one year earlier: `total_sum_3m_year_ago`; `..._yoy_diff` and `..._yoy_ratio` compare."""
    return f"{agg_name(column, function, window)}_year_ago"


def year_ago_label_name(column: str, function: str, label_suffix: str) -> str:
    """The label's window one year earlier: `total_sum_next1m_year_ago` (a monthly label's month, last year)."""
    return f"{column}_{function}_next{label_suffix}_year_ago"
