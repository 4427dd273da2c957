"""Bounds on objectives (``--constraint 'latency<=3.0'``): the decision a user makes under a budget.

A study stores its constraints in its spec (``extra["constraints"]``). Every finished trial carries
one Optuna constraint per bound, named by its text, valued ``value - bound`` for ``<=`` and
``bound - value`` for ``>=`` (feasible when <= 0, Optuna's convention), so Optuna's own samplers
(TPE, NSGA-II, GP) honour them, ``study.best_trials`` holds feasible trials only, and the layerwise
sampler turns to the best feasible configuration (:func:`best_feasible`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from mpsearch.errors import InvalidSpecError
from mpsearch.search import attrs

CONSTRAINTS_KEY = attrs.CONSTRAINTS  # in StudySpec.extra
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*([^\s].*?)\s*$")


@dataclass(frozen=True)
class Constraint:
    objective: str
    sense: str  # "<=" or ">="
    bound: float

    @property
    def name(self) -> str:
        return f"{self.objective}{self.sense}{self.bound:g}"

    def violation(self, value: float) -> float:
        """> 0 when ``value`` breaks the bound, by how much; <= 0 when it holds."""
        return value - self.bound if self.sense == "<=" else self.bound - value

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "sense": self.sense, "bound": self.bound}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Constraint":
        return cls(str(data["objective"]), str(data["sense"]), float(data["bound"]))


def parse_constraint(text: str, objectives: Sequence[str]) -> Constraint:
    """``NAME<=BOUND`` or ``NAME>=BOUND`` over one of ``objectives``; a one-line error otherwise."""
    match = _PATTERN.match(text or "")
    if not match:
        raise InvalidSpecError(f"--constraint {text!r} must look like OBJECTIVE<=BOUND or OBJECTIVE>=BOUND, "
                               "e.g. 'latency<=3.0'")
    name, sense, bound_text = match.groups()
    if name not in objectives:
        raise InvalidSpecError(f"--constraint {text!r} bounds {name!r}, which is not an objective of this study; "
                               f"objectives: {', '.join(objectives)}")
    try:
        bound = float(bound_text)
    except ValueError:
        raise InvalidSpecError(f"--constraint {text!r}: the bound {bound_text!r} is not a number") from None
    if not math.isfinite(bound):
        raise InvalidSpecError(f"--constraint {text!r}: the bound must be a finite number, got {bound_text!r}")
    return Constraint(name, sense, bound)


def parse_constraints(texts: Sequence[str] | None, objectives: Sequence[str]) -> list[Constraint]:
    constraints = [parse_constraint(t, objectives) for t in texts or ()]
    names = [c.name for c in constraints]
    for name in names:
        if names.count(name) > 1:
            raise InvalidSpecError(f"--constraint {name!r} is given twice: give each bound once")
    return constraints


def stored_constraints(study: Any) -> list[Constraint]:
    """The constraints stored with an mpsearch study (none for a foreign one)."""
    from mpsearch.search.record import read_spec

    spec = read_spec(study)
    if spec is None:
        return []
    return [Constraint.from_dict(d) for d in spec.extra.get(CONSTRAINTS_KEY, [])]


def set_trial_constraints(trial: Any, constraints: Sequence[Constraint], objectives: Sequence[str],
                          values: Sequence[float] | None) -> None:
    """Give ``trial`` one Optuna constraint per bound. ``values`` None (a configuration that could not
    run): 0 for each, since nothing was measured and the trial is infeasible by its own constraint;
    every trial then has the same constraints, which Optuna's GPSampler requires."""
    for c in constraints:
        value = 0.0 if values is None else c.violation(float(values[list(objectives).index(c.objective)]))
        trial.set_constraint(c.name, value)


def best_feasible(study: Any, constraints: Sequence[Constraint]) -> dict[str, Any] | None:
    """The feasible trial best in the first objective that no constraint bounds (ties: the other
    objectives, unbounded first), or None. ``{"trial", "objective", "values", "config"}``."""
    import optuna

    from mpsearch.search.record import CONFIG_ATTR, REPEAT_ATTR
    from mpsearch.search.results import objective_names

    names = objective_names(study)
    bounded = {c.objective for c in constraints}
    free = [i for i, n in enumerate(names) if n not in bounded] or list(range(len(names)))
    sign = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    best = None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.values is None or REPEAT_ATTR in t.user_attrs:
            continue
        if any(v > 0 for v in (t.constraints or {}).values()):
            continue
        if any(c.violation(t.values[names.index(c.objective)]) > 0 for c in constraints):
            continue
        key = tuple(sign[i] * t.values[i] for i in free + [i for i in range(len(names)) if i not in free])
        if best is None or key < best[0]:
            best = (key, t)
    if best is None:
        return None
    t = best[1]
    return {"trial": t.number, "objective": names[free[0]], "values": dict(zip(names, t.values)),
            "config": t.user_attrs.get(CONFIG_ATTR, "")}


def best_feasible_text(study: Any) -> str | None:
    """One line naming the best feasible configuration of a study with constraints; None without."""
    constraints = stored_constraints(study)
    if not constraints:
        return None
    bounds = ", ".join(c.name for c in constraints)
    best = best_feasible(study, constraints)
    if best is None:
        return f"no measured configuration meets {bounds}"
    values = ", ".join(f"{k} {v:.6g}" for k, v in best["values"].items())
    return (f"best configuration meeting {bounds} (by {best['objective']}): trial {best['trial']} "
            f"({values}): {best['config']}")


def constraints_extra(texts: Sequence[str] | None, objectives: Sequence[str]) -> dict[str, Any]:
    """What a new study's spec stores for ``--constraint`` texts (nothing without any)."""
    constraints = parse_constraints(texts, objectives)
    return {CONSTRAINTS_KEY: [c.to_dict() for c in constraints]} if constraints else {}
