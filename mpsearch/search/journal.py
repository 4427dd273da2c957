"""The journal file's append lock: one that a dead process cannot keep, and a wait that ends.

Optuna's journal backend appends each operation under a lock object it is given. Its own
``JournalFileSymlinkLock`` creates ``FILE.lock`` as a symlink to the journal and, while it waits,
``stat``s the lock to see whether it changes. With a relative journal path the symlink dangles
(its target resolves against the lock's folder), the ``stat`` fails, and the waiter retries at once
forever: after a kill -9 inside an append, every later process spun at 100% CPU.

:class:`JournalLock` keeps the file protocol (a symlink ``FILE.lock`` made with one atomic
``symlink()``; whoever creates it holds the lock) and changes three things:

- **The holder is named** in the symlink's target: its host, pid, process namespace and start
  time (:mod:`mpsearch.search.workers.identity`). A lock whose holder is a process of this
  namespace that no longer exists is broken at once.
- **A lock whose holder cannot be checked** (another host sharing the file; a lock made by Optuna
  itself or an older mpsearch) is broken once it has stayed unchanged for ``grace_s`` seconds of
  this process's clock (appends hold it for milliseconds). A holder that was only paused and
  resumes finds its lock gone: it warns and leaves the new holder's lock alone.
- **A wait ends**: a lock that cannot be taken within ``stuck_after_s`` raises a one-line
  :class:`~mpsearch.errors.StorageError` naming the lock and its holder.

Once taken, the lock first cuts a torn last line (a writer killed mid-append), which would
otherwise glue onto this append and make the study unloadable; that is safe only under the lock.
Plain Optuna processes appending to the same journal see a target that is not a file and retry
until the lock is released; mpsearch never leaves one behind.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
import warnings
from pathlib import Path

from mpsearch.errors import StorageError

# How long a lock whose holder cannot be checked may stay unchanged before it is broken. Appends hold
# it for milliseconds; Optuna's default, 30 s, stalled every worker for 30 s after one died.
JOURNAL_LOCK_GRACE_S = 10.0
# How long a process waits for the lock before it reports the journal stuck (never reached while
# stale locks are broken; it bounds the wait when breaking is impossible).
JOURNAL_STUCK_S = 60.0

_HOLDER_MARK = "#mpsearch-lock-holder="


class JournalLock:
    """The append lock of journal ``path`` (see the module docstring), in the shape Optuna's
    ``JournalFileBackend(lock_obj=...)`` takes: ``acquire()`` and ``release()``. One per process and
    journal; Optuna's journal storage serialises its threads' appends, so it is never taken twice at once."""

    def __init__(self, path: str | os.PathLike[str], *, grace_s: float | None = None,
                 stuck_after_s: float | None = None):
        self.journal = os.path.abspath(path)
        self.lock_file = self.journal + ".lock"
        self.grace_s = JOURNAL_LOCK_GRACE_S if grace_s is None else grace_s
        self.stuck_after_s = JOURNAL_STUCK_S if stuck_after_s is None else stuck_after_s
        self._held: str | None = None  # the target of the lock this process holds
        self.broken: list[str] = []  # holders whose locks this process broke (for messages and tests)

    def _my_target(self) -> str:
        from mpsearch.search.workers.identity import this_worker

        me = this_worker()
        holder = {"host": me.host, "pid": me.pid, "token": me.token, "namespace": me.namespace,
                  "started": me.started, "nonce": uuid.uuid4().hex[:8]}
        return self.journal + _HOLDER_MARK + json.dumps(holder, separators=(",", ":"))

    def acquire(self) -> bool:
        target = self._my_target()
        start = time.monotonic()
        delay = 0.001
        seen: tuple | None = None
        seen_since = start
        while True:
            try:
                os.symlink(target, self.lock_file)
            except FileExistsError:
                pass
            else:
                self._held = target
                try:
                    repair_torn_journal(Path(self.journal))
                except BaseException:  # an interrupt or an I/O error: the caller never gets the lock
                    self.release()
                    raise
                return True
            state = _lock_state(self.lock_file)
            if state is None:
                continue  # released meanwhile: try again at once
            now = time.monotonic()
            if state != seen:
                seen, seen_since = state, now
            holder = _holder(state[0])
            if holder is not None and holder.is_gone():
                self._break(state, f"{holder.label} no longer exists")
                continue
            if now - seen_since > self.grace_s:
                self._break(state, f"unchanged for more than {self.grace_s:g} s")
                continue
            if now - start > self.stuck_after_s:
                who = holder.label if holder is not None else "a process that does not name itself"
                raise StorageError(
                    f"storage journal:{self.journal} is stuck: its lock {self.lock_file} was not free for "
                    f"{self.stuck_after_s:g} s (held by {who}); if no process uses this journal, delete {self.lock_file}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        target, self._held = self._held, None
        state = _lock_state(self.lock_file)
        if target is None or state is None or state[0] != target:
            warnings.warn(f"this process's lock on journal {self.journal} was broken while it held it "
                          f"(it was paused longer than {self.grace_s:g} s); its append went through")
            return
        self._take_away(state)

    def _break(self, state: tuple, why: str) -> None:
        if self._take_away(state):
            holder = _holder(state[0])
            self.broken.append(holder.label if holder is not None else state[0])
            warnings.warn(f"journal {self.journal}: broke a lock left by "
                          f"{holder.label if holder is not None else 'an unnamed holder'} ({why})")

    def _take_away(self, state: tuple) -> bool:
        """Remove the lock if it is still the one described by ``state``; True if it was."""
        aside = f"{self.lock_file}.{uuid.uuid4().hex}.broken"
        try:
            os.rename(self.lock_file, aside)
        except FileNotFoundError:
            return False
        if _lock_state(aside) != state:
            # Another process broke or released that lock and took a new one meanwhile: put it back.
            try:
                os.link(aside, self.lock_file, follow_symlinks=False)
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True


class ReadOnlyJournalLock:
    """For a journal opened to be read: any append is refused with one line."""

    def __init__(self, path: str | os.PathLike[str]):
        self.journal = os.path.abspath(path)

    def acquire(self) -> bool:
        raise StorageError(f"storage journal:{self.journal} was opened read-only; nothing may be written to it")

    def release(self) -> None:
        pass


def _lock_state(lock_file: str) -> tuple | None:
    """(target, inode, modification time) of the lock, which tell one lock from the next (a rename
    keeps all three); None if absent."""
    try:
        st = os.lstat(lock_file)
    except FileNotFoundError:
        return None
    try:
        target = os.readlink(lock_file)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        target = ""  # a plain file: Optuna's JournalFileOpenLock
    return target, st.st_ino, st.st_mtime_ns


def _holder(target: str):  # noqa: ANN202 - WorkerIdentity | None, imported lazily
    """The worker named in a lock's target, or None for a lock that names none."""
    from mpsearch.search.workers.identity import WorkerIdentity

    _, mark, data = target.partition(_HOLDER_MARK)
    if not mark:
        return None
    try:
        holder = json.loads(data)
        return WorkerIdentity(str(holder["host"]), int(holder["pid"]), str(holder["token"]),
                              holder.get("namespace"), holder.get("started"))
    except (ValueError, KeyError, TypeError):
        return None


def repair_torn_journal(path: Path) -> int:
    """Cut a journal's last line if a crash left it half-written; returns the bytes removed.

    A torn last line would glue onto the next append and make the whole study unloadable. The torn
    bytes are an operation that never completed, so no finished trial is in them; they are kept
    beside the journal (``.torn``) for inspection. The caller holds the journal's lock: without it,
    a line another worker is appending right now looks torn.
    """
    try:
        fh = open(path, "rb+")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
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
