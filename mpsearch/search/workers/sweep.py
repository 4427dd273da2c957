"""The sweep: any process fails the RUNNING trials of dead workers and queues their configurations
again, exactly once (see the package docstring)."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any

from mpsearch.search import attrs
from mpsearch.search.lookups import trials_in_state, trials_with_attr
from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, REPEAT_ATTR, WORKER_ATTR
from mpsearch.search.workers.heartbeat import HEARTBEAT_ATTR
from mpsearch.search.workers.identity import WorkerIdentity, this_worker

RETRY_ATTR = attrs.RETRY  # on a re-enqueued trial: the number of the trial whose worker died
SWEPT_ATTR = attrs.SWEPT  # on a trial failed by the sweep: the worker that swept it
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
    for t in trials_in_state(study, optuna.trial.TrialState.RUNNING):
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
        queued_params = t.system_attrs.get("fixed_params")
        requeued = False
        if config and t.user_attrs.get(REPEAT_ATTR) is None and t.params:
            study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
            requeued = True
        elif not t.params and isinstance(queued_params, dict) and queued_params:
            # A queued trial taken but not yet suggested (its worker died or paused right after
            # taking it): its configuration is only in the queue's parameters, and goes back to the
            # queue as it was (a re-measurement keeps naming the trial it is owed to).
            study.enqueue_trial(dict(queued_params), user_attrs={RETRY_ATTR: t.user_attrs.get(RETRY_ATTR, t.number)})
            requeued = True
        swept.append(SweptTrial(t.number, config, owner, reason, requeued))
    return swept


def requeue_owed(study: Any, older_than_s: float, *, now: float | None = None) -> list[int]:
    """Queue again every configuration a dead worker left unmeasured whose re-measurement got lost;
    returns the numbers of the swept trials queued for.

    A sweeper fails the trial, then queues its configuration: two writes, so a sweeper killed in
    between (or a retry that collided and was killed before queueing itself again) leaves a
    configuration owed and nothing queued for it. Owed: a configuration of a swept trial (more than
    ``older_than_s`` ago: its sweeper has had the time to queue it) that no trial has measured, is
    measuring, or waits to measure. Rarely, two processes repair one debt at once; the claims then
    make the second a repeat or a collision, never a second measurement.
    """
    import optuna

    S = optuna.trial.TrialState
    now = time.time() if now is None else now
    if not trials_with_attr(study, SWEPT_ATTR, (S.FAIL,)):
        return []  # nothing was ever swept: nothing can be owed (one narrow query, not the whole study)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    covered: set[str] = set()
    for t in trials:
        if t.state in (S.COMPLETE, S.RUNNING) and CONFIG_ATTR in t.user_attrs:
            covered.add(t.user_attrs[CONFIG_ATTR])
        if t.state in (S.RUNNING, S.WAITING) and t.user_attrs.get(RETRY_ATTR) in by_number:
            covered.add(by_number[t.user_attrs[RETRY_ATTR]].user_attrs.get(CONFIG_ATTR, ""))
    queued = []
    for t in trials:
        config = t.user_attrs.get(CONFIG_ATTR)
        if (t.state != S.FAIL or SWEPT_ATTR not in t.user_attrs or not config or config in covered or not t.params
                or REPEAT_ATTR in t.user_attrs or t.datetime_complete is None
                or now - t.datetime_complete.timestamp() < older_than_s):
            continue
        study.enqueue_trial(dict(t.params), user_attrs={RETRY_ATTR: t.number})
        covered.add(config)
        queued.append(t.number)
    return queued
