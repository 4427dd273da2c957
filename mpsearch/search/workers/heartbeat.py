"""A running trial's heartbeat: the sign of life a sweep reads (see :mod:`.sweep`)."""

from __future__ import annotations

import threading
import time
from typing import Any

HEARTBEAT_ATTR = "heartbeat"  # unix time of the last sign of life of the trial's worker
DEFAULT_HEARTBEAT_S = 10.0


class Heartbeat:
    """A daemon thread writing ``time.time()`` into a RUNNING trial's ``heartbeat`` attribute.

    :meth:`stop` must be called before the trial is told: a finished trial refuses attributes.
    A write that fails (storage briefly unreachable) is retried at the next beat: a missed beat only
    brings the trial closer to being swept, it loses nothing.
    """

    def __init__(self, trial: Any, interval_s: float):
        self.trial, self.interval_s = trial, interval_s
        self._stop = threading.Event()
        self.beats = self.missed = 0
        self._beat()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.number}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            self.beats += 1
        except Exception:  # noqa: BLE001 - see the class docstring: retried at the next beat
            self.missed += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
