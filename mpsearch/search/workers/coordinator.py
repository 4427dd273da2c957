"""The coordinator: everything the search loop calls so that several workers can share a study."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mpsearch.errors import InvalidSpecError, ObjectiveError
from mpsearch.search.record import WORKER_ATTR
from mpsearch.search.workers.accounting import count_measurements
from mpsearch.search.workers.heartbeat import DEFAULT_HEARTBEAT_S, Heartbeat
from mpsearch.search.workers.identity import GPU_ATTR, WORKER_INDEX_ATTR, gpu_identity, worker_id
from mpsearch.search.workers.sweep import DEFAULT_STALE_AFTER_S, SweptTrial, sweep_stale_trials

# A plug-in objective (user Python) that runs longer than this fails its trial; the study goes on.
DEFAULT_OBJECTIVE_TIMEOUT_S = 600.0


@dataclass
class Coordinator:
    """Everything the search loop does so that several workers can share a study safely.

    One per worker process. ``heartbeat_s`` and ``stale_after_s`` set the heartbeat and the sweep
    (see the package docstring); ``objective_timeout_s`` bounds each plug-in objective; ``index``
    is the worker's index (recorded on its trials; seeds are offset by it); ``study_budget`` stops
    the worker when the study as a whole has spent that many measurements.
    """

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    objective_timeout_s: float | None = DEFAULT_OBJECTIVE_TIMEOUT_S
    index: int | None = None
    study_budget: int | None = None
    me: str = field(default_factory=worker_id)
    swept: list[SweptTrial] = field(default_factory=list)
    _last_sweep: float = float("-inf")

    def __post_init__(self) -> None:
        check_timing(self.heartbeat_s, self.stale_after_s, self.objective_timeout_s)

    def sweep(self, study: Any, force: bool = False) -> list[SweptTrial]:
        """Sweep at most every ``stale_after_s / 2`` seconds (always with ``force``)."""
        if not force and time.monotonic() - self._last_sweep < self.stale_after_s / 2:
            return []
        self._last_sweep = time.monotonic()
        done = sweep_stale_trials(study, self.stale_after_s, me=self.me)
        self.swept += done
        return done

    def heartbeat(self, trial: Any) -> Heartbeat:
        return Heartbeat(trial, self.heartbeat_s)

    def identity(self) -> dict[str, Any]:
        """Attributes naming this worker and the GPU it is pinned to, for every trial it runs."""
        attrs: dict[str, Any] = {WORKER_ATTR: self.me, GPU_ATTR: gpu_identity()}
        if self.index is not None:
            attrs[WORKER_INDEX_ATTR] = self.index
        return attrs

    def study_budget_reason(self, study: Any) -> str | None:
        """Why the shared budget is spent, or None. Measurements in flight count as spent, so workers
        do not all start the last one; two workers checking at the same instant may still both start
        one, so the study can end up to (workers - 1) measurements over its budget."""
        if self.study_budget is None:
            return None
        spent = count_measurements(study, include_running=True)
        if spent >= self.study_budget:
            return f"study budget reached ({self.study_budget} measurements across all workers)"
        return None

    def evaluate(self, objective: Any, network: Any, config: Any) -> Any:
        from mpsearch.objectives import PluginObjective

        if self.objective_timeout_s is None or not isinstance(objective, PluginObjective):
            # Latency stays on this thread: a GPU backend's context belongs to the thread that made it.
            return objective.evaluate(network, config)
        return evaluate_with_timeout(objective, network, config, self.objective_timeout_s)


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


def evaluate_with_timeout(objective: Any, network: Any, config: Any, timeout_s: float) -> Any:
    """``objective.evaluate`` in a daemon thread; ObjectiveError if it has not returned in time.

    A Python function cannot be killed from outside; a hung one keeps its thread (daemon: it does
    not keep the process alive) and the trial fails with the reason, so the study goes on.
    """
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = objective.evaluate(network, config)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = err

    thread = threading.Thread(target=call, name=f"objective-{objective.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ObjectiveError(
            f"objective {objective.name} ({getattr(objective, 'target', '?')}) did not return within "
            f"{timeout_s:g} s on {config}; raise --objective-timeout if it needs longer"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]
