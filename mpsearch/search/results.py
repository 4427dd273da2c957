"""Tables of a stored study's results (pandas), shared by the CLI, reports and benchmarks.

``trials_frame`` has one row per trial; ``pareto_frame`` the Pareto-optimal configurations, one row
per distinct configuration (a repeated configuration's trial copies an earlier trial's values and
is dropped here). Both compute; nothing is rendered.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mpsearch.search import attrs
from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, REPEAT_ATTR, read_spec


def objective_names(study: Any) -> list[str]:
    names = study.metric_names
    if names:
        return list(names)
    return [f"objective_{i}" for i in range(len(study.directions))]


def trials_frame(study: Any) -> pd.DataFrame:
    """All trials: number, state, objective values, config, latency provenance, failure reason."""
    names = objective_names(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        values = t.values or [None] * len(names)
        row.update(dict(zip(names, values)))
        row["config"] = t.user_attrs.get(CONFIG_ATTR, "")
        row["latency_source"] = t.user_attrs.get(attrs.LATENCY_SOURCE, "")
        row["device"] = t.user_attrs.get(attrs.LATENCY_DEVICE, t.user_attrs.get(attrs.DEVICE, ""))
        row["repeat_of"] = t.user_attrs.get(REPEAT_ATTR)
        row["fail_reason"] = t.user_attrs.get(FAIL_ATTR, "")
        row.update({f"param:{k}": v for k, v in t.params.items()})
        rows.append(row)
    columns = ["trial", "state", *names, "config", "latency_source", "device", "repeat_of", "fail_reason"]
    frame = pd.DataFrame(rows)
    return frame if not frame.empty else pd.DataFrame(columns=columns)


def pareto_frame(study: Any) -> pd.DataFrame:
    """The Pareto-optimal configurations (``study.best_trials``: complete and feasible), one row per
    distinct configuration, sorted by the first objective; layer formats as one column per layer."""
    names = objective_names(study)
    spec = read_spec(study)
    layers = [layer["name"] for layer in spec.network["layers"]] if spec else []
    rows, seen = [], set()
    for t in sorted(study.best_trials, key=lambda t: (t.values[0], t.number)):
        key = t.user_attrs.get(CONFIG_ATTR, "")
        if key in seen:
            continue
        seen.add(key)
        row: dict[str, Any] = {"trial": t.number, **dict(zip(names, t.values))}
        row["latency_source"] = t.user_attrs.get(attrs.LATENCY_SOURCE, "")
        row["config"] = key
        if layers and key:
            row.update(dict(zip(layers, key.split(","))))
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", *names, "latency_source", "config", *layers])
