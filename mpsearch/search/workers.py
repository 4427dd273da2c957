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

from __future__ import annotations

import datetime as _dt
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mpsearch.errors import InvalidSpecError, ObjectiveError, StorageError, UnsupportedConfigError
from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, REPEAT_ATTR, WORKER_ATTR

HEARTBEAT_ATTR = "heartbeat"  # unix time of the last sign of life of the trial's worker
RETRY_ATTR = "retry_of"  # on a re-enqueued trial: the number of the trial whose worker died
COLLISION_ATTR = "collided_with"  # on a backed-off trial: the trial measuring the same configuration
GPU_ATTR = "gpu"  # host, visible-device index and PCI bus of the GPU the trial ran on
WORKER_INDEX_ATTR = "worker_index"
SWEPT_ATTR = "swept_by"  # on a trial failed by the sweep: the worker that swept it
MEASURE_START_ATTR = "measure_start"  # unix time the measurement began (after the claim held)
BUDGET_KEY = "mpsearch_budget"  # study attr: the study's shared budget, {"trials": N}

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_STALE_AFTER_S = 120.0
# A plug-in objective (user Python) that runs longer than this fails its trial; the study goes on.
DEFAULT_OBJECTIVE_TIMEOUT_S = 600.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- heartbeat ------------------------------------------------------------------------------------

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


# --- sweep ----------------------------------------------------------------------------------------

@dataclass
class SweptTrial:
    number: int
    config: str | None
    worker: str
    reason: str
    requeued: bool


def last_sign_of_life(trial: Any) -> float:
    """Unix time of the trial's last heartbeat, or of its start when it has none yet."""
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if isinstance(beat, (int, float)):
        return float(beat)  # the first beat is written as the trial starts
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


def _process_gone(owner: str) -> bool:
    """True when ``owner`` (host:pid) is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user: alive
    return False


def sweep_stale_trials(study: Any, stale_after_s: float, *, now: float | None = None,
                       me: str | None = None) -> list[SweptTrial]:
    """Fail the RUNNING trials of dead workers and re-enqueue their configurations (once).

    Stale: the worker is a vanished process of this host, or no heartbeat for ``stale_after_s``.
    Returns what this call swept; trials another process swept first are left out.
    """
    import optuna

    now = time.time() if now is None else now
    me = me or worker_id()
    swept: list[SweptTrial] = []
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        owner = str(t.user_attrs.get(WORKER_ATTR, ""))
        if owner == me:
            continue
        seen = last_sign_of_life(t)
        gone = bool(owner) and _process_gone(owner)
        if not gone and now - seen <= stale_after_s:
            continue
        why = "process gone" if gone else f"no heartbeat for {now - seen:.0f} s"
        reason = f"worker {owner or '(unknown)'} stopped (no heartbeat since {_iso(seen)}; {why})"
        try:
            # Attributes first: a finished trial takes none. If another sweeper (or the worker
            # itself) finishes the trial first, the tell below fails and this sweeper backs off.
            study._storage.set_trial_user_attr(t._trial_id, FAIL_ATTR, reason)
            study._storage.set_trial_user_attr(t._trial_id, SWEPT_ATTR, me)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError, KeyError):
            continue  # UpdateFinishedTrialError is a RuntimeError; "Cannot tell a FAIL trial" a ValueError
        config = t.user_attrs.get(CONFIG_ATTR)
        requeued = False
        if config and t.user_attrs.get(REPEAT_ATTR) is None and t.params:
            study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
            requeued = True
        swept.append(SweptTrial(t.number, config, owner, reason, requeued))
    return swept


# --- the coordinator the search loop calls --------------------------------------------------------

@dataclass
class Coordinator:
    """Everything the search loop does so that several workers can share a study safely.

    One per worker process. ``heartbeat_s`` and ``stale_after_s`` set the heartbeat and the sweep
    (see the module docstring); ``objective_timeout_s`` bounds each plug-in objective; ``index``
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


# --- study-wide counts ----------------------------------------------------------------------------

def is_measurement(trial: Any) -> bool:
    """A trial that measured (or, RUNNING, is measuring) its configuration: not a repeat, a collision,
    or a dead worker's trial."""
    import optuna

    attrs = trial.user_attrs
    if trial.state == optuna.trial.TrialState.RUNNING and MEASURE_START_ATTR not in attrs:
        return False  # still deciding: it may turn out a repeat or a collision
    return (CONFIG_ATTR in attrs and REPEAT_ATTR not in attrs and COLLISION_ATTR not in attrs
            and SWEPT_ATTR not in attrs)


def count_measurements(study: Any, include_running: bool = False) -> int:
    import optuna

    S = optuna.trial.TrialState
    states = (S.COMPLETE, S.FAIL, S.RUNNING) if include_running else (S.COMPLETE, S.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if is_measurement(t))


def read_study_budget(study: Any) -> int | None:
    value = (study.user_attrs.get(BUDGET_KEY) or {}).get("trials")
    return int(value) if value is not None else None


def write_study_budget(study: Any, trials: int | None) -> None:
    study.set_user_attr(BUDGET_KEY, {"trials": trials})


def duplicate_report(study: Any) -> dict[str, Any]:
    """How often a configuration was measured more than once, and how often a claim prevented it."""
    import optuna

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE and is_measurement(t)]
    per_config: dict[str, int] = {}
    for t in complete:
        per_config[t.user_attrs[CONFIG_ATTR]] = per_config.get(t.user_attrs[CONFIG_ATTR], 0) + 1
    duplicated = {k: n for k, n in per_config.items() if n > 1}
    return {
        "trials": len(trials),
        "complete_measurements": len(complete),
        "distinct_configs_measured": len(per_config),
        "duplicate_measurements": sum(n - 1 for n in duplicated.values()),
        "duplicated_configs": sorted(duplicated),
        "collisions_prevented": sum(1 for t in trials if COLLISION_ATTR in t.user_attrs),
        "repeats_answered_from_storage": sum(1 for t in trials if REPEAT_ATTR in t.user_attrs),
        "swept_dead_worker_trials": sum(1 for t in trials if SWEPT_ATTR in t.user_attrs),
        "retries": sum(1 for t in trials if RETRY_ATTR in t.user_attrs),
        "running": sum(1 for t in trials if t.state == S.RUNNING),
        "waiting": sum(1 for t in trials if t.state == S.WAITING),
    }


def worker_summary(study: Any) -> Any:
    """A pandas DataFrame: per worker (host:pid) and GPU, the trials it measured, failed, repeated."""
    import optuna
    import pandas as pd

    S = optuna.trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if WORKER_ATTR not in a:
            continue
        rows.append({
            "worker": a[WORKER_ATTR], "worker_index": a.get(WORKER_INDEX_ATTR, ""), "gpu": a.get(GPU_ATTR, ""),
            "device": a.get("latency_device") or a.get("device", ""), "source": a.get("latency_source", ""),
            "measured": int(t.state == S.COMPLETE and is_measurement(t)),
            "failed": int(t.state == S.FAIL and is_measurement(t)),
            "repeats": int(REPEAT_ATTR in a), "collisions": int(COLLISION_ATTR in a),
            "died": int(SWEPT_ATTR in a), "measure_s": float(a.get("measure_s", 0.0) or 0.0),
        })
    columns = ["worker", "worker_index", "gpu", "device", "source", "measured", "failed", "repeats",
               "collisions", "died", "measure_s"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows, columns=columns)
    keys = ["worker", "worker_index", "gpu"]
    out = frame.groupby(keys, dropna=False, sort=True).agg(
        device=("device", lambda s: ", ".join(sorted(set(s) - {""}))),
        source=("source", lambda s: ", ".join(sorted(set(s) - {""}))),
        measured=("measured", "sum"), failed=("failed", "sum"), repeats=("repeats", "sum"),
        collisions=("collisions", "sum"), died=("died", "sum"), measure_s=("measure_s", "sum"),
    ).reset_index()
    return out


# --- GPUs and launching ---------------------------------------------------------------------------

def _gpu_bus_ids() -> list[str]:
    """PCI bus ids of this host's NVIDIA GPUs, in bus order (the driver's /proc entries)."""
    return sorted(Path(p).name for p in Path("/proc/driver/nvidia/gpus").glob("*")) if Path("/proc/driver/nvidia/gpus").exists() else []


def visible_gpus() -> list[str]:
    """The device ids a worker can be pinned to: CUDA_VISIBLE_DEVICES' entries if set, else one
    index per GPU of this host (in PCI bus order, which the launched workers are told to use)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(len(_gpu_bus_ids()))]


def gpu_identity() -> str:
    """``host`` plus the GPU this process is pinned to (index and PCI bus), or ``host cpu``."""
    host = socket.gethostname()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    buses = _gpu_bus_ids()
    if not buses:
        return f"{host} cpu"
    if env is None:
        return f"{host} all GPUs ({len(buses)})"
    first = env.split(",")[0].strip()
    bus = ""
    if first.isdigit() and os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" and int(first) < len(buses):
        bus = f" ({buses[int(first)]})"
    return f"{host} GPU {first}{bus}"


@dataclass
class LaunchedWorker:
    index: int
    gpu: str | None
    process: Any
    forwarder: Any = None
    returncode: int | None = None


def launch_workers(n: int, worker_args: Sequence[str], *, pin_gpus: bool,
                   command: Sequence[str] = (sys.executable, "-m", "mpsearch.cli", "worker")) -> list[LaunchedWorker]:
    """Start ``n`` ``mpsearch worker`` processes; with ``pin_gpus``, one per visible GPU.

    Each gets ``--worker-index i`` (its seed offset) and, when pinned, CUDA_VISIBLE_DEVICES set to
    its GPU with CUDA_DEVICE_ORDER=PCI_BUS_ID so the index means the same GPU to CUDA and the driver.
    Their output is forwarded line by line, prefixed with ``[wI]``.
    """
    if n < 1:
        raise InvalidSpecError(f"--workers must be >= 1, got {n}")
    gpus = visible_gpus() if pin_gpus else []
    if pin_gpus and len(gpus) < n:
        raise UnsupportedConfigError(
            f"--workers {n} needs {n} GPUs (one per worker) but {len(gpus)} are visible"
            f"{' (CUDA_VISIBLE_DEVICES=' + os.environ['CUDA_VISIBLE_DEVICES'] + ')' if 'CUDA_VISIBLE_DEVICES' in os.environ else ''}: "
            f"use --workers {max(1, len(gpus))}"
        )
    launched = []
    for i in range(n):
        env = dict(os.environ)
        gpu = None
        if pin_gpus:
            gpu = gpus[i]
            env["CUDA_VISIBLE_DEVICES"] = gpu
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        cmd = [*command, *worker_args, "--worker-index", str(i)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        forwarder = threading.Thread(target=_forward, args=(proc, f"[w{i}] "), daemon=True)
        forwarder.start()
        launched.append(LaunchedWorker(i, gpu, proc, forwarder))
    return launched


def _forward(proc: Any, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def wait_workers(workers: list[LaunchedWorker]) -> list[LaunchedWorker]:
    for w in workers:
        w.returncode = w.process.wait()
        if w.forwarder is not None:
            w.forwarder.join()  # the last lines a worker printed come before the summary
    return workers


def storage_errors_to_one_line(url: str, err: BaseException) -> StorageError | None:
    """A StorageError for a database/Redis/file error raised mid-search, or None for other errors."""
    from mpsearch.search.storage import redacted, storage_failure

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
