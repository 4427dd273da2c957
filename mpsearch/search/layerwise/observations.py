"""What the sampler reads from a study: measured configurations and their values, those running,
those that failed, and those a backend refused (infeasible)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mpsearch.errors import InvalidSpecError
from mpsearch.search.record import INFEASIBLE_CONSTRAINT

# Values this large are the pessimistic placeholders stored with a refused configuration (or a
# foreign study's stand-in for one): never a measurement.
_PLACEHOLDER = 1e29


@dataclass
class Observations:
    codes: np.ndarray  # (n, D) distinct measured configurations, in the order first measured
    values: np.ndarray  # (n, M) minimisation-oriented (maximised objectives negated); repeats averaged
    pending: np.ndarray  # (r, D) RUNNING / WAITING configurations not completed
    failed: np.ndarray  # (q, D) FAILED configurations never completed: not modelled, not proposed
    refused: np.ndarray  # (u, D) configurations a backend cannot run: not modelled, not proposed


def refused_by_backend(trial: Any) -> bool:
    """A complete trial whose configuration could not run: its ``unsupported`` constraint is
    violated, or its values are placeholders rather than measurements."""
    if (trial.constraints or {}).get(INFEASIBLE_CONSTRAINT, 0.0) > 0:
        return True
    return any(not math.isfinite(v) or abs(v) >= _PLACEHOLDER for v in trial.values)


def read_observations(study: Any, names: Sequence[str], menu: Sequence[str], sign: np.ndarray) -> Observations:
    """The study's trials as format-index codes over the decisions ``names``."""
    from optuna.trial import TrialState

    index = {f: i for i, f in enumerate(menu)}
    n_obj = len(sign)
    sums: dict[tuple[int, ...], list] = {}
    pending: set[tuple[int, ...]] = set()
    failed: set[tuple[int, ...]] = set()
    refused: set[tuple[int, ...]] = set()
    trials = study.get_trials(deepcopy=False,
                              states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL))
    for t in trials:
        try:
            key = tuple(index[t.params[name]] for name in names)
        except KeyError:
            continue  # not (yet) a full configuration of this space
        if t.state == TrialState.COMPLETE:
            if t.values is None or len(t.values) != n_obj:
                raise InvalidSpecError(
                    f"trial {t.number} has {0 if t.values is None else len(t.values)} objective values but the "
                    f"layerwise sampler was built for {n_obj}: build it with the study's directions")
            if refused_by_backend(t):
                refused.add(key)
                continue
            acc = sums.setdefault(key, [np.zeros(n_obj), 0])
            acc[0] += np.asarray(t.values, dtype=float)
            acc[1] += 1
        elif t.state == TrialState.FAIL:
            failed.add(key)
        else:
            pending.add(key)
    keys = list(sums)
    d = len(names)
    codes = np.array(keys, dtype=np.int64).reshape(len(keys), d)
    values = np.array([sums[k][0] / sums[k][1] for k in keys]).reshape(len(keys), n_obj) * sign
    done = set(sums)
    pend = np.array([k for k in pending if k not in done], dtype=np.int64).reshape(-1, d)
    fail = np.array([k for k in failed if k not in done and k not in pending], dtype=np.int64).reshape(-1, d)
    bad = np.array([k for k in refused if k not in done], dtype=np.int64).reshape(-1, d)
    return Observations(codes, values, pend, fail, bad)
