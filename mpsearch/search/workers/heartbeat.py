"""A running trial's heartbeat: the sign of life a sweep reads (see :mod:`.sweep`)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from mpsearch.search import attrs

HEARTBEAT_ATTR = attrs.HEARTBEAT  # unix time of the last sign of life of the trial's worker
DEFAULT_HEARTBEAT_S = 5.0


class Heartbeat:
    """A daemon thread writing ``time.time()`` into a RUNNING trial's ``heartbeat`` attribute.

    :meth:`stop` must be called before the trial is told: a finished trial refuses attributes.
    A write that fails (storage briefly unreachable) is retried at the next beat: a missed beat only
    brings the trial closer to being swept, it loses nothing. ``beat_now`` writes the first beat
    before returning (unneeded when the trial was created with one); ``after_beat`` runs in the
    thread after every beat (the worker's sweep, so that it goes on during a long measurement); what
    it raises is counted in ``after_beat_errors``, never stops the beats.
    """

    def __init__(self, trial: Any, interval_s: float, *, beat_now: bool = True,
                 after_beat: Callable[[], Any] | None = None):
        self.trial, self.interval_s, self.after_beat = trial, interval_s, after_beat
        self._stop = threading.Event()
        self.beats = self.missed = self.after_beat_errors = 0
        if beat_now:
            self._beat()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.number}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            # Straight to the storage, not through the trial: the search loop keeps the trial's own
            # writes until it flushes them (mpsearch.search.writes), a beat must not wait for that.
            self.trial.study._storage.set_trial_user_attr(self.trial._trial_id, HEARTBEAT_ATTR, time.time())
            self.beats += 1
        except Exception:  # noqa: BLE001 - see the class docstring: retried at the next beat
            self.missed += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()
            if self.after_beat is not None and not self._stop.is_set():
                try:
                    self.after_beat()
                except Exception:  # noqa: BLE001 - a failed sweep is tried again at the next beat
                    self.after_beat_errors += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
