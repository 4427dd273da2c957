"""Several workers on one study: identities, heartbeats, the stale-trial sweep, claims, launching.

Optuna's own heartbeats exist only on RDBStorage inside ``study.optimize()``; mpsearch uses
ask/tell on every storage, so it keeps its own, in trial user attributes:

- **Identity** (:mod:`.identity`). A worker is a random token per process, plus ``host:pid`` for
  people and the PID namespace it lives in. A new trial is created already naming its worker and
  carrying a first heartbeat (:mod:`.ask`); a queued one is named right after it is taken.
- **Heartbeat** (:mod:`.heartbeat`). While a worker holds a RUNNING trial, a thread writes the
  wall-clock time into the trial's ``heartbeat`` attribute every ``heartbeat_s`` seconds (default 5).
- **Sweep** (:mod:`.sweep`). Every worker sweeps at start-up, between trials and after every
  heartbeat (so also while it measures), at most once per ``heartbeat_s``. A RUNNING trial whose
  worker is certainly gone (a process of this namespace that no longer exists), or whose last sign
  of life is older than ``stale_after_s`` (default 30), is told FAIL with ``fail_reason`` "worker
  host:pid stopped (...)". Telling a finished trial fails in every Optuna storage, so of several
  sweepers exactly one wins, and only the winner queues the configuration again (``retry_of``; a
  queued trial taken but not yet suggested goes back with the parameters it was queued with); a
  winner killed before it queued is made up for by the next sweep that finds the configuration owed.
  A worker whose own trial was swept (it was paused past ``stale_after_s``) drops what it found with
  a note and goes on.
- **Claims.** A worker writes its trial's ``config`` before it measures, then reads the RUNNING
  and COMPLETE trials that claimed the same configuration (one query on an RDB storage, so the cost
  does not grow with the study). A COMPLETE trial of the same configuration makes the trial a
  repeat (values copied); another RUNNING trial of it is a *collision*: the trial is told FAIL with
  ``collided_with`` and not measured. Since each writes before it reads, of two workers claiming
  one configuration at least one sees the other, so one configuration is never measured by two
  workers at once (rarely both back off; a backed-off retry is re-enqueued).
- **Shared budget** (:mod:`.accounting`). A worker stops when the study has its measurements; while
  the ones other workers have in flight would complete it, it waits and sweeps instead, so a study
  is not left short when one of them dies.

Clocks: heartbeats compare wall-clock times across hosts, so ``stale_after_s`` must exceed the clock
skew between hosts plus the longest pause of a heartbeat (a journal lock whose holder stopped is
broken after 10 s).
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
