"""`gbpipe data`: put the real datasets under data/raw/, verified, and never touch them again.

Sources, first found wins: `--source`, `$GBPIPE_DATA_DIR`, `../shared/data` from the project root
(the current directory), else the public download (UCI archive; Géron's CSV for california housing).
Every file is checked against `data/checksums.sha256` (sha256 of the shared copies). A table that was
rebuilt from a public download cannot be byte-identical to the shared parquet (other library
versions write other bytes), so tables are also accepted when their *content* matches
`data/tables.json` (row count, and per column its kind and a sha256 of its values).
Files already in data/raw with the right checksum are skipped; a wrong one is an error, never
overwritten. New files are written atomically and made read-only.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.artifacts import atomic_write_bytes, fsync_dir, json_bytes, parquet_bytes
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.progress import QUIET, Progress

CATALOG_DIR = Path(__file__).resolve().parents[2] / "data"
ENV_DATA_DIR = "GBPIPE_DATA_DIR"
SHARED_DIR = Path("..") / "shared" / "data"
URL_ENV_PREFIX = "GBPIPE_URL_"  # GBPIPE_URL_ADULT=file:///... overrides a dataset's download address
DEFAULT_URLS = {
    "adult": "https://archive.ics.uci.edu/static/public/2/adult.zip",
    "california_housing": "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.csv",
    "online_retail": "https://archive.ics.uci.edu/static/public/352/online+retail.zip",
}
ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
                 "native-country", "income")
RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                  "CustomerID", "Country")
RETAIL_II_NAMES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
# Online Retail (UCI 352) is the 2010-12-01 .. 2011-12-09 year; Online Retail II (UCI 502) has it as
# its second sheet, next to a 2009-12 .. 2010-12 sheet that overlaps it by nine days.
RETAIL_PERIOD = (pd.Timestamp("2010-12-01"), pd.Timestamp("2011-12-10"))
READ_ONLY = 0o444


@dataclass(frozen=True)
class Catalog:
    """What the datasets must contain: sha256 per file, content digests per table."""

    checksums: dict[str, str]
    tables: dict[str, dict]

    def files(self, dataset: str) -> list[str]:
        return sorted(name for name in self.checksums if name.split("/", 1)[0] == dataset)

    def datasets(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.checksums})


def load_catalog(folder: Path = CATALOG_DIR) -> Catalog:
    """Read the committed checksum list and table digests."""
    checksums = {}
    for line in (folder / "checksums.sha256").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            checksums[name.strip().removeprefix("*")] = digest
    return Catalog(checksums, json.loads((folder / "tables.json").read_text()))


def catalog_of(folder: Path) -> Catalog:
    """The catalog of a reference data folder (how data/checksums.sha256 and data/tables.json are made)."""
    files = sorted(p for p in Path(folder).glob("*/*") if p.is_file())
    checksums = {p.relative_to(folder).as_posix(): sha256_hex(p.read_bytes()) for p in files}
    tables = {name: table_digest(pd.read_parquet(Path(folder) / name)) for name in checksums
              if name.endswith(".parquet")}
    return Catalog(checksums, tables)


def write_catalog(catalog: Catalog, folder: Path = CATALOG_DIR) -> None:
    """Write data/checksums.sha256 (sha256sum format) and data/tables.json."""
    lines = [f"{digest}  {name}" for name, digest in sorted(catalog.checksums.items())]
    atomic_write_bytes(folder / "checksums.sha256", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(folder / "tables.json", json_bytes(catalog.tables))


def fetch_all(dest: Path, source: Path | None = None, progress: Progress = QUIET,
              urls: Mapping[str, str] | None = None, catalog: Catalog | None = None) -> dict[str, str]:
    """Put every dataset under `dest`; returns {file: how it got there} ('present', 'copied', 'downloaded')."""
    dest, catalog = Path(dest), catalog or load_catalog()
    folder = source_folder(source, os.environ)
    urls = {**DEFAULT_URLS, **env_urls(os.environ), **(urls or {})}
    present = check_present(dest, catalog)
    outcome = dict.fromkeys(present, "present")
    for dataset in catalog.datasets():
        missing = [name for name in catalog.files(dataset) if name not in present]
        if not missing:
            progress.say(f"{dataset}: {len(catalog.files(dataset))} files present in {dest}, checksums ok")
            continue
        progress.say(f"{dataset}: {len(missing)} of {len(catalog.files(dataset))} files to fetch into {dest}")
        copyable = [n for n in missing if folder is not None and (folder / n).is_file()]
        for name in copyable:
            copy_verified(folder, dest, name, catalog, progress)
            outcome[name] = "copied"
        rest = [n for n in missing if n not in copyable]
        if rest:
            outcome.update(download_dataset(dataset, rest, urls[dataset], dest, catalog, progress))
    return outcome


def source_folder(source: Path | None, env: Mapping[str, str]) -> Path | None:
    """The folder to copy from: --source, $GBPIPE_DATA_DIR, ../shared/data; None means download."""
    for given, what in ((source, "--source"), (env.get(ENV_DATA_DIR) or None, f"${ENV_DATA_DIR}")):
        if given is not None:
            if not Path(given).is_dir():
                raise ConfigError(f"{what} {given} is not a folder; point it at a copy of the shared data "
                                  f"folder (with adult/, california_housing/, online_retail/) or unset it")
            return Path(given)
    return SHARED_DIR if SHARED_DIR.is_dir() else None


def env_urls(env: Mapping[str, str]) -> dict[str, str]:
    """Download addresses overridden by GBPIPE_URL_<DATASET> (e.g. a mirror, or file:// in tests)."""
    return {name: env[URL_ENV_PREFIX + name.upper()] for name in DEFAULT_URLS if env.get(URL_ENV_PREFIX + name.upper())}


def check_present(dest: Path, catalog: Catalog) -> list[str]:
    """Files already in `dest` that match the catalog; any that does not is an error (all named)."""
    present, wrong = [], []
    for name, expected in catalog.checksums.items():
        path = dest / name
        if not path.is_file():
            continue
        if matches(path.read_bytes(), name, catalog):
            present.append(name)
        else:
            wrong.append(f"{path} (sha256 {sha256_hex(path.read_bytes())[:16]}..., expected {expected[:16]}...)")
    if wrong:
        raise DataError(f"{len(wrong)} file(s) in {dest} do not match data/checksums.sha256: " + "; ".join(wrong)
                        + ". gbpipe never modifies data/raw: move or delete these files yourself, "
                        "then rerun `gbpipe data` to fetch verified copies")
    return present


def matches(data: bytes, name: str, catalog: Catalog) -> bool:
    """True when the bytes are the shared file, or a table with the same content (rebuilt from the source)."""
    if sha256_hex(data) == catalog.checksums[name]:
        return True
    if name not in catalog.tables:
        return False
    try:
        return table_digest(pd.read_parquet(io.BytesIO(data))) == catalog.tables[name]
    except (OSError, ValueError):  # not a readable parquet file
        return False


def copy_verified(folder: Path, dest: Path, name: str, catalog: Catalog, progress: Progress) -> None:
    """Copy one file after checking its sha256; the source must be the exact shared file."""
    src = folder / name
    data = src.read_bytes()
    got = sha256_hex(data)
    if got != catalog.checksums[name]:
        raise DataError(f"{src} has sha256 {got[:16]}..., expected {catalog.checksums[name][:16]}... "
                        f"(data/checksums.sha256): that copy is altered or truncated; fix the source folder "
                        f"or point {ENV_DATA_DIR} elsewhere. Nothing was written")
    install(dest / name, data)
    progress.say(f"  {name}: copied from {src.parent} ({size_text(len(data))}, sha256 ok)")


def install(path: Path, data: bytes) -> None:
    """Write a read-only file atomically (temp file, fsync, chmod, rename); never replaces a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    restore = _make_writable(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, READ_ONLY)
        if path.exists():  # appeared meanwhile (another `gbpipe data`): keep it, check_present judges it next run
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if restore is not None:
            os.chmod(path.parent, restore)
    fsync_dir(path.parent)


def _make_writable(folder: Path) -> int | None:
    """Data folders copied with `cp -r` are read-only; open one briefly to add a missing file."""
    mode = folder.stat().st_mode & 0o7777
    if mode & 0o200:
        return None
    os.chmod(folder, mode | 0o200)
    return mode


def download_dataset(dataset: str, names: list[str], url: str, dest: Path, catalog: Catalog,
                     progress: Progress) -> dict[str, str]:
    """Download a dataset from its public source, convert it, verify every file, then write it."""
    built = BUILDERS[dataset](fetch_url(url, progress))
    unavailable = [n for n in names if n.split("/", 1)[1] not in built]
    if unavailable:
        warnings.warn(f"{', '.join(unavailable)}: not part of the public download; copy them from a shared "
                      f"data folder ({ENV_DATA_DIR}) if you need them", stacklevel=2)
    wanted = {n: built[n.split("/", 1)[1]] for n in names if n not in unavailable}
    bad = [n for n, data in wanted.items() if not matches(data, n, catalog)]
    if bad:
        raise DataError(f"{dataset} downloaded from {url} does not match the committed checksums for "
                        f"{', '.join(bad)}: {describe_mismatch(bad, wanted, catalog)}. The source may have "
                        f"changed; nothing was written. Use a verified copy via {ENV_DATA_DIR} instead")
    for name, data in wanted.items():
        install(dest / name, data)
        progress.say(f"  {name}: built from {url} ({size_text(len(data))}, verified)")
    return dict.fromkeys(wanted, "downloaded")


def describe_mismatch(bad: list[str], wanted: dict[str, bytes], catalog: Catalog) -> str:
    """Which rows or columns of a rebuilt table differ from the reference (or that the bytes differ)."""
    parts = []
    for name in bad:
        if name not in catalog.tables:
            parts.append(f"{name}: sha256 {sha256_hex(wanted[name])[:16]}... differs")
            continue
        got, ref = table_digest(pd.read_parquet(io.BytesIO(wanted[name]))), catalog.tables[name]
        cols = [c[0] for c in ref["columns"] if c not in got["columns"]]
        parts.append(f"{name}: {got['rows']} rows (expected {ref['rows']}), columns differing: {cols or 'order'}")
    return "; ".join(parts)


def fetch_url(url: str, progress: Progress, timeout: float = 60.0) -> bytes:
    """The bytes at `url` (https:// or file://), with one progress line."""
    progress.say(f"  downloading {url}")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (URLs are ours or the user's)
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"could not download {url}: {exc}. Without internet access, copy the datasets into a "
                        f"folder and set {ENV_DATA_DIR} (or --source) to it") from None
    progress.say(f"  {size_text(len(data))} in {time.perf_counter() - started:.1f}s")
    return data


# ---- converters: public source bytes -> the files of the shared layout ----

def build_adult(zip_bytes: bytes) -> dict[str, bytes]:
    """UCI adult.zip -> adult-train.csv, adult-test.csv (without its '|1x3 Cross validator' line),
    adult.names, adult.parquet (named columns, `split`, test labels without their trailing '.')."""
    members = zip_members(zip_bytes, ("adult.data", "adult.test", "adult.names"))
    test = members["adult.test"]
    if test.startswith(b"|"):
        test = test.split(b"\n", 1)[1]
    train_frame, test_frame = adult_frame(members["adult.data"], "train"), adult_frame(test, "test")
    frame = pd.concat([train_frame, test_frame], ignore_index=True)
    return {"adult-train.csv": members["adult.data"], "adult-test.csv": test, "adult.names": members["adult.names"],
            "adult.parquet": parquet_bytes(frame)}


def adult_frame(csv_bytes: bytes, split: str) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(csv_bytes), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
                        keep_default_na=False)
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
    try:
        import openpyxl  # noqa: F401  (pandas needs it to read .xlsx)
    except ImportError:
        raise ConfigError("reading the Online Retail .xlsx needs openpyxl: run `.venv/bin/pip install openpyxl` "
                          "(or copy the datasets from a shared folder via $GBPIPE_DATA_DIR)") from None
    sheets = pd.read_excel(io.BytesIO(xlsx_bytes), sheet_name=None, engine="openpyxl")
    frames = [_normalise_retail(sheet, name) for name, sheet in sheets.items()]
    start, end = RETAIL_PERIOD
    inside = [f for f in frames if len(f) and f["InvoiceDate"].min() >= start and f["InvoiceDate"].max() < end]
    if not inside:
        raise DataError(f"no sheet of the Online Retail file lies within {start:%Y-%m-%d} .. {end:%Y-%m-%d} "
                        f"(sheets: {', '.join(sheets)})")
    frame = pd.concat(inside, ignore_index=True)
    # the shared file concatenates one CSV per day: order by day, keeping the order within a day
    order = np.argsort(frame["InvoiceDate"].dt.normalize().to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def _normalise_retail(sheet: pd.DataFrame, name: str) -> pd.DataFrame:
    sheet = sheet.rename(columns=RETAIL_II_NAMES)
    missing = [c for c in RETAIL_COLUMNS if c not in sheet.columns]
    if missing:
        raise DataError(f"sheet {name!r} of the Online Retail file lacks columns {missing}; found {list(sheet.columns)}")
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


BUILDERS: dict[str, Callable[[bytes], dict[str, bytes]]] = {
    "adult": build_adult, "california_housing": build_housing, "online_retail": build_online_retail}


# ---- checksums ----

def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} kB"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_digest(frame: pd.DataFrame) -> dict:
    """Row count and, per column in order, [name, kind, sha256 of the values] (independent of file bytes)."""
    return {"rows": len(frame), "columns": [[str(c), *column_digest(frame[c])] for c in frame.columns]}


def column_digest(column: pd.Series) -> list[str]:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        kind, data = "int", column.to_numpy("int64").astype("<i8").tobytes()
    elif pd.api.types.is_float_dtype(column):
        values = column.to_numpy("float64") + 0.0  # -0.0 -> 0.0
        kind, data = "float", np.where(np.isnan(values), np.nan, values).astype("<f8").tobytes()
    elif pd.api.types.is_datetime64_any_dtype(column):
        kind, data = "datetime", column.astype("datetime64[ns]").to_numpy().view("int64").astype("<i8").tobytes()
    else:
        text = ("\x01" if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
                for v in column.astype(object))
        kind, data = "str", "\x00".join(text).encode("utf-8")
    return [kind, hashlib.sha256(kind.encode() + b"\x00" + data).hexdigest()]
