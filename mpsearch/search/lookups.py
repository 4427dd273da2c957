"""Reads the search loop makes on every trial (and its sweep, between trials), answered without
reading the whole study.

``study.get_trials`` reads trials whole (every parameter and attribute: a 70-layer network's trial
is some 90 rows) and, on an RDB storage, every trial stored since the last call. The loop asks
narrow questions: which trials are queued, running, or of one configuration. On an RDB storage
(SQLite, PostgreSQL, MySQL) each is one query here, and only the few trials it names are read
whole; on the others (journal, Redis, in memory, which hold the study in memory already) it is a
scan of Optuna's own list.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from mpsearch.search.attrs import CONFIG
from mpsearch.search.writes import rdb_backend


def waiting_trial_ids(study: Any) -> list[int]:
    """Ids of the study's WAITING (queued) trials, oldest first."""
    from optuna.trial import TrialState

    backend = rdb_backend(study._storage)
    if backend is None:
        return [t._trial_id for t in study._storage.get_all_trials(study._study_id, deepcopy=False,
                                                                    states=(TrialState.WAITING,))]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    T = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        rows = (session.query(T.trial_id).filter(T.study_id == study._study_id, T.state == TrialState.WAITING)
                .order_by(T.number).all())
    return [r[0] for r in rows]


def _trial_ids_with_attr(study: Any, key: str, states: Sequence[Any], value: Any = None,
                         exclude: int | None = None) -> list[tuple[int, str]]:
    """(trial id, the attribute's JSON) of the RDB study's trials in ``states`` that have user
    attribute ``key`` (equal to ``value`` unless None), by number."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    T, A = models.TrialModel, models.TrialUserAttributeModel
    backend = rdb_backend(study._storage)
    with _create_scoped_session(backend.scoped_session) as session:
        query = (session.query(T.trial_id, A.value_json).join(A, A.trial_id == T.trial_id)
                 .filter(T.study_id == study._study_id, T.state.in_(list(states)), A.key == key))
        if value is not None:
            # Optuna stores an attribute as json.dumps(value): the same text for the same value.
            query = query.filter(A.value_json == json.dumps(value))
        if exclude is not None:
            query = query.filter(T.trial_id != exclude)
        return [(r[0], r[1]) for r in query.order_by(T.number).all()]


def trials_with_attr(study: Any, key: str, states: Sequence[Any]) -> list[Any]:
    """The study's trials in ``states`` that carry user attribute ``key``, by number."""
    if rdb_backend(study._storage) is None:
        return [t for t in study.get_trials(deepcopy=False, states=tuple(states)) if key in t.user_attrs]
    return [study._storage.get_trial(i) for i, _ in _trial_ids_with_attr(study, key, states)]


def trials_of_config(study: Any, key: str, states: Sequence[Any], exclude: int | None = None) -> list[Any]:
    """The study's trials in ``states`` that claimed configuration ``key`` (all but trial id
    ``exclude``), by number, read from the storage now. On an RDB storage one query finds their ids
    and only those trials are read; elsewhere a pass over Optuna's list (in memory)."""
    if rdb_backend(study._storage) is None:
        return [t for t in study.get_trials(deepcopy=False, states=tuple(states))
                if t.user_attrs.get(CONFIG) == key and t._trial_id != exclude]
    return [study._storage.get_trial(i) for i, _ in _trial_ids_with_attr(study, CONFIG, states, key, exclude)]


def measured_config_ids(study: Any) -> dict[str, int]:
    """Configuration → id of the first COMPLETE trial of it (a trial measured it, or found it
    infeasible). On an RDB storage only the ``config`` attributes are read, not the trials."""
    from optuna.trial import TrialState

    done: dict[str, int] = {}
    if rdb_backend(study._storage) is None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key = t.user_attrs.get(CONFIG)
            if key:
                done.setdefault(key, t._trial_id)
        return done
    for trial_id, text in _trial_ids_with_attr(study, CONFIG, (TrialState.COMPLETE,)):
        key = json.loads(text)
        if key:
            done.setdefault(key, trial_id)
    return done


def trials_in_state(study: Any, state: Any, exclude: int | None = None) -> list[Any]:
    """The study's trials in ``state`` (RUNNING, WAITING: a few), read from the storage now."""
    backend = rdb_backend(study._storage)
    if backend is None:
        return [t for t in study._storage.get_all_trials(study._study_id, deepcopy=False, states=(state,))
                if t._trial_id != exclude]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    T = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        query = session.query(T.trial_id).filter(T.study_id == study._study_id, T.state == state)
        if exclude is not None:
            query = query.filter(T.trial_id != exclude)
        ids = [r[0] for r in query.order_by(T.number).all()]
    return [study._storage.get_trial(i) for i in ids]


class ConfigIndex:
    """Which configurations the study has measured and which its RUNNING trials hold, read
    incrementally: each :meth:`refresh` reads only the trials created, or unfinished, since the one
    before (on an RDB storage one query by trial id, reading the ``config`` attribute alone; elsewhere
    a pass over Optuna's list, which is in memory).

    ``done``: configuration → id of a COMPLETE trial of it (the first seen). ``running``: id of a
    RUNNING trial → its configuration (once it has claimed one)."""

    def __init__(self, study: Any):
        self.study = study
        self.done: dict[str, int] = {}
        self.running: dict[int, str] = {}
        self._after = -1  # every trial with a larger id is new to the next refresh
        self._open: set[int] = set()  # ids at most _after that were not finished: read again

    def refresh(self) -> None:
        from optuna.trial import TrialState

        for trial_id, state, key in self._rows():
            self._after = max(self._after, trial_id)
            if state.is_finished():
                self._open.discard(trial_id)
                self.running.pop(trial_id, None)
                if state == TrialState.COMPLETE and key:
                    self.done.setdefault(key, trial_id)
            else:
                self._open.add(trial_id)
                if state == TrialState.RUNNING and key:
                    self.running[trial_id] = key

    def _rows(self) -> list[tuple[int, Any, str | None]]:
        backend = rdb_backend(self.study._storage)
        if backend is None:
            return [(t._trial_id, t.state, t.user_attrs.get(CONFIG))
                    for t in self.study._storage.get_all_trials(self.study._study_id, deepcopy=False)
                    if t._trial_id > self._after or t._trial_id in self._open]
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        T, A = models.TrialModel, models.TrialUserAttributeModel
        new = T.trial_id > self._after
        where = sqlalchemy.or_(new, T.trial_id.in_(sorted(self._open))) if self._open else new
        with _create_scoped_session(backend.scoped_session) as session:
            rows = (session.query(T.trial_id, T.state, A.value_json)
                    .outerjoin(A, sqlalchemy.and_(A.trial_id == T.trial_id, A.key == CONFIG))
                    .filter(T.study_id == self.study._study_id, where).order_by(T.trial_id).all())
        return [(i, state, json.loads(text) if text else None) for i, state, text in rows]
