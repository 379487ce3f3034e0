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
TEMP_SUFFIX = ".tmp"
# mkstemp makes 0600; artifacts and predictions are meant to be shared and read.
SHARED_MODE = 0o644
SELF_HASH = "manifest_sha256"  # sha256 of the manifest's own JSON without this key: catches any edit of it


class ArtifactWriteError(ArtifactError, OSError):
    """A file could not be written (disk full, permissions); the previous file is left as it was.

    Also an OSError, so callers that caught OSError from a write keep working.
    """

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, then rename.

    On any failure (a full disk, Ctrl-C) the temp file is removed and `path` keeps its old content.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, SHARED_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ArtifactWriteError):
            raise write_error(path, exc) from exc
        raise
    fsync_dir(path.parent)


def write_error(path: Path, exc: OSError) -> ArtifactWriteError:
    """The error for a failed write, naming the file and the reason (e.g. no space left on device)."""
    reason = exc.strerror or str(exc)
    return ArtifactWriteError(f"could not write {path}: {reason} (errno {exc.errno}); nothing was replaced and "
                              "no temp file is left behind. Free space or fix permissions, then rerun "
                              "(`gbpipe train --resume` keeps the finished folds)", exc.errno)


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete temp files a killed process left in `folder` (atomic writes that never finished)."""
    stale = [p for p in Path(folder).rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


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


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as JSON carrying the sha256 of its own content, so an edited manifest is detected."""
    body = {k: v for k, v in manifest.items() if k != SELF_HASH}
    return json_bytes({**body, SELF_HASH: hashlib.sha256(json_bytes(body)).hexdigest()})


def check_manifest_hash(manifest: dict[str, Any], where: Path) -> None:
    """Raise ArtifactError when a manifest's self-hash does not match its content (manifests of
    older runs, written before the self-hash existed, have none and are accepted)."""
    saved = manifest.get(SELF_HASH)
    if saved is None:
        return
    body = {k: v for k, v in manifest.items() if k != SELF_HASH}
    if hashlib.sha256(json_bytes(body)).hexdigest() != saved:
        raise ArtifactError(f"{where} was altered after it was written (its {SELF_HASH} does not match its "
                            "content): the run cannot be trusted; retrain it")


def check_run_name(name: str, what: str = "run id") -> str:
    """A run folder name must be a plain name: no path separators, not '.' or '..'."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"{what} {name!r} is not a plain folder name; use letters, digits, '-', '_' and '.', "
                          "without '/' and not starting with '.'")
    return name


def inside(path: Path, root: Path) -> bool:
    """True when `path`, with symlinks resolved, lies inside `root` (also resolved)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


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


def staging_dir(final_dir: Path) -> Path:
    return Path(final_dir).with_name(Path(final_dir).name + PARTIAL_SUFFIX)


def check_new_run(final_dir: Path, resume: bool = False) -> None:
    """Refuse to write over an existing run, or to start over an unfinished one without --resume."""
    final_dir = Path(final_dir)
    check_run_name(final_dir.name)
    staging = staging_dir(final_dir)
    if final_dir.exists():
        raise ConfigError(f"run folder {final_dir} already exists and is never overwritten; "
                          "pass another --run-id or leave it out to get a new one")
    if staging.exists() and not resume:
        raise ConfigError(f"an unfinished run is in {staging}; continue it with --resume "
                          f"--run-id {final_dir.name}, or delete that folder to start over")


class RunWriter:
    """Writes the files of one run into its staging folder, then publishes it atomically."""

    def __init__(self, final_dir: Path, resume: bool = False):
        self.final_dir = Path(final_dir)
        self.staging = staging_dir(self.final_dir)
        check_new_run(self.final_dir, resume)
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.staging, exc) from exc
        if resume:
            remove_temp_files(self.staging)  # a kill during an atomic write leaves its temp file behind

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

    def publish(self, extra: dict[str, Any], stage: str = "train", update_latest: bool = True) -> Path:
        """Write manifest.json over every file, rename the staging folder, point LATEST at it.

        LATEST names the newest training run, what `--run runs/<exp>` means to importance, report and
        predict; other kinds of run (ensembles) pass update_latest=False.
        """
        files = {}
        for file in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            rel = file.relative_to(self.staging).as_posix()
            if rel == MANIFEST or rel.startswith(".") or "/." in rel:
                continue
            files[rel] = {"sha256": sha256_file(file), "size": file.stat().st_size, "stage": stage}
        manifest = {"files": files, "versions": library_versions(), **extra}
        self.write_bytes(MANIFEST, manifest_bytes(manifest))
        os.replace(self.staging, self.final_dir)
        fsync_dir(self.final_dir.parent)
        if update_latest:
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
        if not isinstance(self.files, dict):
            raise ArtifactError(f"{manifest_path} is corrupt ('files' is not a mapping); rerun `gbpipe train`")
        check_manifest_hash(self.manifest, manifest_path)
        for name in self.files:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ArtifactError(f"{manifest_path} lists {name!r}, which points outside the run folder {self.dir} "
                                    "(absolute or '..'); refusing to read this run")
        if not allow_version_mismatch:
            check_versions(self.manifest.get("versions", {}), manifest_path)

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        """The path of a file after checking its size and sha256 against the manifest."""
        entry = self.files.get(name)
        path = self.dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not inside(path, self.dir):
            raise ArtifactError(f"{self.dir / MANIFEST} lists {name!r}, which points outside the run folder "
                                f"{self.dir} (absolute, '..' or a symlink); refusing to read it")
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
    if not path.is_dir():
        # a mistyped --run is a usage error (exit 2), not a damaged run
        raise ConfigError(f"run folder {path} does not exist; give --run runs/<experiment>/<run_id> or "
                          "runs/<experiment> (its newest run)")
    if (path / MANIFEST).exists() or not (path / LATEST).exists():
        return path
    name = (path / LATEST).read_text().strip()
    try:
        check_run_name(name)
    except ConfigError:
        raise ArtifactError(f"{path / LATEST} names {name!r}, which is not a run folder of {path}; "
                            "give the run folder itself with --run") from None
    return path / name


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
    atomic_write_bytes(reader.dir / MANIFEST, manifest_bytes(manifest))
    return reader.dir
