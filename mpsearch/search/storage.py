"""Opening Optuna storages from a URL, with one-line errors.

- ``sqlite:///path.db`` (the default, ``studies/<name>.db``): one process at a time.
- ``journal:PATH`` (or a path ending in ``.log`` / ``.journal``): Optuna's journal file, several
  processes on one host.
- ``postgresql://user@host:port/db`` / ``mysql://...``: an RDB server, several hosts. PostgreSQL is
  reached through psycopg2 when it is installed, else psycopg 3 (the ``distributed`` extra).
- ``redis://host:port/db``: Optuna's journal on Redis, several hosts. ``?prefix=NAME`` keeps the
  journal under its own keys (several independent journals in one Redis database).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from mpsearch.errors import StorageError

STUDIES_DIR = Path("studies")

SQLITE, JOURNAL, RDB, REDIS = "sqlite", "journal", "rdb", "redis"

# A journal's lock file is a symlink created for each append (milliseconds) and removed after it. A
# writer killed while holding it leaves it behind, and every worker waits until it is this old
# before breaking it; Optuna's default, 30 s, stalled all workers for 30 s after a kill -9.
JOURNAL_LOCK_GRACE_S = 10

# How long a SQLite write waits for another process's lock before giving up. Python's default (5 s)
# is kept: long enough for a reader to finish, short enough that a stuck lock is reported.
SQLITE_BUSY_TIMEOUT_S = 5.0


def default_storage_url(study_name: str) -> str:
    return f"sqlite:///{STUDIES_DIR / (study_name + '.db')}"


def storage_kind(url: str) -> str:
    """SQLITE, JOURNAL, RDB or REDIS; StorageError for a string that is none of them."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        return JOURNAL
    if url.startswith("redis://") or url.startswith("rediss://"):
        return REDIS
    if url.startswith("sqlite:"):
        return SQLITE
    if "://" in url:
        return RDB
    raise StorageError(
        f"storage {url!r} is not a URL: use sqlite:///file.db, journal:file.log, postgresql://..., or redis://..."
    )


def check_parallel(url: str, processes: int) -> None:
    """Refuse a storage that cannot take ``processes`` writers at once (SQLite), naming the fix."""
    if processes > 1 and storage_kind(url) == SQLITE:
        raise StorageError(
            f"storage {url} is SQLite, which takes one process at a time, but {processes} workers were asked for: "
            "use --storage journal:studies/NAME.log on one host, or postgresql://... / redis://... across hosts"
        )


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def repair_torn_journal(path: Path) -> int:
    """Cut a journal's last line if a crash left it half-written; returns the bytes removed.

    A torn last line would glue onto the next append and make the whole study unloadable
    (OPTUNA.md). The torn bytes are an operation that never completed, so no finished trial is in
    them; they are kept beside the journal (``.torn``) for inspection. The caller holds the
    journal's lock: without it, a line another worker is appending right now looks torn.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return 0
        # Find the last newline (read backwards in blocks: journals can be large).
        pos, block = size, 65536
        cut = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                cut = start + idx + 1
                break
            pos = start
        fh.seek(cut)
        torn = fh.read()
        with open(str(path) + ".torn", "ab") as side:
            side.write(torn + b"\n")
        fh.truncate(cut)
        return size - cut


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal:").removeprefix("//"))


def _open_journal(url: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    path = journal_path(url)
    if not path.parent.exists():
        raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
    if path.is_dir():
        raise StorageError(f"storage {url}: {path} is a folder; give a file name, e.g. journal:{path / 'study.log'}")
    # The same lock Optuna's appends take: a worker starting while another appends must not
    # mistake the line being written for a torn one.
    lock = JournalFileSymlinkLock(str(path), grace_period=JOURNAL_LOCK_GRACE_S)
    lock.acquire()
    try:
        repair_torn_journal(path)
    finally:
        lock.release()
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def _open_redis(url: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalRedisBackend

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", [""])[-1]
    plain = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    with warnings.catch_warnings():
        # Optuna marks the Redis journal experimental; mpsearch pins its behaviour in
        # tests/test_distributed.py, so every worker's start need not repeat the warning.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = JournalRedisBackend(plain, prefix=prefix)
    backend._redis.ping()  # fail now, with a clear message, rather than at the first write
    return optuna.storages.JournalStorage(backend)


def _rdb_url(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's psycopg2 dialect; use psycopg 3 when only it is here."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        rest = url.split("://", 1)[1]
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        return f"postgresql://{rest}"
    return url


def _open_rdb(url: str) -> Any:
    import optuna

    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise StorageError(f"storage {url}: a SQLite URL has three slashes: sqlite:///relative.db or sqlite:////abs/path.db")
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:" and not path.parent.exists():
            if path.parent == STUDIES_DIR:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(_rdb_url(url), engine_kwargs=engine_kwargs)


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``; StorageError (one line) if it cannot be opened."""
    kind = storage_kind(url)
    try:
        if kind == JOURNAL:
            return _open_journal(url)
        if kind == REDIS:
            return _open_redis(url)
        return _open_rdb(url)
    except StorageError:
        raise
    except ImportError as err:
        what = f"the Python package {err.name!r}" if err.name else "a database driver (psycopg for PostgreSQL, redis for Redis)"
        raise StorageError(f"storage {redacted(url)}: needs {what}: pip install 'mpsearch[distributed]'") from None
    except Exception as err:  # SQLAlchemy, redis and OS errors: one line, with the cause
        raise StorageError(storage_failure(url, err)) from None


def storage_failure(url: str, err: BaseException) -> str:
    """One line saying why ``url`` failed with ``err``, and what to do about it."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if "database is locked" in text:
        return (f"storage {redacted(url)} is locked by another process (SQLite takes one writer at a time): "
                "stop the other process, or share studies through journal:FILE, postgresql://... or redis://...")
    return f"storage {redacted(url)} cannot be opened: {first}"


def storage_errors_to_one_line(url: str, err: BaseException) -> StorageError | None:
    """A StorageError for a database/Redis/file error raised mid-search, or None for other errors."""
    cause: BaseException | None = err
    while cause is not None:  # Optuna wraps a failed commit in StorageInternalError: look inside
        names = {c.__module__.split(".")[0] for c in type(cause).__mro__}
        if names & {"sqlalchemy", "redis", "psycopg2", "psycopg"} or isinstance(cause, OSError):
            break
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        err = cause
        text = storage_failure(url, err).replace("cannot be opened", "failed during the search")
        return StorageError(f"{text}; every trial finished before it is stored: continue with "
                            f"`mpsearch resume` (--storage {redacted(url)})")
    return None
