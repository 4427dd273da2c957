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
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

from mpsearch.errors import StorageError

STUDIES_DIR = Path("studies")

SQLITE, JOURNAL, RDB, REDIS = "sqlite", "journal", "rdb", "redis"

# How long a database write may wait for a lock, or a server for an answer, before the storage is
# reported stuck in one line (a PostgreSQL row lock held by a paused worker, a server that stopped
# answering). Dead clients' locks are released by the server at once; this bounds the rest.
STORAGE_STUCK_S = 60.0
CONNECT_TIMEOUT_S = 10

# How long a SQLite write waits for another process's lock before giving up. Python's default (5 s)
# is kept: long enough for a reader to finish, short enough that a stuck lock is reported.
SQLITE_BUSY_TIMEOUT_S = 5.0


def default_storage_url(study_name: str) -> str:
    """``sqlite:///studies/NAME.db``; InvalidSpecError for a name that could point outside studies/."""
    from mpsearch.validation import check_study_name

    return f"sqlite:///{STUDIES_DIR / (check_study_name(study_name) + '.db')}"


def default_journal_url(study_name: str) -> str:
    """``journal:studies/NAME.log`` (several processes on one host), with studies/ created."""
    from mpsearch.validation import check_study_name

    check_study_name(study_name)
    STUDIES_DIR.mkdir(parents=True, exist_ok=True)
    return f"journal:{STUDIES_DIR / (study_name + '.log')}"


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


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal:").removeprefix("//"))


def _open_journal(url: str, read_only: bool = False) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from mpsearch.search.journal import JournalLock, ReadOnlyJournalLock

    # Absolute: the lock names the journal by path, and a relative one would change meaning with
    # the folder a process runs in.
    path = journal_path(url).absolute()
    if not path.parent.exists():
        raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
    if path.is_dir():
        raise StorageError(f"storage {url}: {path} is a folder; give a file name, e.g. journal:{path / 'study.log'}")
    if read_only:
        if not path.is_file():
            raise StorageError(f"storage {url}: no journal file {path}; give the right --storage")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=ReadOnlyJournalLock(path)))
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalLock(path)))


def _open_redis(url: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalRedisBackend

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", [""])[-1]
    # A server that stops answering is reported, not waited for forever (unless the URL says otherwise).
    query.setdefault("socket_connect_timeout", [str(CONNECT_TIMEOUT_S)])
    query.setdefault("socket_timeout", [str(STORAGE_STUCK_S)])
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


def _open_rdb(url: str, read_only: bool = False) -> Any:
    import optuna

    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise StorageError(f"storage {url}: a SQLite URL has three slashes: sqlite:///relative.db or sqlite:////abs/path.db")
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:" and not path.parent.exists():
            if path.parent == STUDIES_DIR and not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        if read_only and str(path) != ":memory:":
            if not path.is_file():
                raise StorageError(f"storage {url}: no database file {path}; give the right --storage")
            # SQLite refuses every write on this connection, so reading cannot change the study.
            url = f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if url.startswith(("postgresql", "postgres:")):
            options = f"-c lock_timeout={int(STORAGE_STUCK_S * 1000)}"
            if read_only:
                options += " -c default_transaction_read_only=on"
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S, "options": options}
    return optuna.storages.RDBStorage(_rdb_url(url), engine_kwargs=engine_kwargs)


def open_storage(url: str, *, read_only: bool = False) -> Any:
    """An Optuna storage for ``url``; StorageError (one line) if it cannot be opened.

    ``read_only`` (reports): nothing is created, and SQLite, journal and PostgreSQL storages refuse
    every write, so reading a study can neither change it nor need write access to it."""
    kind = storage_kind(url)
    try:
        if kind == JOURNAL:
            return _open_journal(url, read_only)
        if kind == REDIS:
            return _open_redis(url)
        return _open_rdb(url, read_only)
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
