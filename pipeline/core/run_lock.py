"""The lock on a run folder being written: an flock on `.<id>.lock` beside its staging folder.

A run's writer holds it from start to publish, so a second writer of the same run (`train --resume` while
the first still runs) is refused instead of writing into the same `<id>.partial` folder, and `--resume`
without an id skips runs that are still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigError

LOCK_SUFFIX = ".lock"
LOCK_PATIENCE = 0.5  # seconds a writer retries a lock held by a probe (lock_holder holds it for an instant)


def lock_path(final_dir: Path) -> Path:
    """Beside the staging folder, not in it: publishing renames the staging folder, and the lock must not
    move into the published run (nor be listed by its manifest)."""
    return Path(final_dir).with_name(f".{Path(final_dir).name}{LOCK_SUFFIX}")


def _describe_holder(fd: int) -> str:
    """The lock holder's own description (pid, host, start), which it writes after locking."""
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    return "pid unknown: it has only just started"


def lock_holder(final_dir: Path) -> str | None:
    """Who is writing the run (see _describe_holder), or None when no live process holds its lock."""
    try:
        fd = os.open(lock_path(final_dir), os.O_RDONLY)
    except OSError:  # no lock file: never locked, or published since
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return _describe_holder(fd)
    finally:
        os.close(fd)


def busy_error(final_dir: Path, holder: str) -> ConfigError:
    name = Path(final_dir).name
    return ConfigError(
        f"run {name} is being written by another process ({holder}; lock {lock_path(final_dir)}); wait for it "
        f"to finish, or stop that process and continue the run with --resume --run-id {name}, or leave "
        "--run-id out to start a new run"
    )


class RunLock:
    """An exclusive flock on `.<id>.lock`, held while the run is written. The kernel drops it when the
    process dies, so a killed run never leaves a lock that blocks its resume; the file left behind is
    harmless and is locked again by the resuming writer."""

    def __init__(self, final_dir: Path):
        self.final_dir = Path(final_dir)
        self.path = lock_path(final_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(fd)
                os.close(fd)
                if time.monotonic() > deadline:
                    raise busy_error(self.final_dir, holder) from None
                time.sleep(0.05)
                continue
            if self._same_file(fd):
                break
            os.close(fd)  # its holder removed the file between our open and our lock: lock the new one
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode(), 0)
        self._fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the file while still holding the lock (a waiting writer then sees another inode and
        retries), then unlock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(fd)
