"""The derived-column expression language: evaluated against pandas on real retail lines, never eval'd."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.expressions import ExpressionError, columns_of, parse, to_polars
from tests.helpers.retail import retail_slice

CASES = [
    ("Quantity * UnitPrice", lambda d: d["Quantity"] * d["UnitPrice"]),
    ("-Quantity + 2 * UnitPrice - 1.5", lambda d: -d["Quantity"] + 2 * d["UnitPrice"] - 1.5),
    ("(Quantity + 1) * (UnitPrice - 0.5)", lambda d: (d["Quantity"] + 1) * (d["UnitPrice"] - 0.5)),
    ("Quantity / UnitPrice", lambda d: (d["Quantity"] / d["UnitPrice"]).where(d["UnitPrice"] != 0)),
    ('InvoiceNo starts with "C"', lambda d: d["InvoiceNo"].str.startswith("C")),
    ("StockCode ends with 'A'", lambda d: d["StockCode"].str.endswith("A")),
    # a text operator on a missing text gives a missing value (excluded from a share), not False
    (
        'Description contains "HEART"',
        lambda d: d["Description"].str.contains("HEART", regex=False).where(d["Description"].notna()),
    ),
    ("abs(Quantity)", lambda d: d["Quantity"].abs()),
    ("log1p(UnitPrice)", lambda d: np.log1p(d["UnitPrice"])),
    (
        'Quantity > 6 and not (StockCode starts with "8")',
        lambda d: (d["Quantity"] > 6) & ~d["StockCode"].str.startswith("8"),
    ),
    ("Quantity >= 12 or UnitPrice == 0", lambda d: (d["Quantity"] >= 12) | (d["UnitPrice"] == 0)),
    ("CustomerID is missing", lambda d: d["CustomerID"].isna()),
    ('Country != "United Kingdom"', lambda d: d["Country"] != "United Kingdom"),
    ("`Unit Price` * 2", lambda d: d["UnitPrice"] * 2),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_expressions_match_pandas_on_real_lines(text, expected):
    lines = retail_slice().head(5000).copy()
    lines["Unit Price"] = lines["UnitPrice"]
    got = pl.from_pandas(lines).select(to_polars(parse(text)).alias("v"))["v"].to_pandas()
    want = expected(lines).astype("float64")  # booleans as 1/0, missing as NaN
    np.testing.assert_allclose(got.astype("float64").to_numpy(), want.to_numpy(), rtol=1e-12, equal_nan=True)
    if set(np.unique(want.dropna())) <= {0.0, 1.0}:
        assert 0 < want.sum() < want.notna().sum() or text == "CustomerID is missing", "a case should split the lines"


def test_columns_of_lists_what_an_expression_reads():
    assert columns_of(parse('Quantity * UnitPrice + abs(Quantity) - (InvoiceNo starts with "C")')) == [
        "Quantity",
        "UnitPrice",
        "InvoiceNo",
    ]
    assert columns_of(parse("`Customer ID` is missing")) == ["Customer ID"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("Quantity *", "expected a number, a text, a column or '\\(' at position 10"),
        ("(Quantity", "expected '\\)' at position 9"),
        ("Quantity UnitPrice", "expected an operator or the end at position 9"),
        ('InvoiceNo starts "C"', "expected 'with' at position 17"),
        ("Quantity ** 2", "at position 10"),
        ("Quantity; import os", "unexpected character ';' at position 8"),
        ("open('x')", "unknown function 'open'"),
        ("InvoiceNo starts with C", "expected a quoted text at position 22"),
        ("", "at position 0"),
    ],
)
def test_syntax_errors_name_the_position(text, message):
    with pytest.raises(ExpressionError, match=message):
        parse(text)


def test_a_comparison_becomes_a_share_when_averaged():
    lines = retail_slice().head(2000)
    share = pl.from_pandas(lines).select(to_polars(parse('InvoiceNo starts with "C"')).cast(pl.Int8).mean())
    assert share.item() == pytest.approx(lines["InvoiceNo"].str.startswith("C").mean())
