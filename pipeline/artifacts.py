"""Run folders: atomic writes, manifests with hashes, and verified loading.

A run is built in `<run_id>.partial/` and renamed to `<run_id>/` only when complete, so a
finished run folder is never half-written and an existing run is never overwritten.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ArtifactError, ConfigError

MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
LATEST = "LATEST"
VERSIONED_LIBRARIES = ("lightgbm", "sklearn", "pandas", "numpy", "pyarrow")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared and read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Serialise a frame to parquet bytes; deterministic for the same frame."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import lightgbm
    import numpy
    import pyarrow
    import sklearn

    from . import __version__

    return {"gbpipe": __version__, "python": platform.python_version(), "lightgbm": lightgbm.__version__,
            "sklearn": sklearn.__version__, "pandas": pd.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}


class RunWriter:
    """Writes the files of one run into its staging folder, then publishes it atomically."""

    def __init__(self, final_dir: Path, resume: bool = False):
        self.final_dir = Path(final_dir)
        self.staging = self.final_dir.with_name(self.final_dir.name + PARTIAL_SUFFIX)
        if self.final_dir.exists():
            raise ConfigError(f"run folder {self.final_dir} already exists and is never overwritten; "
                              "pass another --run-id or leave it out to get a new one")
        if self.staging.exists() and not resume:
            raise ConfigError(f"an unfinished run is in {self.staging}; continue it with --resume "
                              f"--run-id {self.final_dir.name}, or delete that folder to start over")
        self.staging.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.staging / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.path(name)
        atomic_write_bytes(target, data)
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, json_bytes(obj))

    def write_parquet(self, name: str, frame: pd.DataFrame) -> Path:
        return self.write_bytes(name, parquet_bytes(frame))

    def publish(self, extra: dict[str, Any]) -> Path:
        """Write manifest.json over every file, rename the staging folder, point LATEST at it."""
        files = {}
        for file in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            rel = file.relative_to(self.staging).as_posix()
            if rel == MANIFEST or rel.startswith(".") or "/." in rel:
                continue
            files[rel] = {"sha256": sha256_file(file), "size": file.stat().st_size, "stage": "train"}
        manifest = {"files": files, "versions": library_versions(), **extra}
        self.write_json(MANIFEST, manifest)
        os.replace(self.staging, self.final_dir)
        fsync_dir(self.final_dir.parent)
        atomic_write_bytes(self.final_dir.parent / LATEST, (self.final_dir.name + "\n").encode())
        return self.final_dir


class RunReader:
    """Reads a published run folder, checking each file against the manifest before use."""

    def __init__(self, run_dir: Path, allow_version_mismatch: bool = False):
        self.dir = resolve_run_dir(Path(run_dir))
        manifest_path = self.dir / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text())
            self.files: dict[str, dict[str, Any]] = self.manifest["files"]
        except FileNotFoundError:
            raise ArtifactError(f"{manifest_path} is missing: {self.dir} is not a finished run") from None
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest_path} is corrupt ({exc}); rerun `gbpipe train`") from None
        if not allow_version_mismatch:
            check_versions(self.manifest.get("versions", {}), manifest_path)

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        """The path of a file after checking its size and sha256 against the manifest."""
        entry = self.files.get(name)
        path = self.dir / name
        if entry is None:
            raise ArtifactError(f"{path} is not listed in {self.dir / MANIFEST}; the run has no {name!r}")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the manifest lists it with sha256 {entry['sha256'][:12]}")
        size = path.stat().st_size
        if size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise ArtifactError(f"{path} does not match its manifest entry (size {size} vs {entry['size']}, "
                                "or sha256 differs): the file was truncated or altered; retrain the run")
        return path

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def read_parquet(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(name))


def check_versions(saved: dict[str, str], where: Path) -> None:
    """Refuse a run made with another major version of LightGBM or scikit-learn."""
    current = library_versions()
    for lib in ("lightgbm", "sklearn"):
        if lib in saved and saved[lib].split(".")[0] != current[lib].split(".")[0]:
            raise ArtifactError(f"{where} was made with {lib} {saved[lib]} but {current[lib]} is installed; "
                                "major versions differ, so the models may load wrongly. Retrain, or pass "
                                "--allow-version-mismatch to load anyway")


def resolve_run_dir(path: Path) -> Path:
    """Accept a run folder, or an experiment folder whose LATEST names its newest run."""
    if (path / MANIFEST).exists() or not (path / LATEST).exists():
        return path
    return path / (path / LATEST).read_text().strip()


def add_files(run_dir: Path, stage: str, files: dict[str, bytes], replace: bool = False) -> Path:
    """Add a later stage's files (importance, ensemble, report) to a published run.

    Each file is written atomically, then the manifest is rewritten atomically with their hashes.
    Files of another stage (training's above all) are never replaced; a stage may replace its own
    earlier files only with replace=True (e.g. a regenerated report).
    """
    reader = RunReader(run_dir, allow_version_mismatch=True)
    manifest = reader.manifest
    for name in files:
        entry = manifest["files"].get(name)
        if name == MANIFEST or name.startswith("/") or ".." in Path(name).parts:
            raise ArtifactError(f"cannot add {name!r} to {reader.dir}: not a plain relative file name")
        if entry is not None and (entry.get("stage") != stage or not replace):
            raise ArtifactError(f"{reader.dir / name} already exists (written by stage "
                                f"{entry.get('stage', 'train')!r}) and is not replaced; earlier results stay untouched")
    for name, data in files.items():
        atomic_write_bytes(reader.dir / name, data)
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "stage": stage}
    atomic_write_bytes(reader.dir / MANIFEST, json_bytes(manifest))
    return reader.dir
