"""Objectives: what a trial is scored on.

Contract: an :class:`Objective` has a ``name`` (unique in a study), a ``direction`` ("minimize" or
"maximize") and :meth:`Objective.evaluate`, which returns an :class:`Evaluation` (a finite float and
JSON-able attributes to store on the trial) or raises:
:class:`~mpsearch.errors.ObjectiveError` (this trial fails with the reason; the study goes on),
:class:`~mpsearch.errors.UnsupportedConfigError` / ``KernelCheckError`` (likewise).

Built in: ``latency`` (ms, minimised, from the latency backend), ``capacity`` (Σ k × bits,
maximised; see :mod:`mpsearch.space`) and ``sqnr:WEIGHTS`` (mean per-layer signal-to-quantization
noise of real weights in an .npz/.safetensors file, maximised; see :mod:`mpsearch.objectives.sqnr`).
Plug-ins are named by import path on the command line::

    --objective my_pkg.proxies:accuracy:maximize          # name "accuracy"
    --objective acc=my_pkg.proxies:accuracy:maximize      # name "acc"

A plug-in is a callable ``f(config, network) -> float``: ``config`` is a
:class:`~mpsearch.space.Config` (a mapping layer name → format name, ``config.key`` prints it) and
``network`` a :class:`~mpsearch.network.Network`. It runs in a process of its own
(:mod:`mpsearch.objectives.plugin`), so nothing it does can stop the search. Plug-in import paths
come only from the command line or the Python API, never from a stored study.

From Python, the same function can be passed itself (:class:`CallableObjective`, made by
:func:`objective`): it runs in the search's own process (it may close over a model already in
memory), so it is not isolated: an exception fails its trial, but a hang or ``sys.exit`` is the
caller's. A study stores only its name and direction (``NAME=<callable>:DIRECTION``): code cannot be
stored, so resuming such a study needs the same function passed again under the same name.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from mpsearch.errors import InvalidSpecError, ObjectiveError
from mpsearch.network import Network
from mpsearch.space import Config, capacity
from mpsearch.usercode import import_user_module, user_attribute
from mpsearch.validation import BUILT_IN_OBJECTIVES, check_objective_name

DIRECTIONS = ("minimize", "maximize")
# A plug-in objective (user Python) that runs longer than this fails its trial; the study goes on.
DEFAULT_OBJECTIVE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Evaluation:
    value: float
    attrs: dict[str, Any] = field(default_factory=dict)


class Objective(ABC):
    name: str
    direction: str

    @abstractmethod
    def evaluate(self, network: Network, config: Config) -> Evaluation:
        """Score ``config``; see the module docstring for what may be raised."""

    def prepare(self, network: Network) -> None:
        """Called once before the first trial: raise InvalidSpecError for anything that can never
        work with ``network`` (so it fails at start-up with one line, not in every trial)."""

    def spec(self) -> str:
        """The string that recreates this objective (stored with the study, compared on resume)."""
        return self.name

    def close(self) -> None:
        """Release what the objective holds (a plug-in's process); it may be prepared again after."""


class LatencyObjective(Objective):
    name = "latency"
    direction = "minimize"

    def __init__(self, backend: Any):
        self.backend = backend

    def evaluate(self, network: Network, config: Config) -> Evaluation:
        result = self.backend.measure(network, config)
        return Evaluation(result.ms, result.as_attrs())


class CapacityObjective(Objective):
    name = "capacity"
    direction = "maximize"

    def evaluate(self, network: Network, config: Config) -> Evaluation:
        return Evaluation(float(capacity(network, config)))


class PluginObjective(Objective):
    """A user callable named by import path, run in a process of its own
    (:mod:`mpsearch.objectives.plugin`): whatever it does (raise, ``sys.exit``, crash, hang past
    ``timeout_s``), only its trial fails. Its module is imported there, at :meth:`prepare` (or the
    first call), never in the search's process."""

    def __init__(self, name: str, target: str, direction: str, *, timeout_s: float | None = DEFAULT_OBJECTIVE_TIMEOUT_S):
        self.name, self.target, self.direction, self.timeout_s = name, target, direction, timeout_s
        self._process: Any = None

    def spec(self) -> str:
        return f"{self.name}={self.target}:{self.direction}"

    def prepare(self, network: Network) -> None:
        """Check the name against the network's layers, then start the plug-in's process and import
        it there: an import that fails is one line now, not one failed trial after another."""
        check_objective_name(self.name, network.layer_names, network.name)
        self._process_for(network)

    def _process_for(self, network: Network) -> Any:
        from mpsearch.objectives.plugin import PluginProcess

        if self._process is None or self._process.network != network:
            self.close()
            self._process = PluginProcess(self.name, self.target, network)
            self._process.start(self.timeout_s)
        return self._process

    def evaluate(self, network: Network, config: Config, timeout_s: float | None = None) -> Evaluation:
        """The plug-in's value on ``config``, within ``timeout_s`` (default: this objective's)."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        value = self._process_for(network).call(config.formats, limit, str(config))
        if isinstance(value, tuple):  # (type name, repr) of what came back instead of a number
            raise ObjectiveError(f"objective {self.name} returned {value[0]} {value[1]}; it must return a float")
        return Evaluation(check_objective_value(self.name, value))

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None


CALLABLE_TARGET = "<callable>"  # what a Python callable's stored spec holds instead of an import path


class CallableObjective(Objective):
    """A Python callable ``fn(config, network) -> float`` run in this process (see the module
    docstring). ``name`` defaults to the function's ``__name__``; ``direction`` to maximize (as for
    import-path plug-ins), or on resume to the stored objective's direction."""

    def __init__(self, fn: Callable[[Config, Network], float], name: str | None = None, direction: str | None = None):
        if not callable(fn):
            raise InvalidSpecError(f"objective {fn!r} is a {type(fn).__name__}, not a callable f(config, network) -> float")
        name = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidSpecError(f"objective {fn!r} has no usable name ({name!r}): pass it as "
                                   f"mpsearch.objective(fn, name='accuracy')")
        if name in BUILT_IN_OBJECTIVES:
            raise InvalidSpecError(f"objective {fn!r}: {name!r} is a built-in objective's name; name it otherwise "
                                   f"with mpsearch.objective(fn, name=...)")
        check_objective_name(name)
        if direction is not None and direction not in DIRECTIONS:
            raise InvalidSpecError(f"objective {name}: direction must be minimize or maximize, got {direction!r}")
        self.fn, self.name, self.given_direction = fn, name, direction

    @property
    def direction(self) -> str:  # type: ignore[override]
        return self.given_direction or "maximize"

    def spec(self) -> str:
        return f"{self.name}={CALLABLE_TARGET}:{self.direction}"

    def prepare(self, network: Network) -> None:
        check_objective_name(self.name, network.layer_names, network.name)

    def evaluate(self, network: Network, config: Config) -> Evaluation:
        try:
            value = self.fn(config, network)
        except ObjectiveError:
            raise
        except Exception as err:  # the user's function: its failure fails this trial, with the reason
            raise ObjectiveError(f"objective {self.name} raised {type(err).__name__}: {err}") from None
        return Evaluation(check_objective_value(self.name, value))


def objective(fn: Callable[[Config, Network], float], *, name: str | None = None,
              direction: str | None = None) -> CallableObjective:
    """A Python function as an objective, named and directed (see :class:`CallableObjective`)."""
    return CallableObjective(fn, name, direction)


def is_callable_spec(text: str) -> bool:
    """Whether a stored objective spec is a Python callable's (which a study cannot hold)."""
    _, eq, rest = text.partition("=")
    return bool(eq) and rest.startswith(CALLABLE_TARGET + ":")


def check_objective_value(name: str, value: Any) -> float:
    """``value`` as a float, or ObjectiveError saying why it is not a usable objective value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ObjectiveError(f"objective {name} returned {type(value).__name__} {value!r}; it must return a float")
    value = float(value)
    if not math.isfinite(value):
        raise ObjectiveError(f"objective {name} returned {value}; it must return a finite float")
    return value


def load_callable(target: str) -> Callable[..., Any]:
    """``pkg.module:function`` (or ``pkg.module:Class.method``) to the callable it names."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidSpecError(f"objective {target!r} must be 'package.module:function[:minimize|maximize]'")
    try:
        module = import_user_module(module_name)
    except ImportError as err:
        raise InvalidSpecError(f"objective {target!r}: cannot import module {module_name!r} ({err}); check the path and PYTHONPATH") from None
    except Exception as err:
        raise InvalidSpecError(f"objective {target!r}: importing {module_name!r} raised {type(err).__name__}: {err}") from None
    try:
        obj = user_attribute(module, attr)
    except AttributeError:
        raise InvalidSpecError(f"objective {target!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise InvalidSpecError(f"objective {target!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj


def is_plugin_spec(text: str) -> bool:
    """Whether an objective's command-line form names a plug-in (code to import), not a built-in
    (nor a Python callable's stored spec, which names no code)."""
    text = text.strip()
    return text not in ("latency", "capacity") and not text.startswith("sqnr:") and not is_callable_spec(text)


def parse_plugin_spec(text: str) -> tuple[str, str, str]:
    """(name, ``package.module:function``, direction) of a plug-in's command-line form; imports nothing."""
    text = text.strip()
    name, eq, rest = text.partition("=")
    if not eq:
        name, rest = "", text
    parts = rest.split(":")
    direction = "maximize"
    if len(parts) == 3:
        direction = parts[2].strip().lower()
        if direction not in DIRECTIONS:
            raise InvalidSpecError(f"objective {text!r}: direction must be minimize or maximize, got {parts[2]!r}")
    elif len(parts) != 2 or not all(p.strip() for p in parts):
        raise InvalidSpecError(
            f"objective {text!r} is not 'latency', 'capacity' or 'package.module:function[:minimize|maximize]'"
        )
    module, attr = parts[0].strip(), parts[1].strip()
    name = name.strip() or attr.split(".")[-1]
    if name in BUILT_IN_OBJECTIVES:
        raise InvalidSpecError(f"objective {text!r}: {name!r} is a built-in objective's name; name the plug-in "
                               f"otherwise: --objective NAME={module}:{attr}:{direction}")
    check_objective_name(name)
    return name, f"{module}:{attr}", direction


def parse_objective(text: str, backend: Any = None) -> Objective:
    """One objective from its command-line form (see the module docstring). A plug-in's module is
    not imported here: its own process imports it when the objective is prepared."""
    text = text.strip()
    if text == "latency":
        if backend is None:
            raise InvalidSpecError("objective latency needs a latency backend")
        return LatencyObjective(backend)
    if text == "capacity":
        return CapacityObjective()
    if text.startswith("sqnr:"):
        from mpsearch.objectives.sqnr import SqnrObjective

        path = text.removeprefix("sqnr:")
        if not path:
            raise InvalidSpecError("objective sqnr needs a weights file: --objective sqnr:weights.npz")
        return SqnrObjective(path)
    return PluginObjective(*parse_plugin_spec(text))


def parse_objectives(texts: list[Any], backend: Any = None) -> list[Objective]:
    """Objectives from their command-line forms, :class:`Objective` instances, or Python callables
    (a bare function is named by its ``__name__``); at least two, with unique names."""
    objectives = [o if isinstance(o, Objective) else parse_objective(o, backend) if isinstance(o, str)
                  else CallableObjective(o) for o in texts]
    if len(objectives) < 2:
        raise InvalidSpecError(f"a Pareto search needs at least 2 objectives, got {len(objectives)}: add e.g. --objective capacity")
    names = [o.name for o in objectives]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidSpecError(f"objective name {dupes[0]!r} is used twice: rename one with NAME=package.module:function")
    return objectives
