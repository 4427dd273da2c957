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
``network`` a :class:`~mpsearch.network.Network`.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from mpsearch.errors import InvalidSpecError, ObjectiveError
from mpsearch.network import Network
from mpsearch.space import Config, capacity

DIRECTIONS = ("minimize", "maximize")


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
    """A user callable loaded by import path; its result is checked to be a finite real number."""

    def __init__(self, name: str, target: str, direction: str, func: Callable[..., Any]):
        self.name, self.target, self.direction, self.func = name, target, direction, func

    def spec(self) -> str:
        return f"{self.name}={self.target}:{self.direction}"

    def evaluate(self, network: Network, config: Config) -> Evaluation:
        try:
            value = self.func(config, network)
        except Exception as err:  # a plug-in's failure is this trial's failure, not the study's
            raise ObjectiveError(f"objective {self.name} ({self.target}) raised {type(err).__name__}: {err}") from err
        return Evaluation(check_objective_value(self.name, value))


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
    # Module paths are relative to the current directory, as with `python -m`; the `mpsearch` console
    # script does not put it on sys.path. Appended, so it never shadows an installed package.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidSpecError(f"objective {target!r}: cannot import module {module_name!r} ({err}); check the path and PYTHONPATH") from None
    except Exception as err:
        raise InvalidSpecError(f"objective {target!r}: importing {module_name!r} raised {type(err).__name__}: {err}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidSpecError(f"objective {target!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidSpecError(f"objective {target!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj


def parse_objective(text: str, backend: Any = None) -> Objective:
    """One objective from its command-line form (see the module docstring)."""
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
    name, eq, rest = text.partition("=")
    if not eq:
        name, rest = "", text
    parts = rest.split(":")
    direction = "maximize"
    if len(parts) == 3:
        direction = parts[2].strip().lower()
        if direction not in DIRECTIONS:
            raise InvalidSpecError(f"objective {text!r}: direction must be minimize or maximize, got {parts[2]!r}")
    elif len(parts) != 2:
        raise InvalidSpecError(
            f"objective {text!r} is not 'latency', 'capacity' or 'package.module:function[:minimize|maximize]'"
        )
    target = f"{parts[0]}:{parts[1]}"
    func = load_callable(target)
    return PluginObjective(name or parts[1].split(".")[-1], target, direction, func)


def parse_objectives(texts: list[str], backend: Any = None) -> list[Objective]:
    """Objectives from their command-line forms; at least two, with unique names."""
    objectives = [parse_objective(t, backend) for t in texts]
    if len(objectives) < 2:
        raise InvalidSpecError(f"a Pareto search needs at least 2 objectives, got {len(objectives)}: add e.g. --objective capacity")
    names = [o.name for o in objectives]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidSpecError(f"objective name {dupes[0]!r} is used twice: rename one with NAME=package.module:function")
    return objectives
