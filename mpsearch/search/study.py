"""Create and resume stored studies, refusing a resume that would mix incomparable numbers.

``create_study(load_if_exists=True)`` checks nothing (OPTUNA.md), so mpsearch stores a
:class:`~mpsearch.search.record.StudySpec` with every study and compares it field by field on resume.
"""

from __future__ import annotations

import warnings
from typing import Any

from mpsearch import __version__
from mpsearch.errors import StorageError, StudyMismatchError
from mpsearch.search.record import SPEC_KEY, StudySpec, read_spec


def study_exists(storage: Any, name: str) -> bool:
    import optuna

    return any(s.study_name == name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False))


def create_study(storage: Any, storage_url: str, name: str, spec: StudySpec, sampler: Any) -> Any:
    """A new study holding ``spec``; refuses if ``name`` already exists in the storage."""
    import optuna

    if study_exists(storage, name):
        raise StorageError(
            f"study {name!r} already exists in {storage_url}: continue it with `mpsearch resume {name}`"
            f"{'' if storage_url.startswith('sqlite:///studies/') else f' --storage {storage_url}'}, or pick another --study-name"
        )
    directions = [o["direction"] for o in spec.objectives]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o["name"] for o in spec.objectives])
    study.set_user_attr(SPEC_KEY, spec.to_attr())
    return study


def load_study(storage: Any, storage_url: str, name: str, sampler: Any = None) -> tuple[Any, StudySpec]:
    """The stored study and its spec; StorageError if absent or not an mpsearch study."""
    import optuna

    if not study_exists(storage, name):
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
        have = f"it holds {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"no study {name!r} in {storage_url} ({have}); give --storage or start one with `mpsearch search`")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    spec = read_spec(study)
    if spec is None:
        raise StorageError(f"study {name!r} in {storage_url} was not created by mpsearch (no {SPEC_KEY} attribute)")
    return study, spec


def spec_differences(stored: StudySpec, requested: StudySpec) -> list[str]:
    """Human-readable differences that make a resume incomparable (empty when it is safe)."""
    diffs = []
    if stored.fingerprint != requested.fingerprint or stored.network["layers"] != requested.network["layers"]:
        diffs.append(
            f"network: stored {stored.network['name']} ({len(stored.network['layers'])} layers, fingerprint "
            f"{stored.fingerprint}), requested {requested.network['name']} ({len(requested.network['layers'])} layers, "
            f"fingerprint {requested.fingerprint})"
        )
    elif stored.network.get("groups") != requested.network.get("groups"):
        diffs.append(f"tied groups: stored {stored.network.get('groups')}, requested {requested.network.get('groups')}")
    if list(stored.menu) != list(requested.menu):
        diffs.append(f"menu: stored {','.join(stored.menu)}, requested {','.join(requested.menu)}")
    so = [(o["name"], o["direction"], o.get("spec", o["name"])) for o in stored.objectives]
    ro = [(o["name"], o["direction"], o.get("spec", o["name"])) for o in requested.objectives]
    if so != ro:
        diffs.append(
            f"objectives: stored {', '.join(f'{n}:{d}' for n, d, _ in so)}, requested {', '.join(f'{n}:{d}' for n, d, _ in ro)}"
        )
    if (stored.backend.get("source"), stored.backend.get("backend")) != (requested.backend.get("source"),
                                                                         requested.backend.get("backend")):
        diffs.append(f"latency source: stored {stored.backend.get('source')} ({stored.backend.get('backend')}), "
                     f"requested {requested.backend.get('source')} ({requested.backend.get('backend')})")
    elif stored.backend.get("regime") != requested.backend.get("regime"):
        diffs.append(f"timing regime: stored {stored.backend.get('regime')}, requested {requested.backend.get('regime')}")
    if stored.device != requested.device:
        diffs.append(f"device: stored {stored.device}, requested {requested.device}")
    return diffs


def check_resume(stored: StudySpec, requested: StudySpec, name: str) -> None:
    diffs = spec_differences(stored, requested)
    if diffs:
        raise StudyMismatchError(
            f"refusing to resume study {name!r}, its numbers would not be comparable: " + "; ".join(diffs)
            + ". Start a new study (another --study-name) for the new setup"
        )


def new_spec(network: Any, menu: tuple[str, ...], objectives: list[Any], backend: Any, sampler_settings: dict[str, Any]) -> StudySpec:
    return StudySpec(
        network=network.to_dict(),
        fingerprint=network.fingerprint(),
        menu=list(menu),
        objectives=[{"name": o.name, "direction": o.direction, "spec": o.spec()} for o in objectives],
        backend=backend.provenance(),
        sampler=sampler_settings,
        mpsearch_version=__version__,
    )
