"""Where studies live, and the pieces a study run needs: the network, the backend, the menu and the
objectives, checked before a study exists (:func:`build_setup`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mpsearch.errors import InvalidSpecError, MpsearchError, UnsupportedConfigError
from mpsearch.network import Network

DEFAULT_OBJECTIVES = ("latency", "capacity")


# --- where studies live ---------------------------------------------------------------------------

def study_storage(name: str, storage: str | None = None) -> str:
    """The storage URL of study ``name``: ``storage`` when given; else the file in ``studies/`` that
    holds it, ``studies/NAME.db`` (SQLite) or ``studies/NAME.log`` (journal, written by a search
    with several workers); ``sqlite:///studies/NAME.db`` when neither exists yet."""
    from mpsearch.search.storage import STUDIES_DIR, default_storage_url
    from mpsearch.validation import check_study_name

    if storage:
        return storage
    check_study_name(name)
    sqlite = default_storage_url(name)
    journal = STUDIES_DIR / f"{name}.log"
    if not journal.is_file():
        return sqlite
    if not (STUDIES_DIR / f"{name}.db").is_file():
        return f"journal:{journal}"
    return sqlite if _holds(sqlite, name) else f"journal:{journal}"


def _holds(url: str, name: str) -> bool:
    import optuna

    from mpsearch.search.storage import open_storage

    try:
        return name in optuna.get_all_study_names(open_storage(url, read_only=True))
    except MpsearchError:
        return False


def local_storages() -> list[str]:
    """The storages in ``studies/``: every ``*.db`` (SQLite) and ``*.log`` (journal), as URLs."""
    from mpsearch.search.storage import STUDIES_DIR

    if not STUDIES_DIR.is_dir():
        return []
    dbs = [f"sqlite:///{p}" for p in sorted(STUDIES_DIR.glob("*.db"))]
    logs = [f"journal:{p}" for p in sorted(STUDIES_DIR.glob("*.log"))]
    return dbs + logs


# --- the pieces a study run needs ----------------------------------------------------------------

def as_network(network: Network | str | Path | Mapping[str, Any]) -> Network:
    """A Network from a Network, a preset name, a TOML path or a dict."""
    from mpsearch.network import resolve_network

    if isinstance(network, Network):
        return network
    if isinstance(network, (str, Path)):
        return resolve_network(str(network))
    if isinstance(network, Mapping):
        return Network.from_dict(network, source="network dict")
    raise InvalidSpecError(f"network must be a Network, a preset name, a TOML path or a dict, got {type(network).__name__}")


def objective_items(objectives: Any) -> list[Any]:
    """The caller's objectives as a list (a dict ``{name: callable}`` becomes named callables)."""
    from mpsearch.objectives import objective

    if objectives is None:
        return list(DEFAULT_OBJECTIVES)
    if isinstance(objectives, str):
        raise InvalidSpecError(f"objectives must be a list, e.g. ['latency', 'capacity'], got the string {objectives!r}")
    if isinstance(objectives, Mapping):
        return [objective(fn, name=name) if not isinstance(fn, str) else fn for name, fn in objectives.items()]
    return list(objectives)


@dataclass
class Setup:
    """A network with its latency backend, format menu, search space and prepared objectives."""

    network: Network
    backend: Any
    reason: str  # why this backend (one line)
    menu: tuple[str, ...]
    space: Any
    objectives: list[Any]

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def exact_objectives(self) -> dict[int, Any]:
        """Objectives the layerwise sampler can compute without measuring (capacity), by index."""
        from mpsearch.objectives import CapacityObjective
        from mpsearch.space import capacity

        net = self.network
        return {i: (lambda c: float(capacity(net, c))) for i, o in enumerate(self.objectives)
                if isinstance(o, CapacityObjective)}

    def close(self) -> None:
        self.backend.close()
        for objective in self.objectives:
            objective.close()


def build_setup(network: Any, *, backend: str = "auto", device: str | None = None, data: str | None = None,
                cache_dir: str | None = None, timing: str | None = None, formats: Any = None,
                objectives: Any = None) -> Setup:
    """Resolve the network, make the backend, check the menu against it and prepare the objectives
    (anything that can never work is refused here, in one line, before a study exists)."""
    from mpsearch.backends import make_backend
    from mpsearch.formats import check_menu, default_menu, parse_menu
    from mpsearch.objectives import parse_objectives
    from mpsearch.space import SearchSpace

    net = as_network(network)
    wanted = parse_menu(formats) if formats is not None else None
    chosen, reason = make_backend(backend, net, device=device, data=data, cache_dir=cache_dir, timing=timing,
                                  menu=wanted)
    try:
        caps = chosen.capabilities
        menu = wanted if wanted is not None else default_menu(caps.arch)
        check_menu(menu, caps.arch)
        missing = [f for f in menu if f not in caps.formats]
        if missing:
            raise UnsupportedConfigError(
                f"backend {caps.name} ({caps.device}) cannot price {', '.join(missing)}; it has "
                f"{', '.join(sorted(caps.formats))}: narrow the formats"
            )
        space = SearchSpace(net, menu)
        objs = parse_objectives(objective_items(objectives), chosen)
        setup = Setup(net, chosen, reason, menu, space, objs)
        for objective in objs:
            objective.prepare(net)
        chosen.prepare(net, menu)
    except BaseException:
        chosen.close()
        raise
    return setup


# --- the pieces of a stored study ----------------------------------------------------------------

def stored_device(stored: Any, backend_name: str) -> str | None:
    """The device argument that remakes the stored study's backend: the roofline model's GPU, or the
    replay recording it was served from; None for backends that measure the GPU they run on, or
    when another backend is asked for (the resume check then names the difference)."""
    made = stored.backend.get("backend")
    if backend_name != made:
        return None
    if made == "roofline":
        return stored.backend.get("device")
    if made == "replay":
        return stored.backend.get("recording") or stored.backend.get("device")
    return None


def resume_objectives(stored: Any, given: Any, name: str, how_to_pass: str) -> list[Any]:
    """What to build the objectives of stored study ``name`` from, importing nothing it names.

    Built-ins come from the stored spec. An import-path plug-in comes only from ``given`` (and must
    match what is stored); a Python callable only from ``given`` too, by its objective name, taking
    the stored direction unless it names one. ``given`` that lists a built-in replaces the stored
    list as a whole (the resume check then names any difference)."""
    from mpsearch.objectives import CallableObjective, Objective, is_callable_spec, is_plugin_spec, objective
    from mpsearch.search.study import objectives_for_resume

    items = [] if given is None else objective_items(given)
    strings = [g for g in items if isinstance(g, str)]
    others = [g if isinstance(g, Objective) else objective(g) for g in items if not isinstance(g, str)]
    if strings and any(not is_plugin_spec(s) for s in strings):
        return items
    by_name = {o.name: o for o in others}
    wanted = [o for o in stored.objectives if is_callable_spec(o.get("spec", ""))]
    missing = [o for o in wanted if o["name"] not in by_name]
    if missing:
        names = ", ".join(f"{o['name']} ({o['direction']})" for o in missing)
        raise InvalidSpecError(
            f"study {name!r} has Python-callable objective{'s' if len(missing) > 1 else ''} {names}, which a study "
            f"cannot store: {how_to_pass}")
    plain = dataclasses.replace(stored, objectives=[o for o in stored.objectives if not is_callable_spec(o.get("spec", ""))])
    from_strings = iter(objectives_for_resume(plain, strings, name))
    merged: list[Any] = []
    for o in stored.objectives:
        if is_callable_spec(o.get("spec", "")):
            chosen = by_name.pop(o["name"])
            if isinstance(chosen, CallableObjective) and chosen.given_direction is None:
                chosen = CallableObjective(chosen.fn, chosen.name, o["direction"])
            merged.append(chosen)
        else:
            merged.append(next(from_strings))
    return merged + list(from_strings) + list(by_name.values())  # extras: the resume check names them


def callables_hint(stored: Any, name: str, from_command_line: bool) -> str:
    """How to give a study's Python-callable objectives again (from Python: the command line cannot)."""
    from mpsearch.objectives import is_callable_spec

    names = [o["name"] for o in stored.objectives if is_callable_spec(o.get("spec", ""))]
    call = f"mpsearch.resume({name!r}, objectives={{{', '.join(f'{n!r}: {n}_function' for n in names)}}})"
    if from_command_line:
        return f"the command line cannot pass Python functions: continue the study from Python, {call}"
    return f"pass {'them' if len(names) > 1 else 'it'} again: {call}"
