"""A plug-in objective's own process: whatever the plug-in does, only its trial fails.

A plug-in is user Python. Run in the search's process, ``sys.exit(3)`` ended the whole search,
a raised KeyboardInterrupt read as the user's Ctrl-C, a crash in native code took the study's
process with it, and a hang could only be abandoned in a thread. :class:`PluginProcess` runs it in
a child (:mod:`mpsearch.objectives.plugin_child`), started once and kept for every call, since
starting one per trial would cost an interpreter start per measurement:

- a call that raises anything (SystemExit and KeyboardInterrupt included) fails its trial with
  the reason, and the child goes on;
- a child that dies (a segfault, ``os._exit``) fails the trial with its exit status; the next call
  starts a new child;
- a call running past its timeout fails the trial, and the child (with anything it started) is
  killed; the next call starts a new one.

The child is started in a session of its own, so a Ctrl-C in the terminal reaches only the search
process; it is killed when the objective is closed or garbage-collected, when the search process
exits, and (Linux) by the kernel if the search process is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

from mpsearch.errors import InvalidSpecError, ObjectiveError

_MPSEARCH_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
         "from mpsearch.objectives.plugin_child import main; main()")


def _stop(proc: subprocess.Popen, requests: Any, answers: Any) -> None:
    """Kill a child and everything it started, and reap it."""
    for conn in (requests, answers):
        try:
            conn.close()
        except OSError:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _exit_status(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class PluginProcess:
    """The child process of one plug-in (``target``, ``package.module:function``) for ``network``.

    :meth:`start` imports the plug-in there (InvalidSpecError, one line, if it cannot be imported);
    :meth:`call` runs it on one configuration within a timeout and returns its value: a float, or
    ``(type name, repr)`` of a value that is not a number; ObjectiveError for anything else."""

    def __init__(self, name: str, target: str, network: Any):
        self.name, self.target, self.network = name, target, network
        self.started = 0  # children started: one, plus one after each crash or timeout
        self._proc: subprocess.Popen | None = None
        self._finalizer: Any = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout_s: float | None = None) -> None:
        from multiprocessing.connection import Connection

        self.close()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _MPSEARCH_ROOT, str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w), start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        requests, answers = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
        self._proc, self._requests, self._answers = proc, requests, answers
        self._finalizer = weakref.finalize(self, _stop, proc, requests, answers)
        self.started += 1
        requests.send((list(sys.path), self.target, self.network.to_dict()))
        answer = self._answer(timeout_s, "importing it")
        if answer[0] != "ready":
            self.close()
            raise InvalidSpecError(answer[1] if answer[0] == "error" else f"objective {self.target!r}: {answer}")

    def call(self, formats: tuple[str, ...], timeout_s: float | None, shown: str) -> float | tuple[str, str]:
        """The plug-in's value on ``formats`` (``shown`` names the configuration in messages)."""
        if self._proc is None or self._proc.poll() is not None:
            self.start(timeout_s)
        try:
            self._requests.send(tuple(formats))
        except OSError:
            pass  # the child is gone: the answer below says how
        answer = self._answer(timeout_s, f"on {shown}")
        if answer[0] == "value":
            return answer[1]
        if answer[0] == "not a number":
            return answer[1], answer[2]
        raise ObjectiveError(f"objective {self.name} ({self.target}) {answer[1]}")

    def _answer(self, timeout_s: float | None, doing: str) -> tuple:
        """The child's next answer; ObjectiveError when it dies or runs past ``timeout_s``."""
        if not self._answers.poll(timeout_s):
            self.close()
            raise ObjectiveError(
                f"objective {self.name} ({self.target}) did not return within {timeout_s:g} s {doing}; its "
                f"process was stopped; raise --objective-timeout if it needs longer"
            )
        try:
            return self._answers.recv()
        except (EOFError, OSError):
            proc = self._proc
            try:
                code = proc.wait(timeout=5) if proc is not None else None
            except subprocess.TimeoutExpired:
                code = None
            self.close()
            raise ObjectiveError(f"objective {self.name} ({self.target}): its process {_exit_status(code)} "
                                 f"{doing}; a new one is started for the next trial") from None

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._proc = None
