"""Where a tuning study lives: the journal file in the study folder (one machine, flock-guarded), or any
SQLAlchemy database (several machines); and the one place storage URLs are redacted for messages and files,
so no password given in a URL is ever printed or stored."""

from __future__ import annotations

import fcntl
import re
import time
from pathlib import Path
from urllib.parse import unquote, unquote_plus

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from pipeline.core.errors import ConfigError

JOURNAL_FILE = "study.journal"


def open_storage(storage: str | None, study_dir: Path) -> BaseStorage:
    """The journal file in the study folder by default; a SQLAlchemy URL or another journal path if given."""
    if storage is None or "://" not in storage:
        path = Path(storage) if storage else study_dir / JOURNAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(path)))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    check_storage_url(storage)
    for attempt in range(6):
        try:
            return RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError) as exc:
            # Workers started together on an empty database race to create Optuna's tables; the losers
            # retry once the winner is done.
            error = exc
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:  # SQLAlchemy and drivers raise many kinds; all mean "cannot use it"
            error = exc
            break
    raise ConfigError(
        f"--storage {redact(storage)}: cannot open the database ({type(error).__name__}: "
        f"{scrub(str(error).splitlines()[0], storage)}); check the URL, the server and the driver "
        "(postgresql+psycopg2://user@host:5432/db, the password in PGPASSWORD or ~/.pgpass)"
    ) from None


class FlockLock:
    """The journal's write lock as an flock on `<journal>.flock`.

    The kernel drops it when its process dies, so a worker killed while appending (kill -9) cannot
    leave a stale lock behind (Optuna's own lock files are only broken after a 30 s grace period).
    """

    def __init__(self, journal: Path):
        self.path = Path(str(journal) + ".flock")
        self._handle = None

    def acquire(self) -> bool:
        handle = open(self.path, "a")  # held until release()
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle
        return True

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


# ---- credentials in storage URLs ----
_USERINFO = re.compile(r"[^:/]*(?::[^@]*)?@")  # SQLAlchemy's: the user stops at ':' or '/', the password at '@'
_SECRET_KEY = re.compile(r"password|passwd|secret|token|^pwd$", re.IGNORECASE)
MASK = "***"


def _split_url(url: str) -> tuple[str, str | None, str, list[str] | None] | None:
    """(scheme, userinfo, host and path, query items) of a URL, None for a path. An '@' that SQLAlchemy
    would read as part of the host (unencoded in the password) belongs to the userinfo here, so all of
    the intended password is covered."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = -1
    if match := _USERINFO.match(rest):
        mark = rest.find("?", match.end())
        end = max(match.end() - 1, rest.rfind("@", 0, mark if mark >= 0 else len(rest)))
    body, qsep, query = rest[end + 1 :].partition("?")
    return scheme, rest[:end] if end >= 0 else None, body, query.split("&") if qsep else None


def _secret_item(item: str) -> bool:
    return _SECRET_KEY.search(unquote_plus(item.partition("=")[0])) is not None


def redact(url: str) -> str:
    """The URL with *** for the userinfo's password and for every query parameter named like password,
    secret or token (percent-encoded names too): what messages and output files show."""
    if (parts := _split_url(url)) is None:
        return url
    scheme, userinfo, body, items = parts
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        body = f"{user}{':' + MASK if colon else ''}@{body}"
    if items is not None:
        body += "?" + "&".join(f"{i.partition('=')[0]}={MASK}" if _secret_item(i) else i for i in items)
    return f"{scheme}://{body}"


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message) with every credential of `url` masked: as written, percent-decoded,
    and its pieces split at '@' and ':' (a driver that misreads the URL quotes pieces; pieces under 3
    characters are left, or the message would be masked letter by letter)."""
    if (parts := _split_url(url)) is None:
        return text
    _, userinfo, _, items = parts
    raw = [(userinfo or "").partition(":")[2]] + [i.partition("=")[2] for i in items or [] if _secret_item(i)]
    found: set[str] = set()
    for form in (f for secret in filter(None, raw) for f in (secret, unquote(secret), unquote_plus(secret))):
        found.update([form, *(p for p in re.split(r"[@:]", form) if len(p) >= 3)])
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def check_storage_url(url: str | None) -> None:
    """Refuse, before connecting, a password holding an unencoded '@': SQLAlchemy would cut it there and
    look the rest up as the host name."""
    parts = _split_url(url) if url else None
    if parts and parts[1] and "@" in parts[1]:
        raise ConfigError(
            f"--storage {redact(url)}: the user:password part holds an unencoded '@', so the password would "
            "be cut there; leave the password out of the URL and set PGPASSWORD or a ~/.pgpass line (libpq "
            "reads both), or percent-encode each '@' in it as %40"
        )
