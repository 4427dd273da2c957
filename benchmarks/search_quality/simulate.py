"""A search as mpsearch runs it, with the measurement replaced by a function of the configuration.

It follows ``mpsearch.search.run`` where that matters to a sampler: a repeated configuration is told
the stored values and costs no measurement; a configuration the backend cannot run is told as
complete with the ``unsupported`` constraint violated (and pessimistic values, as stored); every
finished trial carries the same constraints. ``workers`` trials are asked before any is told (k
GPUs asking at once); a round is one such batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from mpsearch.search.hypervolume import hypervolume
from mpsearch.space import SearchSpace

INFEASIBLE = "unsupported"


@dataclass
class Trace:
    """One run: after each measurement, the hypervolume fraction of the feasible measured front."""

    hv_fraction: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round each measurement finished in
    infeasible: int = 0
    ask_seconds: list[float] = field(default_factory=list)  # wall time of each ask
    ask_cpu_seconds: list[float] = field(default_factory=list)  # CPU time of this process for each ask
    watched: list = field(default_factory=list)  # ``watch(study)`` after each measurement
    keys: list = field(default_factory=list)  # each measurement's configuration key (None: refused)
    values: list = field(default_factory=list)  # each measurement's values (None: refused)

    def measurements_to(self, fraction: float) -> float:
        hit = [i for i, h in enumerate(self.hv_fraction) if h >= fraction * (1 - 1e-12)]
        return hit[0] + 1 if hit else float("nan")

    def rounds_to(self, fraction: float) -> float:
        hit = [i for i, h in enumerate(self.hv_fraction) if h >= fraction * (1 - 1e-12)]
        return self.rounds[hit[0]] if hit else float("nan")


def simulate(space: SearchSpace, evaluate: Callable, sampler, directions: Sequence[str], reference: Sequence[float],
             true_hv: float, budget: int, *, workers: int = 1,
             constraints: Callable[[tuple], dict[str, float]] | None = None,
             metric_names: Sequence[str] | None = None, watch: Callable | None = None) -> Trace:
    """``evaluate(config) -> tuple of values``, or None when the configuration cannot run.
    ``constraints(values) -> {name: value}`` adds the user's constraints (feasible when <= 0); the
    hypervolume then counts feasible points only."""
    import optuna

    study = optuna.create_study(directions=list(directions), sampler=sampler)
    if metric_names:
        study.set_metric_names(list(metric_names))
    measured: dict[str, tuple] = {}
    infeasible: set[str] = set()
    trace = Trace()
    feasible_points: list[tuple] = []
    asks, rounds = 0, 0
    worst = [1e30 if d == "minimize" else -1e30 for d in directions]
    while len(measured) + len(infeasible) < budget and asks < 20 * budget:
        rounds += 1
        batch = []
        for _ in range(min(workers, budget - len(measured) - len(infeasible))):
            t0, c0 = time.perf_counter(), time.process_time()
            trial = study.ask()
            config = space.suggest(trial)
            trace.ask_seconds.append(time.perf_counter() - t0)
            trace.ask_cpu_seconds.append(time.process_time() - c0)
            asks += 1
            batch.append((trial, config))
        for trial, config in batch:
            key = config.key
            if key in measured or key in infeasible:  # answered from the stored trial, not measured
                values = measured.get(key, worst)
                trial.set_constraint(INFEASIBLE, 1.0 if key in infeasible else 0.0)
                for name, v in (constraints(values) if constraints else {}).items():
                    trial.set_constraint(name, v if key in measured else 0.0)
                study.tell(trial, values)
                continue
            values = evaluate(config)
            if values is None:
                infeasible.add(key)
                trace.infeasible += 1
                trial.set_constraint(INFEASIBLE, 1.0)
                for name in (constraints(worst) if constraints else {}):
                    trial.set_constraint(name, 0.0)
                study.tell(trial, worst)
                trace.keys.append(None)
                trace.values.append(None)
            else:
                values = tuple(float(v) for v in values)
                measured[key] = values
                trial.set_constraint(INFEASIBLE, 0.0)
                extra = constraints(values) if constraints else {}
                for name, v in extra.items():
                    trial.set_constraint(name, v)
                study.tell(trial, values)
                trace.keys.append(key)
                trace.values.append(values)
                if all(v <= 0 for v in extra.values()):
                    feasible_points.append(values)
            hv = hypervolume(feasible_points, reference, directions) if feasible_points else 0.0
            trace.hv_fraction.append(hv / true_hv)
            trace.rounds.append(rounds)
            if watch is not None:
                trace.watched.append(watch(study))
    return trace


def codes_of(space: SearchSpace, config) -> np.ndarray:
    index = {f: i for i, f in enumerate(space.menu)}
    return np.array([index[config[members[0]]] for _, members in space.decisions])
