"""Stage folders: the one writer every stage publishes through, and the verified reader.

A folder is built under a staging name and renamed to its final name only when complete, with a
manifest.json listing every file's sha256, so a finished folder is never half-written and an existing
one is never overwritten. Runs, selections, tuning studies, feature caches and ensemble members are
all such folders. Runs and selections stage in `<id>.partial/` (a run resumes from there) and move the
experiment's LATEST pointer; while one is written, its writer holds an flock on `.<id>.lock` beside it, so
a second writer (`--resume` while the first still runs) is refused. Cache entries stage in a private folder
per process, and when two processes build the same entry the first rename wins (both copies are identical).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import (
    LATEST,
    MANIFEST,
    PARTIAL_SUFFIX,
    atomic_write_bytes,
    check_manifest_hash,
    fsync_dir,
    inside,
    json_bytes,
    library_versions,
    manifest_bytes,
    parquet_bytes,
    remove_temp_files,
    sha256_file,
    write_error,
)
from .errors import ArtifactError, ConfigError
from .names import check_name
from .run_lock import RunLock, busy_error, lock_holder


def new_run_id(config_hash: str, kind: str = "") -> str:
    """A new folder id: UTC time to the second (ids sort by start), the config's hash, 8 random hex digits
    (two runs of one config started in the same second must not share a folder; 32 bits keep even a burst
    of ids apart, and RunWriter refuses the rare clash rather than overwrite), the kind (`ensemble`)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config_hash[:6]}-{secrets.token_hex(4)}" + (f"-{kind}" if kind else "")


def publish_files(
    final_dir: Path,
    files: dict[str, bytes],
    stage: str,
    extra: dict[str, Any],
    update_latest: bool = False,
    shared: bool = False,
) -> Path:
    """Publish a folder of files written in one go (a selection, a cache entry) through a RunWriter."""
    writer = RunWriter(final_dir, shared=shared)
    try:
        for name, data in files.items():
            writer.write_bytes(name, data)
        return writer.publish(extra, stage=stage, update_latest=update_latest)
    except BaseException:
        if shared:
            writer.discard()
        writer.release()
        raise


def staging_dir(final_dir: Path) -> Path:
    return Path(final_dir).with_name(Path(final_dir).name + PARTIAL_SUFFIX)


def check_new_run(final_dir: Path, resume: bool = False) -> None:
    """Refuse to write over an existing run, over one another process is writing, or to start over an
    unfinished one without --resume. A check before the data is loaded; RunWriter checks again under the lock."""
    final_dir = Path(final_dir)
    check_name(final_dir.name, "run folder name")
    holder = lock_holder(final_dir)
    if holder is not None:
        raise busy_error(final_dir, holder)
    check_folders(final_dir, resume)


def check_folders(final_dir: Path, resume: bool) -> None:
    """The folder rules of check_new_run, without the lock probe (RunWriter holds the lock when it calls this)."""
    staging = staging_dir(final_dir)
    if final_dir.exists():
        raise ConfigError(
            f"run folder {final_dir} already exists and is never overwritten; "
            "pass another --run-id or leave it out to get a new one"
        )
    if staging.exists() and not resume:
        raise ConfigError(
            f"an unfinished run is in {staging}; continue it with --resume "
            f"--run-id {final_dir.name}, or delete that folder to start over"
        )


def resumable_run(exp_dir: Path, what: str = "run", accept: Callable[[Path], bool] | None = None) -> Path:
    """For --resume without --run-id: the newest unfinished run (passing `accept`) no process is writing."""
    staged = sorted(p for p in Path(exp_dir).glob(f"*{PARTIAL_SUFFIX}") if accept is None or accept(p))
    busy = []
    for staging in reversed(staged):
        final_dir = staging.with_name(staging.name.removesuffix(PARTIAL_SUFFIX))
        holder = lock_holder(final_dir)
        if holder is None:
            return final_dir
        busy.append(f"{final_dir.name} ({holder})")
    if busy:
        raise ConfigError(
            f"--resume: every unfinished {what} in {exp_dir} is being written by another process: "
            + "; ".join(busy)
            + "; wait for them to finish, or start a new one without --resume"
        )
    raise ConfigError(f"--resume: no unfinished {what} in {exp_dir}; start a new one without --resume")


class RunWriter:
    """Writes the files of one stage folder into its staging folder, then publishes it atomically.

    shared=True is for cache entries that several processes may build at once: each stages in a
    folder of its own, and publishing loses the race quietly when another copy is already in place.
    """

    def __init__(self, final_dir: Path, resume: bool = False, shared: bool = False):
        self.final_dir = Path(final_dir)
        self.shared = shared
        self.lock = None if shared else RunLock(self.final_dir)
        if shared:
            self.staging = self.final_dir.with_name(f".{self.final_dir.name}.{os.getpid()}{PARTIAL_SUFFIX}")
            shutil.rmtree(self.staging, ignore_errors=True)
        else:
            self.staging = staging_dir(self.final_dir)
            check_name(self.final_dir.name, "run folder name")
        try:
            self.final_dir.parent.mkdir(parents=True, exist_ok=True)
            if self.lock is not None:
                self.lock.acquire()
                check_folders(self.final_dir, resume)  # again under the lock: another writer may have published
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.release()
            raise write_error(Path(exc.filename or self.staging), exc) from exc
        except BaseException:
            self.release()
            raise
        if resume:
            remove_temp_files(self.staging)  # a kill during an atomic write leaves its temp file behind

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def release(self) -> None:
        """Let another process write this run (a failed run, resumed later); publish and discard release too."""
        if self.lock is not None:
            self.lock.release()

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

    def link(self, name: str, source: Path) -> bool:
        """Hard-link an existing file in as `name` instead of writing it again; False when that cannot be
        done (another file system). Every gbpipe write replaces a file by rename, so a linked file is never
        changed under the other name."""
        target = self.path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
            return True
        except OSError:
            return False

    def discard(self) -> None:
        """Remove the staging folder (a shared entry that will not be published)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.release()

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
        try:
            os.replace(self.staging, self.final_dir)
        except OSError as exc:
            if not (self.shared and (self.final_dir / MANIFEST).is_file()):
                raise write_error(self.final_dir, exc) from exc
            self.discard()  # another process published the same entry first; its copy is as good as ours
        fsync_dir(self.final_dir.parent)
        if update_latest:
            atomic_write_bytes(self.final_dir.parent / LATEST, (self.final_dir.name + "\n").encode())
        self.release()
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
                raise ArtifactError(
                    f"{manifest_path} lists {name!r}, which points outside the run folder {self.dir} "
                    "(absolute or '..'); refusing to read this run"
                )
        if not allow_version_mismatch:
            check_versions(self.manifest.get("versions", {}), manifest_path)

    def has(self, name: str) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        """The path of a file after checking its size and sha256 against the manifest."""
        entry = self.files.get(name)
        path = self.dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not inside(path, self.dir):
            raise ArtifactError(
                f"{self.dir / MANIFEST} lists {name!r}, which points outside the run folder "
                f"{self.dir} (absolute, '..' or a symlink); refusing to read it"
            )
        if entry is None:
            raise ArtifactError(f"{path} is not listed in {self.dir / MANIFEST}; the run has no {name!r}")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the manifest lists it with sha256 {entry['sha256'][:12]}")
        size = path.stat().st_size
        if size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise ArtifactError(
                f"{path} does not match its manifest entry (size {size} vs {entry['size']}, "
                "or sha256 differs): the file was truncated or altered; retrain the run"
            )
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
            raise ArtifactError(
                f"{where} was made with {lib} {saved[lib]} but {current[lib]} is installed; "
                "major versions differ, so the models may load wrongly. Retrain, or pass "
                "--allow-version-mismatch to load anyway"
            )


def resolve_run_dir(path: Path) -> Path:
    """Accept a run folder, or an experiment folder whose LATEST names its newest run."""
    if not path.is_dir():
        # a mistyped --run is a usage error (exit 2), not a damaged run
        raise ConfigError(
            f"run folder {path} does not exist; give --run runs/<experiment>/<run_id> or "
            "runs/<experiment> (its newest run)"
        )
    if (path / MANIFEST).exists() or not (path / LATEST).exists():
        return path
    name = (path / LATEST).read_text().strip()
    try:
        check_name(name, LATEST)
    except ConfigError:
        raise ArtifactError(
            f"{path / LATEST} names {name!r}, which is not a run folder of {path}; "
            "give the run folder itself with --run"
        ) from None
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
            raise ArtifactError(
                f"{reader.dir / name} already exists (written by stage "
                f"{entry.get('stage', 'train')!r}) and is not replaced; earlier results stay untouched"
            )
    for name, data in files.items():
        atomic_write_bytes(reader.dir / name, data)
        manifest["files"][name] = file_entry(data, stage)
    atomic_write_bytes(reader.dir / MANIFEST, manifest_bytes(manifest))
    return reader.dir


def file_entry(data: bytes, stage: str) -> dict[str, Any]:
    """A manifest's entry for one file's bytes."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "stage": stage}


def update_in_place(folder: Path, files: dict[str, bytes], stage: str, extra: dict[str, Any]) -> None:
    """Rewrite a folder that lives on between calls (a tuning study's outputs): each file atomically, then a
    manifest over exactly these files. Callers serialise concurrent updates of one folder."""
    for name, data in files.items():
        atomic_write_bytes(Path(folder) / name, data)
    manifest = {"files": {name: file_entry(data, stage) for name, data in sorted(files.items())}, **extra}
    atomic_write_bytes(Path(folder) / MANIFEST, manifest_bytes(manifest))
