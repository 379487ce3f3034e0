"""Artifacts: atomic writes (temp file, fsync, rename), deterministic serialisation, manifests that carry
their own hash, and the one rule for names that become paths. Run folders are core/run_folder.py."""

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

from .errors import ArtifactError
from .version import __version__

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
    return ArtifactWriteError(
        f"could not write {path}: {reason} (errno {exc.errno}); nothing was replaced and "
        "no temp file is left behind. Free space or fix permissions, then rerun "
        "(`gbpipe train --resume` keeps the finished folds)",
        exc.errno,
    )


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
        raise ArtifactError(
            f"{where} was altered after it was written (its {SELF_HASH} does not match its "
            "content): the run cannot be trusted; retrain it"
        )


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

    return {
        "gbpipe": __version__,
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }
