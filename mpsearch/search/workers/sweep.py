"""The sweep: any process fails the RUNNING trials of dead workers and queues their configurations
again, exactly once (see the package docstring)."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any

from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, REPEAT_ATTR, WORKER_ATTR
from mpsearch.search.workers.heartbeat import HEARTBEAT_ATTR
from mpsearch.search.workers.identity import WorkerIdentity, this_worker

RETRY_ATTR = "retry_of"  # on a re-enqueued trial: the number of the trial whose worker died
SWEPT_ATTR = "swept_by"  # on a trial failed by the sweep: the worker that swept it
DEFAULT_STALE_AFTER_S = 30.0


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def sweep_stale_trials(study: Any, stale_after_s: float, *, now: float | None = None,
                       me: WorkerIdentity | None = None) -> list[SweptTrial]:
    """Fail the RUNNING trials of dead workers and re-enqueue their configurations (once).

    Stale: the worker's process certainly no longer exists (:meth:`WorkerIdentity.is_gone`: only
    a process of this process's namespace can tell), or no heartbeat for ``stale_after_s``. ``me``
    (default: this process) never sweeps its own trials. Returns what this call swept; trials
    another process swept first are left out.
    """
    import optuna

    now = time.time() if now is None else now
    me = me or this_worker()
    swept: list[SweptTrial] = []
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in running:
        owner = str(t.user_attrs.get(WORKER_ATTR, ""))
        identity = WorkerIdentity.from_attrs(t.user_attrs)
        if identity is not None and identity.token == me.token:
            continue
        seen = last_sign_of_life(t)
        gone = identity is not None and identity.is_gone()
        if not gone and now - seen <= stale_after_s:
            continue
        why = "process gone" if gone else f"no heartbeat for {now - seen:.0f} s"
        reason = f"worker {owner or '(unknown)'} stopped (no heartbeat since {_iso(seen)}; {why})"
        try:
            # Attributes first: a finished trial takes none. If another sweeper (or the worker
            # itself) finishes the trial first, the tell below fails and this sweeper backs off.
            study._storage.set_trial_user_attr(t._trial_id, FAIL_ATTR, reason)
            study._storage.set_trial_user_attr(t._trial_id, SWEPT_ATTR, me.label)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - see below
            # Another sweeper or the worker itself finished it first (UpdateFinishedTrialError,
            # "Cannot tell a FAIL trial"), or the storage would not take the write now (a row lock
            # held by a paused worker): a sweep is best-effort, the next one tries again.
            continue
        config = t.user_attrs.get(CONFIG_ATTR)
        requeued = False
        if config and t.user_attrs.get(REPEAT_ATTR) is None and t.params:
            study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
            requeued = True
        swept.append(SweptTrial(t.number, config, owner, reason, requeued))
    return swept
