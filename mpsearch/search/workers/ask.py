"""``study.ask()``, with the new trial owned from the write that creates it.

``study.ask()`` creates a RUNNING trial and returns; the worker names itself on the trial in later
writes. A worker killed between the two leaves a trial nobody owns, which no sweep can attribute
to a dead process: it stayed RUNNING until its start was ``--stale-after`` old. Here a new trial is
created from a template that already carries the owner and a first heartbeat (one storage write,
in every Optuna storage), so the next worker or resume sweeps it at once.

A queued trial (a configuration re-enqueued after its worker died) is taken the way ``ask()``
takes it, by moving it from WAITING to RUNNING, and named right after: a worker killed in that
instant leaves an unowned trial, swept once ``--stale-after`` has passed since it was taken. A worker
paused in that instant for longer may find the trial already swept: nothing was measured on it, the
sweeper queued its configuration again, and this worker takes the next trial instead.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping


def ask_owned(study: Any, attrs: Mapping[str, Any]) -> Any:
    """A new ``optuna.Trial`` of ``study`` (a queued one first), carrying the user attributes ``attrs``."""
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    storage, study_id = study._storage, study._study_id
    # What ask() does first: the sampler must see the trials stored since the last ask.
    local = getattr(study, "_thread_local", None)
    if local is not None and hasattr(local, "cached_all_trials"):
        local.cached_all_trials = None
    while (trial_id := _take_queued(study)) is not None:
        try:
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)
            return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # swept while unowned (this worker was paused): not ours any more
    template = FrozenTrial(
        number=-1, trial_id=-1, state=TrialState.RUNNING, value=None, values=None,
        datetime_start=_dt.datetime.now(), datetime_complete=None, params={}, distributions={},
        user_attrs=dict(attrs), system_attrs={}, intermediate_values={},
    )
    trial_id = storage.create_new_trial(study_id, template_trial=template)
    return optuna.Trial(study, trial_id)


def _take_queued(study: Any) -> int | None:
    """Move the first WAITING trial to RUNNING, as ``ask()`` does; None when none is left."""
    import optuna
    from optuna.trial import TrialState

    from mpsearch.search.lookups import waiting_trial_ids

    for trial_id in waiting_trial_ids(study):
        try:
            if study._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process took it and finished it meanwhile
    return None
