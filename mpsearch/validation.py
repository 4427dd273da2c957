"""Checks of names and values the user gives that several commands share, one message shape each.

Each raises :class:`~mpsearch.errors.InvalidSpecError` with one line that names what is wrong, the
rule, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mpsearch.errors import InvalidSpecError

# A study's name is a file name in studies/ and reports/, and `NAME@STORAGE` separates a name from
# its storage in `mpsearch report`: letters, digits and these only.
STUDY_NAME_PUNCTUATION = "._-+="
MAX_STUDY_NAME = 200

# Sampler seeds are NumPy seeds: unsigned 32-bit integers.
SEED_LIMIT = 2**32

# Columns of the tables and files a report writes (``trial``, the objectives, ``config``, one per
# layer, ...): a layer or objective with one of these names would overwrite another column.
REPORT_COLUMNS = ("trial", "state", "config", "latency_source", "device", "latency_detail", "repeat_of",
                  "fail_reason", "on_front")
BUILT_IN_OBJECTIVES = ("latency", "capacity", "sqnr")


def check_study_name(name: str, what: str = "study name") -> str:
    """``name`` if it can name a study's files; InvalidSpecError otherwise."""
    allowed = f"letters, digits and {' '.join(STUDY_NAME_PUNCTUATION)}"
    if not isinstance(name, str) or not name.strip():
        raise InvalidSpecError(f"{what} must not be empty: give --study-name NAME ({allowed})")
    bad = sorted({c for c in name if not (c.isalnum() or c in STUDY_NAME_PUNCTUATION)})
    if bad or ".." in name or name.startswith(".") or len(name) > MAX_STUDY_NAME:
        why = (f"it holds {', '.join(repr(c) for c in bad)}" if bad else
               "it holds '..'" if ".." in name else
               "it starts with '.'" if name.startswith(".") else f"it is longer than {MAX_STUDY_NAME} characters")
        raise InvalidSpecError(
            f"{what} {name!r} cannot name a study: {why}; a study's name is a file name in studies/ and reports/ "
            f"(no path separators, '..' or '@'), so use only {allowed}" + ("" if what == "study name" else
                                                                           ", or give --study-name NAME")
        )
    return name


def check_seed(seed: int | None) -> int | None:
    """``seed`` if it is a valid sampler seed (or None); InvalidSpecError otherwise."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise InvalidSpecError(f"--seed must be an integer in [0, {SEED_LIMIT - 1}], got {seed}")
    return seed


def offset_seed(base: int | None, offset: int) -> int | None:
    """``base`` moved on by ``offset`` (a resumed study's trials, a worker's index), wrapped so it
    stays a valid seed however large the study grows."""
    return None if base is None else (base + offset) % SEED_LIMIT


def reserved_layer_name(name: str) -> str | None:
    """Why ``name`` cannot name a layer (it would collide with a report column), or None."""
    if name in REPORT_COLUMNS or name in BUILT_IN_OBJECTIVES or name.startswith("param:"):
        return (f"layer name {name!r} is reserved (reports have columns {', '.join(REPORT_COLUMNS)} and one per "
                f"objective, e.g. {', '.join(BUILT_IN_OBJECTIVES)}): rename the layer")
    return None


def check_objective_name(name: str, layers: Iterable[str] = (), network_name: str = "") -> None:
    """Refuse an objective name that would collide with a report column or one of ``layers``."""
    if name in REPORT_COLUMNS or name.startswith("param:"):
        raise InvalidSpecError(
            f"objective name {name!r} is reserved (reports have columns {', '.join(REPORT_COLUMNS)}): "
            "rename it with NAME=package.module:function"
        )
    if name in set(layers):
        raise InvalidSpecError(
            f"objective name {name!r} is also a layer of network {network_name!r}; reports have one column per "
            "layer and per objective: rename the objective with NAME=package.module:function"
        )


def check_report_columns(network_name: str, layers: Iterable[str], objectives: Iterable[str]) -> None:
    """Refuse layer and objective names that would collide in a report's tables (one column each)."""
    layers = list(layers)
    for layer in layers:
        why = reserved_layer_name(layer)
        if why:
            raise InvalidSpecError(f"network {network_name!r}: {why}")
    for name in objectives:
        check_objective_name(name, layers, network_name)


def check_output_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` if a report folder can be written there; InvalidSpecError for an existing file."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            what = "is a file" if part == path else f"is inside {part}, which is a file"
            raise InvalidSpecError(f"{flag} {path} {what}: give a folder (a report writes several files into it)")
    return path
