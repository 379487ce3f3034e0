"""`gbpipe data`: copy from a data folder, verify checksums, never modify data/raw; the download and
conversion code runs offline against file:// zips built from the real shared files."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.artifacts import parquet_bytes
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.progress import Progress
from pipeline.data import conversion
from pipeline.data import fetch as datasets
from pipeline.data.assembly import TWO_YEARS
from pipeline.data.catalog import Catalog, load_catalog, sha256_hex, table_digest
from pipeline.data.fetch import fetch_all, source_folder
from tests.helpers.datasets import SHARED

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A writable copy of the shared data folder (so tests may corrupt it)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder {SHARED} not found; set GBPIPE_DATA_DIR")
    folder = tmp_path_factory.mktemp("shared") / "data"
    shutil.copytree(SHARED, folder)
    for path in folder.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return folder


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch) -> Path:
    """cwd without a ../shared/data next to it, no GBPIPE_DATA_DIR, no URL overrides."""
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    for key in list(os.environ):
        if key == datasets.ENV_DATA_DIR or key.startswith(datasets.URL_ENV_PREFIX):
            monkeypatch.delenv(key)
    return work


def subset(catalog: Catalog, *names: str) -> Catalog:
    """The catalog restricted to some datasets."""
    keep = {k: v for k, v in catalog.checksums.items() if k.split("/")[0] in names}
    return Catalog(keep, {k: v for k, v in catalog.tables.items() if k in keep})


def read_only(path: Path) -> bool:
    return not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_copy_from_source_folder_verifies_and_makes_files_read_only(source, isolated, capsys):
    dest = isolated / "data" / "raw"
    assert main(["data", "--dest", str(dest), "--source", str(source)]) == 0
    for name, digest in CATALOG.checksums.items():
        assert sha256_hex((dest / name).read_bytes()) == digest, name
        assert read_only(dest / name), name
    assert "adult/adult.parquet: copied" in capsys.readouterr().err


def test_rerun_skips_present_files_and_touches_nothing(source, isolated, capsys):
    dest = isolated / "raw"
    first = fetch_all(dest, source, Progress(quiet=True))
    assert first.pop(TWO_YEARS) == "assembled"  # once both years of Online Retail are in place
    assert set(first.values()) == {"copied"} and set(first) == set(CATALOG.checksums)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.rglob("*")}
    assert main(["data", "--dest", str(dest), "--source", str(source)]) == 0
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.rglob("*")} == before
    err = capsys.readouterr().err
    assert "online_retail: 3 files present" in err and f"{TWO_YEARS}: present" in err
    assert main(["data", "--dest", str(dest), "--source", str(source), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_wrong_file_in_dest_is_named_and_never_overwritten(source, isolated, capsys):
    dest = isolated / "raw"
    bad = dest / "adult" / "adult.names"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((source / "adult" / "adult.names").read_bytes() + b"edited\n")
    assert main(["data", "--dest", str(dest), "--source", str(source)]) == 3
    err = capsys.readouterr().err
    assert str(bad) in err and "never modifies data/raw" in err
    assert bad.read_bytes().endswith(b"edited\n")
    assert [p for p in dest.rglob("*") if p.is_file()] == [bad]  # checked before anything is written


def test_altered_source_file_is_refused(source, isolated, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(source / "adult", broken / "adult")
    train_csv = broken / "adult" / "adult-train.csv"
    train_csv.write_bytes(train_csv.read_bytes()[:-1000])  # truncated
    with pytest.raises(DataError, match=r"adult-train\.csv has sha256 .* altered or truncated"):
        fetch_all(tmp_path / "raw", broken, catalog=subset(CATALOG, "adult"))
    assert not (tmp_path / "raw" / "adult" / "adult-train.csv").exists()


@pytest.mark.parametrize(
    "given, env, shared, expected",
    [
        ("given", "env", True, "given"),
        (None, "env", True, "env"),
        (None, None, True, "shared"),
        (None, "", True, "shared"),
        (None, None, False, None),
    ],
)
def test_source_folder_precedence(isolated, given, env, shared, expected):
    folders = {k: isolated / k for k in ("given", "env")}
    for folder in folders.values():
        folder.mkdir()
    if shared:
        (isolated.parent / "shared" / "data").mkdir(parents=True)
    environ = {} if env is None else {datasets.ENV_DATA_DIR: str(folders[env]) if env else ""}
    found = source_folder(folders[given] if given else None, environ)
    expected_path = {"given": folders["given"], "env": folders["env"], "shared": datasets.SHARED_DIR}.get(expected)
    assert found == expected_path


def test_env_data_dir_wins_over_shared_folder(source, isolated, monkeypatch):
    decoy = isolated.parent / "shared" / "data" / "adult"  # ../shared/data with a corrupt copy
    shutil.copytree(source / "adult", decoy)
    (decoy / "adult.names").write_bytes(b"not the real file\n")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(source))
    outcome = fetch_all(isolated / "raw", None, catalog=subset(CATALOG, "adult"))
    assert outcome["adult/adult.names"] == "copied"
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(isolated / "nowhere"))
    with pytest.raises(ConfigError, match=r"GBPIPE_DATA_DIR .*nowhere is not a folder"):
        fetch_all(isolated / "raw2", None, catalog=subset(CATALOG, "adult"))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_download_adult_and_housing_offline_matches_shared_data(source, isolated, tmp_path, monkeypatch):
    """UCI's adult.zip layout (adult.test starts with '|1x3 Cross validator') and Géron's housing.csv."""
    adult = source / "adult"
    archive = tmp_path / "adult.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "adult.data": (adult / "adult-train.csv").read_bytes(),
                "adult.test": b"|1x3 Cross validator\n" + (adult / "adult-test.csv").read_bytes(),
                "adult.names": (adult / "adult.names").read_bytes(),
                "Index": b"index\n",
            }
        )
    )
    monkeypatch.setenv("GBPIPE_URL_ADULT", archive.as_uri())
    monkeypatch.setenv("GBPIPE_URL_CALIFORNIA_HOUSING", (source / "california_housing" / "housing.csv").as_uri())
    dest, catalog = isolated / "raw", subset(CATALOG, "adult", "california_housing")
    with pytest.warns(UserWarning, match=r"california_housing/README\.md: not part of the public download"):
        outcome = fetch_all(dest, None, catalog=catalog)
    assert outcome == {
        **dict.fromkeys(
            [
                "adult/adult-test.csv",
                "adult/adult-train.csv",
                "adult/adult.names",
                "adult/adult.parquet",
                "california_housing/housing.csv",
                "california_housing/housing.parquet",
            ],
            "downloaded",
        )
    }
    for name in ("adult/adult-test.csv", "adult/adult-train.csv", "california_housing/housing.csv"):
        assert (dest / name).read_bytes() == (source / name).read_bytes(), name
    for name in ("adult/adult.parquet", "california_housing/housing.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(dest / name), pd.read_parquet(source / name))
        assert read_only(dest / name)
    with pytest.warns(UserWarning, match="README"):  # rebuilt tables are recognised by content on a rerun
        again = fetch_all(dest, None, catalog=catalog)
    assert set(again.values()) == {"present"}


def excel_sheet(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as an Online Retail II sheet holds them: II column names, numeric codes as numbers."""
    frame = frame.astype(object).rename(columns={v: k for k, v in conversion.RETAIL_II_NAMES.items()})
    for col in ("Invoice", "StockCode"):
        frame[col] = frame[col].map(lambda v: int(v) if v.isdigit() else v)
    return frame.where(pd.notna(frame), None)


def retail_ii_xlsx(rows: pd.DataFrame) -> bytes:
    """An Online Retail II workbook: two sheets where the first (2009-12 .. 2010-12-09) overlaps the second
    by nine days. Its 2009 rows are real rows dated a year back."""
    overlap = rows[rows["InvoiceDate"] < "2010-12-10"]
    earlier = rows[rows["InvoiceDate"] >= "2010-12-10"].assign(
        InvoiceDate=lambda f: f["InvoiceDate"] - pd.DateOffset(years=1)
    )
    first = pd.concat([earlier, overlap]).sort_values("InvoiceDate", kind="stable")
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        excel_sheet(first).to_excel(writer, sheet_name="Year 2009-2010", index=False)
        excel_sheet(rows).to_excel(writer, sheet_name="Year 2010-2011", index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def retail_rows(source) -> pd.DataFrame:
    """About 600 real lines (with cancellations, missing customers and descriptions), in file order."""
    frame = pd.read_parquet(source / "online_retail" / "online_retail.parquet")
    picked = frame.sample(560, random_state=1).index.union(frame.index[frame["Description"].isna()][:20])
    picked = picked.union(frame.index[frame["InvoiceNo"].str.startswith("C")][:20])
    return frame.loc[picked].reset_index(drop=True)


def test_online_retail_ii_is_normalised_to_the_shared_layout(retail_rows):
    pytest.importorskip("openpyxl")
    converted = conversion.retail_frame(retail_ii_xlsx(retail_rows))
    pd.testing.assert_frame_equal(converted, retail_rows)
    assert table_digest(converted) == table_digest(retail_rows)


def test_online_retail_download_path_end_to_end(retail_rows, isolated, tmp_path, monkeypatch):
    pytest.importorskip("openpyxl")
    archive = tmp_path / "online_retail_II.zip"
    archive.write_bytes(zip_bytes({"online_retail_II.xlsx": retail_ii_xlsx(retail_rows)}))
    monkeypatch.setenv("GBPIPE_URL_ONLINE_RETAIL", archive.as_uri())
    name = "online_retail/online_retail.parquet"
    # the committed catalog describes all 541,909 lines: a 600-line file must be refused, nothing written
    with pytest.raises(
        DataError,
        match=rf"online_retail\.parquet: {len(retail_rows)} rows \(expected 541909\).*"
        "nothing was written",
    ):
        fetch_all(isolated / "raw", None, catalog=Catalog({name: CATALOG.checksums[name]}, CATALOG.tables))
    assert not (isolated / "raw").exists()
    small = Catalog({name: sha256_hex(parquet_bytes(retail_rows))}, {name: table_digest(retail_rows)})
    assert fetch_all(isolated / "raw", None, catalog=small) == {name: "downloaded"}
    pd.testing.assert_frame_equal(pd.read_parquet(isolated / "raw" / name), retail_rows)


def test_missing_openpyxl_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(ConfigError, match=r"pip install openpyxl"):
        conversion.retail_frame(b"")


def test_unreachable_source_explains_the_offline_way(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("GBPIPE_URL_ADULT", (tmp_path / "missing.zip").as_uri())
    with pytest.raises(DataError, match=r"could not download .*missing\.zip.*GBPIPE_DATA_DIR"):
        fetch_all(isolated / "raw", None, catalog=subset(CATALOG, "adult"))


def test_online_retail_ii_first_year_download_converts_to_the_shared_layout(retail_rows, source):
    """The first sheet of the Online Retail II workbook becomes the shared online_retail_ii file: its own
    column names, codes as text, the workbook's row order, missing descriptions missing."""
    pytest.importorskip("openpyxl")
    first = pd.read_parquet(source / "online_retail_ii" / "online_retail_ii_2009_2010.parquet")
    picked = first.sample(400, random_state=3).index.union(first.index[first["Description"].isna()][:10])
    first = first.loc[picked].reset_index(drop=True)
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        excel_sheet(first).to_excel(writer, sheet_name="Year 2009-2010", index=False)
        excel_sheet(retail_rows).to_excel(writer, sheet_name="Year 2010-2011", index=False)
    files = conversion.build_online_retail_ii(zip_bytes({"online_retail_II.xlsx": buffer.getvalue()}))
    converted = pd.read_parquet(io.BytesIO(files["online_retail_ii_2009_2010.parquet"]))
    pd.testing.assert_frame_equal(converted, first)
