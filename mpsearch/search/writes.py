"""A trial's writes gathered into one storage transaction.

Optuna writes every ``suggest_*``, ``set_user_attr`` and ``set_constraint`` at once, each its own
transaction. A network of 70 decisions then costs some 90 commits per trial, about 0.5 s on SQLite
whatever the study holds. :class:`BufferedWrites` stands in for the trial's storage: the trial's
own methods are used unchanged, their writes are kept, and :meth:`BufferedWrites.flush` writes them
together, in one transaction on an RDB storage (SQLite, PostgreSQL, MySQL), one by one elsewhere
(journal, Redis: appends, which cost no commit each).

Contract: nothing kept is visible to other processes before :meth:`flush`; a flush onto a trial
that is finished (a sweep failed it meanwhile) raises ``UpdateFinishedTrialError`` and writes
nothing, like the writes it stands for. The trial's own cached copy (``trial.params``,
``trial.user_attrs``) is updated at once by Optuna, as always.
"""

from __future__ import annotations

from typing import Any


def rdb_backend(storage: Any) -> Any:
    """The RDBStorage behind ``storage`` (Optuna wraps it in a cache), or None for other storages."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


class BufferedWrites:
    """Stands in for ``trial.storage`` (see the module docstring); reads go to the real storage,
    merged with what is kept."""

    def __init__(self, trial: Any):
        self.trial = trial
        self.storage = trial.study._storage
        self.params: list[tuple[str, float, Any]] = []
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        self._system_read: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    # --- the writes a Trial makes ---------------------------------------------------------------
    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: Any) -> None:
        self.params.append((name, value, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.system_attrs[key] = value

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        # The trial's copy from when it was taken, plus what was written since: only the process that
        # runs a RUNNING trial writes its system attributes, so reading the storage would tell nothing more.
        if self._system_read is None:
            self._system_read = dict(self.trial._cached_frozen_trial.system_attrs)
        return {**self._system_read, **self.system_attrs}

    # --- writing ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what is kept (see the module docstring), then keep nothing."""
        if not (self.params or self.user_attrs or self.system_attrs):
            return
        trial_id = self.trial._trial_id
        backend = rdb_backend(self.storage)
        if backend is None:
            for name, value, distribution in self.params:
                self.storage.set_trial_param(trial_id, name, value, distribution)
            for key, value in self.user_attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, value)
            for key, value in self.system_attrs.items():
                self.storage.set_trial_system_attr(trial_id, key, value)
        else:
            self._flush_rdb(backend, trial_id)
        if self._system_read is not None:
            self._system_read.update(self.system_attrs)
        self.params, self.user_attrs, self.system_attrs = [], {}, {}

    def _flush_rdb(self, backend: Any, trial_id: int) -> None:
        import json

        from optuna.distributions import check_distribution_compatibility, distribution_to_json
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        # Optuna's cache of each parameter's distribution in the study: a parameter it knows is
        # checked against it here, instead of by a query per parameter.
        known = self._known_distributions()
        with _create_scoped_session(backend.scoped_session, True) as session, session.no_autoflush:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session)
            backend.check_trial_is_updatable(trial_id, row.state)
            for name, value, distribution in self.params:
                earlier = known.get(name) if known is not None else None
                if earlier is None:  # first sight of this parameter here: Optuna's own check (a query)
                    backend._set_trial_param_without_commit(session, trial_id, name, value, distribution)
                    continue
                check_distribution_compatibility(earlier, distribution)
                session.add(models.TrialParamModel(trial_id=trial_id, param_name=name, param_value=value,
                                                   distribution_json=distribution_to_json(distribution)))
            for model, attrs in ((models.TrialUserAttributeModel, self.user_attrs),
                                 (models.TrialSystemAttributeModel, self.system_attrs)):
                if not attrs:
                    continue
                stored = {a.key: a for a in session.query(model).filter(model.trial_id == trial_id)
                          .filter(model.key.in_(list(attrs)))}
                for key, value in attrs.items():
                    if key in stored:
                        stored[key].value_json = json.dumps(value)
                    else:
                        session.add(model(trial_id=trial_id, key=key, value_json=json.dumps(value)))
        if known is not None:
            for name, _, distribution in self.params:
                known.setdefault(name, distribution)

    def _known_distributions(self) -> dict[str, Any] | None:
        studies = getattr(self.storage, "_studies", None)
        info = studies.get(self.trial.study._study_id) if isinstance(studies, dict) else None
        known = getattr(info, "param_distribution", None)
        return known if isinstance(known, dict) else None


def buffered(trial: Any) -> BufferedWrites:
    """Make ``trial``'s writes kept until ``.flush()`` of the returned buffer (see the module docstring)."""
    buffer = BufferedWrites(trial)
    trial.storage = buffer
    return buffer
