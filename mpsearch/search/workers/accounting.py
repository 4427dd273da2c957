"""Study-wide counts: what is a measurement, the shared budget, duplicates, and per-worker tables."""

from __future__ import annotations

from typing import Any

from mpsearch.search import attrs
from mpsearch.search.record import CONFIG_ATTR, REPEAT_ATTR, WORKER_ATTR
from mpsearch.search.workers.identity import GPU_ATTR, WORKER_INDEX_ATTR
from mpsearch.search.workers.sweep import RETRY_ATTR, SWEPT_ATTR

COLLISION_ATTR = attrs.COLLISION  # on a backed-off trial: the trial measuring the same configuration
MEASURE_START_ATTR = attrs.MEASURE_START  # unix time the measurement began (after the claim held)
BUDGET_KEY = attrs.BUDGET  # study attr: the study's shared budget, {"trials": N}


def is_measurement(trial: Any) -> bool:
    """A trial that measured (or, RUNNING, is measuring) its configuration: not a repeat, a collision,
    or a dead worker's trial."""
    import optuna

    attrs = trial.user_attrs
    if trial.state == optuna.trial.TrialState.RUNNING and MEASURE_START_ATTR not in attrs:
        return False  # still deciding: it may turn out a repeat or a collision
    # A trial a sweep failed measured nothing; one that its worker told COMPLETE before the sweep
    # could (its sweeper wrote its name, then lost the race) did.
    swept = SWEPT_ATTR in attrs and trial.state != optuna.trial.TrialState.COMPLETE
    return CONFIG_ATTR in attrs and REPEAT_ATTR not in attrs and COLLISION_ATTR not in attrs and not swept


def count_measurements(study: Any, include_running: bool = False) -> int:
    import optuna

    S = optuna.trial.TrialState
    states = (S.COMPLETE, S.FAIL, S.RUNNING) if include_running else (S.COMPLETE, S.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if is_measurement(t))


def measurement_counts(study: Any) -> tuple[int, int]:
    """(finished, in flight): measurements told COMPLETE or FAIL, and RUNNING ones past their claim."""
    import optuna

    S = optuna.trial.TrialState
    finished = in_flight = 0
    for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.FAIL, S.RUNNING)):
        if is_measurement(t):
            if t.state == S.RUNNING:
                in_flight += 1
            else:
                finished += 1
    return finished, in_flight


def read_study_budget(study: Any) -> int | None:
    value = (study.user_attrs.get(BUDGET_KEY) or {}).get("trials")
    return int(value) if value is not None else None


def write_study_budget(study: Any, trials: int | None) -> None:
    study.set_user_attr(BUDGET_KEY, {"trials": trials})


def duplicate_report(study: Any) -> dict[str, Any]:
    """How often a configuration was measured more than once, and how often a claim prevented it."""
    import optuna

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE and is_measurement(t)]
    per_config: dict[str, int] = {}
    for t in complete:
        per_config[t.user_attrs[CONFIG_ATTR]] = per_config.get(t.user_attrs[CONFIG_ATTR], 0) + 1
    duplicated = {k: n for k, n in per_config.items() if n > 1}
    return {
        "trials": len(trials),
        "complete_measurements": len(complete),
        "distinct_configs_measured": len(per_config),
        "duplicate_measurements": sum(n - 1 for n in duplicated.values()),
        "duplicated_configs": sorted(duplicated),
        "collisions_prevented": sum(1 for t in trials if COLLISION_ATTR in t.user_attrs),
        "repeats_answered_from_storage": sum(1 for t in trials if REPEAT_ATTR in t.user_attrs),
        "swept_dead_worker_trials": sum(1 for t in trials if SWEPT_ATTR in t.user_attrs),
        "retries": sum(1 for t in trials if RETRY_ATTR in t.user_attrs),
        "running": sum(1 for t in trials if t.state == S.RUNNING),
        "waiting": sum(1 for t in trials if t.state == S.WAITING),
    }


def worker_summary(study: Any) -> Any:
    """A pandas DataFrame: per worker (host:pid) and GPU, the trials it measured, failed, repeated."""
    import optuna
    import pandas as pd

    S = optuna.trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if WORKER_ATTR not in a:
            continue
        rows.append({
            "worker": a[WORKER_ATTR], "worker_index": a.get(WORKER_INDEX_ATTR, ""), "gpu": a.get(GPU_ATTR, ""),
            "device": a.get(attrs.LATENCY_DEVICE) or a.get(attrs.DEVICE, ""), "source": a.get(attrs.LATENCY_SOURCE, ""),
            "measured": int(t.state == S.COMPLETE and is_measurement(t)),
            "failed": int(t.state == S.FAIL and is_measurement(t)),
            "repeats": int(REPEAT_ATTR in a), "collisions": int(COLLISION_ATTR in a),
            "died": int(SWEPT_ATTR in a), "measure_s": float(a.get(attrs.MEASURE_S, 0.0) or 0.0),
        })
    columns = ["worker", "worker_index", "gpu", "device", "source", "measured", "failed", "repeats",
               "collisions", "died", "measure_s"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows, columns=columns)
    keys = ["worker", "worker_index", "gpu"]
    out = frame.groupby(keys, dropna=False, sort=True).agg(
        device=("device", lambda s: ", ".join(sorted(set(s) - {""}))),
        source=("source", lambda s: ", ".join(sorted(set(s) - {""}))),
        measured=("measured", "sum"), failed=("failed", "sum"), repeats=("repeats", "sum"),
        collisions=("collisions", "sum"), died=("died", "sum"), measure_s=("measure_s", "sum"),
    ).reset_index()
    return out
