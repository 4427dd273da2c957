"""Opening Optuna storages from a URL, with one-line errors.

- ``sqlite:///path.db`` (the default, ``studies/<name>.db``): one process at a time.
- ``journal:PATH`` (or a path ending in ``.log`` / ``.journal``): Optuna's journal file, several
  processes on one host.
- ``postgresql://...`` / ``mysql://...``: an RDB server, several hosts.
- ``redis://host:port/db``: Optuna's journal on Redis, several hosts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mpsearch.errors import StorageError

STUDIES_DIR = Path("studies")


def default_storage_url(study_name: str) -> str:
    return f"sqlite:///{STUDIES_DIR / (study_name + '.db')}"


def repair_torn_journal(path: Path) -> int:
    """Cut a journal's last line if a crash left it half-written; returns the bytes removed.

    A torn last line would glue onto the next append and make the whole study unloadable
    (OPTUNA.md). The torn bytes are an operation that never completed, so no finished trial is in
    them; they are kept beside the journal (``.torn``) for inspection.
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


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``; StorageError (one line) if it cannot be opened."""
    import optuna

    try:
        if url.startswith("journal:") or url.endswith((".log", ".journal")):
            path = Path(url.removeprefix("journal:").removeprefix("//"))
            if not path.parent.exists():
                raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
            repair_torn_journal(path)
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("redis://"):
            from optuna.storages.journal import JournalRedisBackend

            backend = JournalRedisBackend(url)
            backend._redis.ping()  # fail now, with a clear message, rather than at the first write
            return optuna.storages.JournalStorage(backend)
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) != ":memory:" and not path.parent.exists():
                if path.parent == STUDIES_DIR:
                    path.parent.mkdir(parents=True, exist_ok=True)
                else:
                    raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or fix the path")
        if "://" not in url:
            raise StorageError(
                f"storage {url!r} is not a URL: use sqlite:///file.db, journal:file.log, postgresql://..., or redis://..."
            )
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None
        )
    except StorageError:
        raise
    except ImportError as err:
        what = f"the Python package {err.name!r}" if err.name else "a database driver (psycopg for PostgreSQL, redis for Redis)"
        raise StorageError(f"storage {url}: needs {what}: pip install 'mpsearch[distributed]'") from None
    except Exception as err:  # SQLAlchemy, redis and OS errors: one line, with the cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"storage {url} cannot be opened: {first}") from None
