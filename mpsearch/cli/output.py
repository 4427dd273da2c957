"""How the commands print: the outcome of a search, its Pareto front with ties grouped, and JSON.

With ``--json`` a command prints one JSON document on stdout and nothing else; its human-readable
lines (and the search loop's notes) go to stderr (:func:`human_output`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

# Where the front's latencies came from, in words (LatencyResult.source -> words).
ORIGIN_WORDS = {"measured": "measured on", "replay": "replayed from a recording on", "model": "modelled for"}


@contextlib.contextmanager
def human_output(as_json: bool) -> Iterator[None]:
    """Inside: stdout is stderr when ``as_json`` (so stdout carries the JSON document only)."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=1, default=str))


def number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def print_outcome(result: Any) -> bool:
    """Print how the search ended and the study's front (ties as one row); False (after a one-line
    error on stderr) when the study has no front, as when every trial failed."""
    import pandas as pd

    from mpsearch.api.result import no_front_message
    from mpsearch.search.storage import redacted

    study, outcome = result.study, result.outcome
    if outcome is not None:
        print(f"\nstopped: {outcome.stop_reason}")
        print(f"measured {outcome.measured} configurations ({outcome.failed} failed, {outcome.infeasible} infeasible); "
              f"{outcome.repeats} repeated proposals answered from earlier measurements")
    best = result.best_feasible  # under --constraint: the configuration the search was for
    if best:
        print(best)
    front = result.front
    if front.empty:
        print(f"error: {no_front_message(study)}", file=sys.stderr)
        return False
    sources = sorted(set(front["latency_source"]) - {""})
    devices = sorted({t.user_attrs.get("latency_device", "") for t in study.best_trials} - {""})
    origin = " / ".join(ORIGIN_WORDS.get(src, src) for src in sources) or "of unknown origin"
    configs = len(front) + int(front["n_alternatives"].sum())
    size = (f"{len(front)} points, {configs} configurations: a point's alternatives are configurations with the "
            f"same values" if configs > len(front) else f"{len(front)} configurations")
    print(f"\nPareto front of study {study.study_name} ({size}; latency {origin} {', '.join(devices)}):")
    shown = front.drop(columns=["latency_source", "config", "alternatives"])
    if configs > len(front):
        shown = shown.rename(columns={"n_alternatives": "alternatives"})
    else:
        shown = shown.drop(columns=["n_alternatives"])
    with pd.option_context("display.max_columns", 200, "display.width", 200, "display.float_format", number):
        print(shown.to_string(index=False))
    url = redacted(result.storage)
    short = "" if url.startswith("sqlite:///studies/") or url.startswith("journal:studies/") else f" --storage {url}"
    print(f"\nstored in {url}; next: mpsearch report {study.study_name}{short}")
    return True


def finish(result: Any, as_json: bool) -> bool:
    """Print the outcome (human lines to stderr under ``as_json``) and, under ``as_json``, the
    result's JSON document; whether the study has a front."""
    with human_output(as_json):
        has_front = print_outcome(result)
    if as_json:
        print_json(result.to_dict())
    return has_front
