"""Create and resume stored studies, refusing a resume that would mix incomparable numbers.

``create_study(load_if_exists=True)`` checks nothing, so mpsearch stores a
:class:`~mpsearch.search.record.StudySpec` with every study and compares it field by field on resume.

**Creation is all or nothing**, as far as mpsearch can tell. Optuna creates a study and its
attributes in separate writes, so a creator can die in between. The creator first writes who it is
(``mpsearch_creating``), then the objective names, then the spec; a study is complete once its spec
is stored. A study without a spec whose creator is a process that no longer exists (or that was
created longer than :data:`CREATION_GRACE_S` ago) and that holds no trial is *abandoned*: the next
``search`` of that name replaces it. While its creator lives, others are told it is being created.

**Nothing in a stored study runs code.** A plug-in objective is stored by its import path, but a
resume or a worker imports it only when the user names it again on the command line, and it must
match what is stored.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from mpsearch import __version__
from mpsearch.errors import InvalidSpecError, StorageError, StudyMismatchError
from mpsearch.search import attrs
from mpsearch.search.record import SPEC_KEY, StudySpec, read_spec
from mpsearch.validation import check_report_columns, check_study_name

CREATING_KEY = attrs.CREATING  # study attr written first: who is creating the study, and when
# A creator of another host that has not completed its study within this long is taken for dead
# (creation is a few storage writes); one of this host is checked directly.
CREATION_GRACE_S = 60.0
# How long to wait for a study that has no attribute at all to show its creator: it may be a
# fraction of a second old.
UNNAMED_CREATOR_WAIT_S = 3.0


def study_exists(storage: Any, name: str) -> bool:
    import optuna

    # Names only: summaries load every trial of every study in the storage (slow on a shared
    # database, and they fail when another study is deleted meanwhile).
    return name in optuna.get_all_study_names(storage)


def _resume_hint(name: str, storage_url: str) -> str:
    return f"`mpsearch resume {name}`" + ("" if storage_url.startswith("sqlite:///studies/") else f" --storage {storage_url}")


def create_study(storage: Any, storage_url: str, name: str, spec: StudySpec, sampler: Any) -> Any:
    """A new study holding ``spec``; refuses if ``name`` already names a study in the storage,
    and replaces an abandoned half-created one (see the module docstring)."""
    import optuna

    from mpsearch.search.workers.identity import this_worker

    check_study_name(name)
    directions = [o["direction"] for o in spec.objectives]
    for _ in range(3):  # another creator may race this one through a replacement: bounded retries
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:
            _replace_if_abandoned(storage, storage_url, name)
            continue
        try:
            study.set_user_attr(CREATING_KEY, {**this_worker().attrs(), "time": time.time()})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([o["name"] for o in spec.objectives])
            study.set_user_attr(SPEC_KEY, spec.to_attr())
        except KeyError:
            raise StorageError(f"study {name!r} in {storage_url} was replaced by another process while this one "
                               f"created it (this one was paused for over {CREATION_GRACE_S:g} s); run the command "
                               "again, or pick another --study-name") from None
        return study
    raise StorageError(f"study {name!r} in {storage_url} is being created and replaced by several processes at once; "
                       f"run one `mpsearch search --study-name {name}`")


def _creation_state(study: Any) -> tuple[str, str]:
    """("complete" | "creating" | "abandoned" | "foreign", who created it) for a stored study."""
    from mpsearch.search.workers.identity import WorkerIdentity

    attrs = study.user_attrs
    if attrs.get(SPEC_KEY):
        return "complete", ""
    if study.trials:
        return "foreign", ""  # trials but no spec: not an mpsearch study, and it holds data
    creating = attrs.get(CREATING_KEY)
    if not isinstance(creating, dict):
        return ("abandoned", "") if not attrs else ("foreign", "")
    creator = WorkerIdentity.from_attrs(creating)
    label = creator.label if creator is not None else "an unknown process"
    started = creating.get("time")
    too_old = isinstance(started, (int, float)) and time.time() - started > CREATION_GRACE_S
    if (creator is not None and creator.is_gone()) or too_old:
        return "abandoned", label
    return "creating", label


def _load_plain(storage: Any, name: str) -> Any | None:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None  # deleted meanwhile


def _replace_if_abandoned(storage: Any, storage_url: str, name: str) -> None:
    """Delete ``name`` if it is an abandoned half-created study; StorageError (one line) otherwise."""
    import optuna

    deadline = time.monotonic() + UNNAMED_CREATOR_WAIT_S
    while True:
        study = _load_plain(storage, name)
        if study is None:
            return
        state, creator = _creation_state(study)
        if state != "abandoned" or creator or time.monotonic() >= deadline:
            break
        time.sleep(0.1)  # no attribute yet: its creator may be writing them right now
    if state == "complete":
        raise StorageError(f"study {name!r} already exists in {storage_url}: continue it with "
                           f"{_resume_hint(name, storage_url)}, or pick another --study-name")
    if state == "creating":
        raise StorageError(f"study {name!r} in {storage_url} is being created right now by {creator}; continue it "
                           f"with {_resume_hint(name, storage_url)} once that is done, or pick another --study-name")
    if state == "foreign":
        raise StorageError(f"study {name!r} in {storage_url} was not created by mpsearch (it has no {SPEC_KEY} "
                           "attribute); pick another --study-name")
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass  # another process replaced it first
    warnings.warn(f"replaced study {name!r} in {storage_url}: its creation {'by ' + creator + ' ' if creator else ''}"
                  "stopped before it was complete, and it held no trial")


def load_study(storage: Any, storage_url: str, name: str, sampler: Any = None) -> tuple[Any, StudySpec]:
    """The stored study and its spec; StorageError if absent, half-created, or not an mpsearch study."""
    import optuna

    check_study_name(name)
    if not study_exists(storage, name):
        names = optuna.get_all_study_names(storage)
        have = f"it holds {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"no study {name!r} in {storage_url} ({have}); give --storage or start one with `mpsearch search`")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    spec = read_spec(study)
    if spec is None:
        state, creator = _creation_state(study)
        if state == "creating":
            raise StorageError(f"study {name!r} in {storage_url} is being created right now by {creator}; "
                               "try again once that is done")
        if state == "abandoned":
            raise StorageError(f"study {name!r} in {storage_url} was never completed (its creation "
                               f"{'by ' + creator + ' ' if creator else ''}stopped before its spec was stored; it holds "
                               f"no trial): start it again with `mpsearch search ... --study-name {name}`, which replaces it")
        raise StorageError(f"study {name!r} in {storage_url} was not created by mpsearch (no {SPEC_KEY} attribute)")
    return study, spec


def objectives_for_resume(stored: StudySpec, given: list[str] | None, name: str) -> list[str]:
    """The objective specs to build when continuing study ``name``, without importing anything the
    stored study names.

    Built-in objectives come from the stored spec. A plug-in comes only from ``given`` (the command
    line): naming just the plug-ins is enough, and what is named must match what is stored (a
    mismatch is left for :func:`check_resume` to name). ``given`` that also lists built-ins replaces
    the stored list as a whole.
    """
    from mpsearch.objectives import is_plugin_spec, parse_plugin_spec

    stored_specs = [o.get("spec", o["name"]) for o in stored.objectives]
    given = list(given or [])
    if any(not is_plugin_spec(g) for g in given):
        return given
    named = {}
    for text in given:
        plugin_name, target, direction = parse_plugin_spec(text)
        named[f"{plugin_name}={target}:{direction}"] = text
    specs, missing = [], []
    for spec in stored_specs:
        if not is_plugin_spec(spec):
            specs.append(spec)
        elif spec in named:
            specs.append(named.pop(spec))
        else:
            missing.append(spec)
    if missing:
        raise InvalidSpecError(
            f"study {name!r} uses plug-in objective{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; mpsearch never imports code a stored study names: name "
            f"{'them' if len(missing) > 1 else 'it'} again with " + " ".join(f"--objective {m}" for m in missing)
        )
    return specs + list(named.values())  # plug-ins the study does not have: check_resume names them


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
    check_report_columns(network.name, network.layer_names, [o.name for o in objectives])
    return StudySpec(
        network=network.to_dict(),
        fingerprint=network.fingerprint(),
        menu=list(menu),
        objectives=[{"name": o.name, "direction": o.direction, "spec": o.spec()} for o in objectives],
        backend=backend.provenance(),
        sampler=sampler_settings,
        mpsearch_version=__version__,
    )


LATENCY_SCALE_KEY = "latency_scale"  # in a spec's backend provenance: the scale every trial's latency is on


def with_latency_scale(spec: StudySpec, backend: Any, network: Any) -> StudySpec:
    """``spec`` holding the scale ``backend`` puts ``network``'s latencies on, when it has one (a GPU
    backend timing against a reference measures it now): stored at creation, so every process that
    measures the study later uses the same one."""
    record = backend.scale_record(network)
    if record is not None:
        spec.backend[LATENCY_SCALE_KEY] = record
    return spec


def adopt_latency_scale(stored: StudySpec, backend: Any, network: Any, name: str) -> None:
    """Put the backend that continues study ``name`` on the study's stored scale (a study stored
    without one, by a backend without a scale or an older mpsearch, has none to adopt)."""
    record = stored.backend.get(LATENCY_SCALE_KEY)
    if record is not None:
        backend.adopt_scale(network, record, f"study {name!r}")


def feasible_values(study: Any) -> list[list[float]]:
    """Objective values of the study's complete trials whose configuration could run."""
    import optuna

    from mpsearch.search.record import is_feasible

    return [list(t.values) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values is not None and is_feasible(t)]


def derived_reference_point(study: Any) -> list[float] | None:
    """The reference point the study's complete, feasible trials give (None without any); computes
    only. A study stores one (:func:`store_reference_point`) so that its hypervolume stays on one scale."""
    from mpsearch.search.hypervolume import reference_point

    values = feasible_values(study)
    return reference_point(values, [d.name.lower() for d in study.directions]) if values else None


def store_reference_point(study: Any) -> list[float] | None:
    """Fix the study's hypervolume reference point, if it has none yet, from its trials so far, and
    store it with its spec. Called by the search when it stops (it writes to the study anyway), so
    that a report only ever reads it."""
    spec = read_spec(study)
    if spec is None or spec.reference_point is not None:
        return None if spec is None else spec.reference_point
    point = derived_reference_point(study)
    if point is not None:
        spec.reference_point = point
        study.set_user_attr(SPEC_KEY, spec.to_attr())
    return point
