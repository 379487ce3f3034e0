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

import io
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pipeline.core.artifacts import fsync_dir
from pipeline.core.errors import ConfigError, DataError
from pipeline.core.progress import QUIET, Progress

from .assembly import SOURCES, TWO_YEARS, is_current, summary_lines, two_year_files
from .catalog import Catalog, load_catalog, sha256_hex, size_text, table_digest
from .conversion import BUILDERS

ENV_DATA_DIR = "GBPIPE_DATA_DIR"
SHARED_DIR = Path("..") / "shared" / "data"
URL_ENV_PREFIX = "GBPIPE_URL_"  # GBPIPE_URL_ADULT=file:///... overrides a dataset's download address
DEFAULT_URLS = {
    "adult": "https://archive.ics.uci.edu/static/public/2/adult.zip",
    "california_housing": "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.csv",
    "online_retail": "https://archive.ics.uci.edu/static/public/352/online+retail.zip",
    "online_retail_ii": "https://archive.ics.uci.edu/static/public/502/online+retail+ii.zip",
}
READ_ONLY = 0o444


def fetch_all(
    dest: Path,
    source: Path | None = None,
    progress: Progress = QUIET,
    urls: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
) -> dict[str, str]:
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
    outcome.update(assemble_two_years(dest, progress))
    return outcome


def assemble_two_years(dest: Path, progress: Progress = QUIET) -> dict[str, str]:
    """Build the two-year Online Retail table once both years are in `dest` (pipeline/data/assembly.py)."""
    if is_current(dest):
        progress.say(f"{TWO_YEARS}: present, built from the files in {dest}")
        return {TWO_YEARS: "present"}
    stale = [dest / name for name in (TWO_YEARS, SOURCES) if (dest / name).exists()]
    if stale:
        raise DataError(
            f"{stale[0]} was not built from the files now in {dest} (or was altered): gbpipe never modifies "
            f"data/raw, so delete {stale[0].parent} yourself and rerun `gbpipe data` to rebuild it"
        )
    built = two_year_files(dest)
    if built is None:
        return {}
    files, summary = built
    for name, data in files.items():
        install(dest / name, data)
    for line in summary_lines(summary):
        progress.say(line)
    return {TWO_YEARS: "assembled"}


def source_folder(source: Path | None, env: Mapping[str, str]) -> Path | None:
    """The folder to copy from: --source, $GBPIPE_DATA_DIR, ../shared/data; None means download."""
    for given, what in ((source, "--source"), (env.get(ENV_DATA_DIR) or None, f"${ENV_DATA_DIR}")):
        if given is not None:
            if not Path(given).is_dir():
                raise ConfigError(
                    f"{what} {given} is not a folder; point it at a copy of the shared data "
                    f"folder (with adult/, california_housing/, online_retail/) or unset it"
                )
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
        raise DataError(
            f"{len(wrong)} file(s) in {dest} do not match data/checksums.sha256: "
            + "; ".join(wrong)
            + ". gbpipe never modifies data/raw: move or delete these files yourself, "
            "then rerun `gbpipe data` to fetch verified copies"
        )
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
        raise DataError(
            f"{src} has sha256 {got[:16]}..., expected {catalog.checksums[name][:16]}... "
            f"(data/checksums.sha256): that copy is altered or truncated; fix the source folder "
            f"or point {ENV_DATA_DIR} elsewhere. Nothing was written"
        )
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


def download_dataset(
    dataset: str, names: list[str], url: str, dest: Path, catalog: Catalog, progress: Progress
) -> dict[str, str]:
    """Download a dataset from its public source, convert it, verify every file, then write it."""
    built = BUILDERS[dataset](fetch_url(url, progress))
    unavailable = [n for n in names if n.split("/", 1)[1] not in built]
    if unavailable:
        warnings.warn(
            f"{', '.join(unavailable)}: not part of the public download; copy them from a shared "
            f"data folder ({ENV_DATA_DIR}) if you need them",
            stacklevel=2,
        )
    wanted = {n: built[n.split("/", 1)[1]] for n in names if n not in unavailable}
    bad = [n for n, data in wanted.items() if not matches(data, n, catalog)]
    if bad:
        raise DataError(
            f"{dataset} downloaded from {url} does not match the committed checksums for "
            f"{', '.join(bad)}: {describe_mismatch(bad, wanted, catalog)}. The source may have "
            f"changed; nothing was written. Use a verified copy via {ENV_DATA_DIR} instead"
        )
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
        raise DataError(
            f"could not download {url}: {exc}. Without internet access, copy the datasets into a "
            f"folder and set {ENV_DATA_DIR} (or --source) to it"
        ) from None
    progress.say(f"  {size_text(len(data))} in {time.perf_counter() - started:.1f}s")
    return data


# ---- converters: public source bytes -> the files of the shared layout ----


# ---- checksums ----
