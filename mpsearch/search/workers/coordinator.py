"""The coordinator: everything the search loop calls so that several workers can share a study."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mpsearch.errors import InvalidSpecError
from mpsearch.objectives import DEFAULT_OBJECTIVE_TIMEOUT_S, PluginObjective
from mpsearch.search.workers.accounting import measurement_counts
from mpsearch.search.workers.ask import ask_owned
from mpsearch.search.workers.heartbeat import DEFAULT_HEARTBEAT_S, HEARTBEAT_ATTR, Heartbeat
from mpsearch.search.workers.identity import GPU_ATTR, WORKER_INDEX_ATTR, WorkerIdentity, gpu_identity, this_worker
from mpsearch.search.workers.sweep import DEFAULT_STALE_AFTER_S, SweptTrial, requeue_owed, sweep_stale_trials


@dataclass
class Coordinator:
    """Everything the search loop does so that several workers can share a study safely.

    One per worker process. ``heartbeat_s`` and ``stale_after_s`` set the heartbeat and the sweep
    (see the package docstring); ``objective_timeout_s`` bounds each plug-in objective; ``index``
    is the worker's index (recorded on its trials; seeds are offset by it); ``study_budget`` stops
    the worker when the study as a whole has spent that many measurements; ``worker`` is who this
    worker is (this process, unless a test stands in for another).
    """

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    objective_timeout_s: float | None = DEFAULT_OBJECTIVE_TIMEOUT_S
    index: int | None = None
    study_budget: int | None = None
    worker: WorkerIdentity = field(default_factory=this_worker)
    swept: list[SweptTrial] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)  # swept trials whose lost re-measurement this worker queued
    _last_sweep: float = float("-inf")
    _last_debt_check: float = float("-inf")
    _sweeping: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        check_timing(self.heartbeat_s, self.stale_after_s, self.objective_timeout_s)

    def sweep(self, study: Any, force: bool = False) -> list[SweptTrial]:
        """Sweep dead workers' trials, at most once per heartbeat interval (always with ``force``).

        Called between trials by the search loop and after every beat by the heartbeat thread, so a
        dead worker's trial is found within ``stale_after_s`` plus one interval even while every live
        worker is busy measuring."""
        with self._sweeping:
            now = time.monotonic()
            if not force and now - self._last_sweep < self.heartbeat_s:
                return []
            self._last_sweep = now
            done = sweep_stale_trials(study, self.stale_after_s, me=self.worker)
            self.swept += done
            # Debts a sweeper killed mid-sweep left: rarer, and a look at every trial, so less often.
            if force or now - self._last_debt_check >= self.stale_after_s:
                self._last_debt_check = now
                self.requeued += requeue_owed(study, older_than_s=self.heartbeat_s)
            return done

    def trial_attrs(self) -> dict[str, Any]:
        """Attributes naming this worker and the GPU it is pinned to, for every trial it runs."""
        attrs: dict[str, Any] = {**self.worker.attrs(), GPU_ATTR: gpu_identity()}
        if self.index is not None:
            attrs[WORKER_INDEX_ATTR] = self.index
        return attrs

    def ask(self, study: Any) -> Any:
        """The next trial, owned by this worker (and with a first heartbeat) from the moment it exists."""
        return ask_owned(study, {**self.trial_attrs(), HEARTBEAT_ATTR: time.time()})

    def heartbeat(self, trial: Any) -> Heartbeat:
        """Beat for ``trial`` (asked with :meth:`ask`, which wrote the first beat) and sweep after each beat."""
        return Heartbeat(trial, self.heartbeat_s, beat_now=False, after_beat=lambda: self.sweep(trial.study))

    def study_budget_reason(self, study: Any) -> str | None:
        """Why the shared budget is spent, or None when this worker should measure another configuration.

        While the measurements other workers have in flight would complete the budget, this waits
        (sweeping) instead of stopping: if one of those workers dies, its trial is swept and queued
        again, and this worker measures it, so the study is not left one measurement short. Two
        workers checking at the same instant may both start one, so the study can end up to
        (workers - 1) measurements over its budget."""
        if self.study_budget is None:
            return None
        while True:
            finished, in_flight = measurement_counts(study)
            if finished >= self.study_budget:
                return f"study budget reached ({self.study_budget} measurements across all workers)"
            if finished + in_flight < self.study_budget:
                return None
            time.sleep(self.heartbeat_s / 4)
            self.sweep(study)

    def evaluate(self, objective: Any, network: Any, config: Any) -> Any:
        """``objective.evaluate``; a plug-in's within ``objective_timeout_s`` (it runs in its own process)."""
        if isinstance(objective, PluginObjective):
            return objective.evaluate(network, config, timeout_s=self.objective_timeout_s)
        return objective.evaluate(network, config)


def check_timing(heartbeat_s: float, stale_after_s: float, objective_timeout_s: float | None = None) -> None:
    if not heartbeat_s > 0:
        raise InvalidSpecError(f"--heartbeat must be > 0 seconds, got {heartbeat_s}")
    if not stale_after_s >= 2 * heartbeat_s:
        raise InvalidSpecError(
            f"--stale-after must be at least twice --heartbeat (a live worker must beat before it is "
            f"declared dead), got --stale-after {stale_after_s:g} with --heartbeat {heartbeat_s:g}"
        )
    if objective_timeout_s is not None and not objective_timeout_s > 0:
        raise InvalidSpecError(f"--objective-timeout must be > 0 seconds, got {objective_timeout_s}")
