"""Public source bytes -> the files of the shared data layout: the UCI archives converted to the CSV and
parquet files that `gbpipe data` installs and the checksums in data/ describe.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.artifacts import parquet_bytes
from pipeline.core.errors import ConfigError, DataError

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)


RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)


RETAIL_II_NAMES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}


# Online Retail (UCI 352) is the 2010-12-01 .. 2011-12-09 year; Online Retail II (UCI 502) has it as
# its second sheet, next to a 2009-12 .. 2010-12 sheet that overlaps it by nine days.
RETAIL_PERIOD = (pd.Timestamp("2010-12-01"), pd.Timestamp("2011-12-10"))
RETAIL_II_PERIOD = (pd.Timestamp("2009-12-01"), pd.Timestamp("2010-12-10"))  # its first sheet


def build_adult(zip_bytes: bytes) -> dict[str, bytes]:
    """UCI adult.zip -> adult-train.csv, adult-test.csv (without its '|1x3 Cross validator' line),
    adult.names, adult.parquet (named columns, `split`, test labels without their trailing '.')."""
    members = zip_members(zip_bytes, ("adult.data", "adult.test", "adult.names"))
    test = members["adult.test"]
    if test.startswith(b"|"):
        test = test.split(b"\n", 1)[1]
    train_frame, test_frame = adult_frame(members["adult.data"], "train"), adult_frame(test, "test")
    frame = pd.concat([train_frame, test_frame], ignore_index=True)
    return {
        "adult-train.csv": members["adult.data"],
        "adult-test.csv": test,
        "adult.names": members["adult.names"],
        "adult.parquet": parquet_bytes(frame),
    }


def adult_frame(csv_bytes: bytes, split: str) -> pd.DataFrame:
    frame = pd.read_csv(
        io.BytesIO(csv_bytes), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True, keep_default_na=False
    )
    frame["income"] = frame["income"].str.rstrip(".")
    frame["split"] = split
    return frame


def build_housing(csv_bytes: bytes) -> dict[str, bytes]:
    """Géron's housing.csv -> housing.csv and housing.parquet."""
    return {"housing.csv": csv_bytes, "housing.parquet": parquet_bytes(pd.read_csv(io.BytesIO(csv_bytes)))}


def build_online_retail(zip_bytes: bytes) -> dict[str, bytes]:
    """UCI Online Retail (.xlsx in a zip; or Online Retail II) -> online_retail.parquet."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        xlsx = [n for n in archive.namelist() if n.lower().endswith(".xlsx")]
        if len(xlsx) != 1:
            raise DataError(f"the Online Retail zip should hold one .xlsx file, found {xlsx or 'none'}")
        return {"online_retail.parquet": parquet_bytes(retail_frame(archive.read(xlsx[0])))}


def retail_frame(xlsx_bytes: bytes) -> pd.DataFrame:
    """The 2010-12 .. 2011-12 year with Online Retail's column names and the shared file's types."""
    _require_openpyxl()
    sheets = pd.read_excel(io.BytesIO(xlsx_bytes), sheet_name=None, engine="openpyxl")
    frames = [_normalise_retail(sheet, name) for name, sheet in sheets.items()]
    start, end = RETAIL_PERIOD
    inside = [f for f in frames if len(f) and f["InvoiceDate"].min() >= start and f["InvoiceDate"].max() < end]
    if not inside:
        raise DataError(
            f"no sheet of the Online Retail file lies within {start:%Y-%m-%d} .. {end:%Y-%m-%d} "
            f"(sheets: {', '.join(sheets)})"
        )
    frame = pd.concat(inside, ignore_index=True)
    # the shared file concatenates one CSV per day: order by day, keeping the order within a day
    order = np.argsort(frame["InvoiceDate"].dt.normalize().to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def _normalise_retail(sheet: pd.DataFrame, name: str) -> pd.DataFrame:
    sheet = sheet.rename(columns=RETAIL_II_NAMES)
    missing = [c for c in RETAIL_COLUMNS if c not in sheet.columns]
    if missing:
        raise DataError(
            f"sheet {name!r} of the Online Retail file lacks columns {missing}; found {list(sheet.columns)}"
        )
    out = pd.DataFrame({c: _code_text(sheet[c]) for c in ("InvoiceNo", "StockCode")})
    out["Description"] = sheet["Description"].map(lambda v: v if pd.isna(v) or isinstance(v, str) else str(v))
    out["Description"] = out["Description"].astype("str")
    out["Quantity"] = sheet["Quantity"].astype("int64")
    out["InvoiceDate"] = pd.to_datetime(sheet["InvoiceDate"]).astype("datetime64[ns]").dt.round("s")
    out["UnitPrice"] = sheet["UnitPrice"].astype("float64")
    out["CustomerID"] = sheet["CustomerID"].astype("float64")
    out["Country"] = sheet["Country"].astype("str")
    return out


def _code_text(column: pd.Series) -> pd.Series:
    """Invoice and stock codes are numbers in Excel cells unless they hold a letter: 536365 -> '536365'."""

    def text(value):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return column.map(text).astype("str")


def zip_members(zip_bytes: bytes, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Members of a zip by base name (archives nest them in folders or not)."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        by_base = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
        missing = [w for w in wanted if w not in by_base]
        if missing:
            raise DataError(f"the downloaded zip lacks {missing}; it holds {sorted(by_base)}")
        return {w: archive.read(by_base[w]) for w in wanted}


def build_online_retail_ii(zip_bytes: bytes) -> dict[str, bytes]:
    """UCI Online Retail II (.xlsx in a zip, two sheets) -> its first year, 2009-12-01 .. 2010-12-09, in the
    workbook's row order and Online Retail II's own column names, as the shared file has them."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        xlsx = [n for n in archive.namelist() if n.lower().endswith(".xlsx")]
        if len(xlsx) != 1:
            raise DataError(f"the Online Retail II zip should hold one .xlsx file, found {xlsx or 'none'}")
        data = archive.read(xlsx[0])
    _require_openpyxl()
    sheets = pd.read_excel(io.BytesIO(data), sheet_name=None, engine="openpyxl")
    start, end = RETAIL_II_PERIOD
    frames = [_normalise_retail(sheet, name) for name, sheet in sheets.items()]
    inside = [f for f in frames if len(f) and f["InvoiceDate"].min() >= start and f["InvoiceDate"].max() < end]
    if len(inside) != 1:
        raise DataError(
            f"the Online Retail II file should have one sheet within {start:%Y-%m-%d} .. {end:%Y-%m-%d}, "
            f"found {len(inside)} (sheets: {', '.join(sheets)})"
        )
    frame = inside[0].rename(columns={v: k for k, v in RETAIL_II_NAMES.items()})
    return {"online_retail_ii_2009_2010.parquet": parquet_bytes(frame)}


def _require_openpyxl() -> None:
    try:
        import openpyxl  # noqa: F401  (pandas needs it to read .xlsx)
    except ImportError:
        raise ConfigError(
            "reading the Online Retail .xlsx needs openpyxl: run `.venv/bin/pip install openpyxl` "
            "(or copy the datasets from a shared folder via $GBPIPE_DATA_DIR)"
        ) from None


BUILDERS: dict[str, Callable[[bytes], dict[str, bytes]]] = {
    "adult": build_adult,
    "california_housing": build_housing,
    "online_retail": build_online_retail,
    "online_retail_ii": build_online_retail_ii,
}
