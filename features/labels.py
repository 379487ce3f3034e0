"""Labels from the future window: aggregate(column) over [cutoff, cutoff + months) (or days).

Only the label window's events are read (see `label_span`); an entity with no event in it
has the documented empty value (0 for sum, count and nunique), so e.g. a customer who buys nothing
in the month has a spend of 0 and label 0. A binary label compares the value rounded to 9 decimals
with the threshold, so float noise from the order of summation never flips a label.
"""

from __future__ import annotations

import polars as pl

from .aggregations import Job, output
from .timing import LabelSpec
from .windows import label_span

LABEL_VALUE = "__label_value"
ROUND_DECIMALS = 9


def label_job(label: LabelSpec, value: str = LABEL_VALUE) -> Job:
    """The group-by job that aggregates the label window into the column `value`."""
    return Job(label_span(label.window), (output(value, label.column, label.aggregate),))


def label_expr(label: LabelSpec, name: str, known: pl.Expr, value_column: str = LABEL_VALUE) -> pl.Expr:
    """The label column: 1/0 when `above` is set (value > above), else the aggregated value; null where
    `known` is false (a scoring cutoff's rows, whose label window is after the data)."""
    value = pl.col(value_column)
    if label.above is not None:
        # Rounded first: a spend of exactly 300 summed in another order (299.99999999999994) keeps its label.
        value = (value.round(ROUND_DECIMALS).fill_null(float("-inf")) > label.above).cast(pl.Int8)
    return pl.when(known).then(value).alias(name)


def shortened(label: LabelSpec, days: int) -> LabelSpec:
    """The same label over the first `days` days of its window (a holdout's window cut short by the data)."""
    return label.model_copy(update={"months": None, "days": days})


def label_dtype(label: LabelSpec) -> str:
    """The label column's dtype in the pandas tables: int8 for a 0/1 label, float64 for a value."""
    return "int8" if label.above is not None else "float64"


def describe(label: LabelSpec) -> str:
    """The label in words, for the summary and the report."""
    value = f"{label.aggregate} of {label.column} over {label.window.phrase} starting at the cutoff"
    return (
        f"1 when the {value} (rounded to {ROUND_DECIMALS} decimals) is above {label.above:g}, else 0"
        if label.above is not None
        else f"the {value}"
    )
