"""The two-year Online Retail table that `gbpipe data` assembles: Online Retail II's first year joined to
UCI Online Retail, their nine shared days taken once and only when both files agree on them."""

from __future__ import annotations

import json
import shutil
import stat
from functools import lru_cache

import pandas as pd
import pytest

from pipeline.core.errors import DataError
from pipeline.data.assembly import FIRST_YEAR, SECOND_YEAR, SOURCES, TWO_YEARS, join_years
from pipeline.data.fetch import assemble_two_years
from tests.helpers.datasets import shared_file

NAMES = (FIRST_YEAR, SECOND_YEAR)


@lru_cache(maxsize=1)
def years() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(shared_file(FIRST_YEAR)), pd.read_parquet(shared_file(SECOND_YEAR))


@lru_cache(maxsize=1)
def joined() -> tuple[pd.DataFrame, dict]:
    return join_years(*years(), NAMES)


def by_month(frame: pd.DataFrame) -> pd.DataFrame:
    """Lines, customers and spend per calendar month."""
    month = frame["InvoiceDate"].dt.to_period("M")
    spend = frame["Quantity"] * frame["UnitPrice"]
    groups = frame.groupby(month)
    return pd.DataFrame(
        {
            "lines": groups.size(),
            "customers": groups["CustomerID"].nunique(),
            "spend": spend.groupby(month).sum().round(6),
        }
    )


def test_the_join_has_every_line_once():
    table, summary = joined()
    first, second = years()
    assert len(table) == summary["rows"] == 1_044_847  # the course's two years (online_retail_ii/README.md)
    assert summary["overlap"] == {"from": "2010-12-01", "to": "2010-12-09", "lines_in_each": 22_523,
                                  "identical": True, "taken_from": SECOND_YEAR}  # fmt: skip
    head, tail = table.iloc[:502_938], table.iloc[502_938:].reset_index(drop=True)
    assert head["InvoiceDate"].max() < pd.Timestamp("2010-12-01") <= tail["InvoiceDate"].min()
    pd.testing.assert_frame_equal(tail, second)  # the second year whole, as the file has it
    assert len(head) == int((first["InvoiceDate"] < pd.Timestamp("2010-12-01")).sum())
    assert [f["lines_used"] for f in summary["files"]] == [502_938, 541_909]


def test_customers_and_spend_per_month_equal_the_sources():
    table, _ = joined()
    first, second = years()
    first = first.rename(columns={"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"})
    expected = pd.concat([by_month(first[first["InvoiceDate"] < pd.Timestamp("2010-12-01")]), by_month(second)])
    pd.testing.assert_frame_equal(by_month(table), expected)
    assert list(table.columns) == list(second.columns)


def changed(frame: pd.DataFrame, **values) -> pd.DataFrame:
    """One line of December 2010 (a day both files hold) changed."""
    frame = frame.copy()
    row = frame.index[frame["InvoiceDate"] >= pd.Timestamp("2010-12-03")][0]
    for column, value in values.items():
        frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize("column, value", [("Quantity", 9999), ("Price", 0.01), ("Customer ID", 12346.0)])
def test_a_changed_line_in_the_overlap_is_refused_with_the_days_and_the_count(column, value):
    first, second = years()
    pattern = (
        r"disagree on the days both hold, 2010-12-01 \.\. 2010-12-09: 2 lines are in one file and not the other "
        r"\(22523 and 22523 lines there\)"
    )
    with pytest.raises(DataError, match=pattern) as info:
        join_years(changed(first, **{column: value}), second, NAMES)
    assert info.value.exit_code == 3


def test_a_missing_overlap_line_is_refused():
    first, second = years()
    dropped = first.drop(index=first.index[first["InvoiceDate"] >= pd.Timestamp("2010-12-05")][:1])
    with pytest.raises(DataError, match=r"1 lines are in one file and not the other \(22522 and 22523"):
        join_years(dropped, second, NAMES)


@pytest.fixture
def dest(tmp_path):
    """A data/raw holding both years (plain copies: the catalog's checks are `gbpipe data`'s job)."""
    for name in NAMES:
        (tmp_path / name).parent.mkdir(parents=True)
        shutil.copyfile(shared_file(name), tmp_path / name)
    return tmp_path


def test_gbpipe_data_assembles_once_and_says_what_made_the_table(dest, capsys):
    from pipeline.core.progress import Progress

    assert assemble_two_years(dest, Progress()) == {TWO_YEARS: "assembled"}
    err = capsys.readouterr().err
    assert "1,044,847 lines, 2009-12-01 07:45 .. 2011-12-09 12:50" in err
    assert f"{FIRST_YEAR}: 2009-12-01 07:45 .. 2010-12-09 20:01, 502,938 of 525,461 lines" in err
    assert "overlap 2010-12-01 .. 2010-12-09: 22,523 lines, identical in both files" in err
    table = pd.read_parquet(dest / TWO_YEARS)
    pd.testing.assert_frame_equal(table, joined()[0])
    assert not (dest / TWO_YEARS).stat().st_mode & stat.S_IWUSR  # read-only, as every file of data/raw
    sources = json.loads((dest / SOURCES).read_text())
    assert [f["file"] for f in sources["files"]] == list(NAMES)
    written = (dest / TWO_YEARS).stat().st_mtime_ns
    assert assemble_two_years(dest, Progress()) == {TWO_YEARS: "present"}  # recognised, not rebuilt
    assert (dest / TWO_YEARS).stat().st_mtime_ns == written


def test_a_table_built_from_other_files_is_never_overwritten(dest):
    assemble_two_years(dest)
    (dest / FIRST_YEAR).unlink()
    changed(pd.read_parquet(shared_file(FIRST_YEAR)), Quantity=9999).to_parquet(dest / FIRST_YEAR)
    with pytest.raises(DataError, match=r"online_retail_2009_2011\.parquet was not built from the files now in .*"
                                        r"delete \S+online_retail_2y yourself"):  # fmt: skip
        assemble_two_years(dest)


def test_either_year_alone_builds_no_table(dest):
    (dest / FIRST_YEAR).unlink()
    assert assemble_two_years(dest) == {}
    assert not (dest / TWO_YEARS).exists()
