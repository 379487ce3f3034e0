"""Events kept as many files: the 305 original daily CSVs of Online Retail, read as one table."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_features
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.feature_cache import cached_features
from pipeline.data.parts import read_any
from tests.helpers.datasets import shared_file
from tests.helpers.retail import DATA_ERROR, retail_config, retail_events, retail_spec


@pytest.fixture(scope="module")
def by_day(tmp_path_factory) -> Path:
    """The shared tarball's by-day/ folder: one CSV per trading day, byte for byte the originals."""
    base = tmp_path_factory.mktemp("parts")
    with tarfile.open(shared_file("online_retail/retail-data-by-day.tar.gz")) as archive:
        archive.extractall(base, filter="data")
    return base / "by-day"


def test_the_daily_files_build_the_same_features_as_the_whole_table(by_day):
    events = read_any(by_day)
    assert len(list(by_day.glob("*.csv"))) == 305 and len(events) == len(retail_events()) == 541_909
    from_parts = build_features(events, retail_spec(), "label")
    whole = build_features(retail_events(), retail_spec(), "label")
    for got, want in ((from_parts.train, whole.train), (from_parts.test, whole.test)):
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


def test_columns_get_one_type_over_all_parts(by_day):
    """Read alone, a day without cancellations has numeric invoices; joined, every invoice is text."""
    alone = [f for f in sorted(by_day.glob("*.csv")) if pd.api.types.is_integer_dtype(pd.read_csv(f)["InvoiceNo"])]
    assert alone, "some day should have no cancellation"
    events = read_any(by_day)
    assert pd.api.types.is_string_dtype(events["InvoiceNo"]) and events["InvoiceNo"].str.startswith("C").sum() == 9288


def test_a_glob_reads_the_parts_it_matches(by_day):
    events = read_any(str(by_day / "2011-0[1-3]-*.csv"))
    times = pd.to_datetime(retail_events()["InvoiceDate"])
    assert len(events) == int(((times >= "2011-01-01") & (times < "2011-04-01")).sum())


def test_the_cache_follows_the_parts(by_day, tmp_path):
    folder = tmp_path / "days"
    folder.mkdir()
    for f in sorted(by_day.glob("2011-1*.csv")):
        (folder / f.name).write_bytes(f.read_bytes())
    config = load_config(
        retail_config(
            tmp_path,
            folder,
            {
                "features.cutoffs.first": "2011-11-01",
                "features.cutoffs.test": None,
                "features.cutoffs.last": "2011-11-01",
            },
        )
    )
    first, again = cached_features(config), cached_features(config)
    assert again.reused and again.folder == first.folder
    (folder / "2011-10-03.csv").unlink()  # a part removed: another table, another cache folder
    changed = cached_features(config)
    assert not changed.reused and changed.folder != first.folder


def bad_parts(by_day: Path, tmp_path: Path, kind: str) -> str:
    folder = tmp_path / "bad"
    folder.mkdir()
    for f in sorted(by_day.glob("2011-11-0*.csv")):
        (folder / f.name).write_bytes(f.read_bytes())
    if kind == "other columns":
        part = folder / "2011-11-03.csv"
        pd.read_csv(part).drop(columns="Country").to_csv(part, index=False)
    elif kind == "mixed types":
        pd.read_csv(folder / "2011-11-03.csv").to_parquet(folder / "2011-11-03.parquet")
    elif kind == "wrong delimiter":
        for part in folder.glob("*.csv"):
            pd.read_csv(part).drop(columns="Description").to_csv(part, index=False, sep=";")  # no comma left
    return str(folder / "nothing-*.csv") if kind == "no match" else str(folder)


BAD = [
    (
        "other columns",
        r"part \S*2011-11-03.csv has other columns than the first part 2011-11-01.csv: it lacks "
        r"\['Country'\]",
    ),
    ("mixed types", r"the parts of \S*bad mix file types \['.csv', '.parquet'\]"),
    ("no match", r"nothing-\*.csv holds no table parts"),
    (
        "wrong delimiter",
        r"the CSV parts of \S*bad has one column 'InvoiceNo;StockCode;Quantity;.*'; the delimiter "
        r"looks wrong \(expected ','\)",
    ),
]


@pytest.mark.parametrize("kind,message", BAD, ids=[b[0] for b in BAD])
def test_bad_parts_fail_clearly_and_write_nothing(by_day, tmp_path, capsys, kind, message):
    events = bad_parts(by_day, tmp_path, kind)
    changes = {
        "features.cutoffs.first": "2011-11-02",
        "features.cutoffs.last": "2011-11-02",
        "features.cutoffs.test": None,
        "features.label.days": 1,
        "features.label.months": None,
    }
    assert main(["features", "--config", str(retail_config(tmp_path, Path(events), changes)), "-q"]) == DATA_ERROR
    assert re.search(message, capsys.readouterr().err), kind
    assert not (tmp_path / "runs").exists()
