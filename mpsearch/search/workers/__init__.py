"""Several workers on one study: heartbeats, the stale-trial sweep, claims, and local launching.

Optuna's own heartbeats exist only on RDBStorage inside ``study.optimize()`` (OPTUNA.md); mpsearch
uses ask/tell on every storage, so it keeps its own, in trial user attributes:

- **Heartbeat.** While a worker holds a RUNNING trial, a thread writes the wall-clock time into the
  trial's ``heartbeat`` attribute every ``heartbeat_s`` seconds.
- **Sweep.** Any process may run :func:`sweep_stale_trials` (every worker does at start-up and every
  ``stale_after_s / 2`` seconds). A RUNNING trial whose last sign of life (heartbeat, else start) is
  older than ``stale_after_s``, or whose worker was a process on this host that no longer exists, is
  told FAIL with ``fail_reason`` "worker host:pid stopped (no heartbeat since ...)". Telling a
  finished trial fails in every Optuna storage, so of several sweepers exactly one wins, and only the
  winner re-enqueues the configuration (``retry_of`` = the failed trial's number): it is measured
  again exactly once.
- **Claims.** A worker writes its trial's ``config`` before it measures, then reads every RUNNING
  and COMPLETE trial in one snapshot. A COMPLETE trial of the same configuration makes the trial a
  repeat (values copied); another RUNNING trial of it is a *collision*: the trial is told FAIL with
  ``collided_with`` and not measured. Since each writes before it reads, of two workers claiming
  one configuration at least one sees the other, so one configuration is never measured by two
  workers at once (rarely both back off; a backed-off retry is re-enqueued).

Clocks: heartbeats compare wall-clock times across hosts, so ``stale_after_s`` must exceed the clock
skew between hosts plus the longest pause of a heartbeat (the default 120 s is generous).
"""

from mpsearch.search.storage import storage_errors_to_one_line
from mpsearch.search.workers.accounting import (
    BUDGET_KEY, COLLISION_ATTR, MEASURE_START_ATTR, count_measurements, duplicate_report, is_measurement,
    read_study_budget, worker_summary, write_study_budget,
)
from mpsearch.objectives import DEFAULT_OBJECTIVE_TIMEOUT_S
from mpsearch.search.workers.coordinator import Coordinator, check_timing
from mpsearch.search.workers.heartbeat import DEFAULT_HEARTBEAT_S, HEARTBEAT_ATTR, Heartbeat
from mpsearch.search.workers.identity import GPU_ATTR, WORKER_INDEX_ATTR, gpu_identity, visible_gpus, worker_id
from mpsearch.search.workers.launch import LaunchedWorker, launch_workers, wait_workers
from mpsearch.search.workers.sweep import (
    DEFAULT_STALE_AFTER_S, RETRY_ATTR, SWEPT_ATTR, SweptTrial, last_sign_of_life, sweep_stale_trials,
)

__all__ = [
    "BUDGET_KEY", "COLLISION_ATTR", "DEFAULT_HEARTBEAT_S", "DEFAULT_OBJECTIVE_TIMEOUT_S", "DEFAULT_STALE_AFTER_S",
    "GPU_ATTR", "HEARTBEAT_ATTR", "MEASURE_START_ATTR", "RETRY_ATTR", "SWEPT_ATTR", "WORKER_INDEX_ATTR",
    "Coordinator", "Heartbeat", "LaunchedWorker", "SweptTrial", "check_timing", "count_measurements",
    "duplicate_report", "gpu_identity", "is_measurement", "last_sign_of_life",
    "launch_workers", "read_study_budget", "storage_errors_to_one_line", "sweep_stale_trials", "visible_gpus",
    "wait_workers", "worker_id", "worker_summary", "write_study_budget",
]
