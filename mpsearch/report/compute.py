"""Compute a study's report: tables and numbers, nothing drawn (see :mod:`mpsearch.report.render`).

The Pareto front is ``study.best_trials`` (complete, feasible trials), one row per distinct
configuration (:func:`mpsearch.search.results.pareto_frame`). Its hypervolume is taken against the
reference point stored in the study's spec (a search fixes it when it stops); for a study that has
none, one is derived from its complete feasible trials and not stored: a report opens its storage
read-only and never writes into a study.

When an exhaustive study of the same space exists (``mpsearch enumerate``: same network
fingerprint, menu, objectives and device), the front's hypervolume is also given as a percentage of
the exhaustive front's, both measured against the *exhaustive* study's reference point.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mpsearch.errors import InvalidSpecError, StorageError
from mpsearch.network import Network
from mpsearch.search import attrs
from mpsearch.search.hypervolume import hypervolume
from mpsearch.search.record import SPEC_KEY, StudySpec, read_spec
from mpsearch.search.results import objective_names, pareto_frame, trials_frame
from mpsearch.search.storage import STUDIES_DIR, default_storage_url, open_storage
from mpsearch.space import SearchSpace
from mpsearch.validation import check_study_name

# How a latency's origin reads in tables and plot labels (LatencyResult.source -> words).
SOURCE_WORDS = {"measured": "measured on", "replay": "replayed from", "model": "modelled for"}


@dataclass(frozen=True)
class StudyRef:
    """A study by name and the storage URL it lives in."""

    name: str
    storage: str

    @property
    def label(self) -> str:
        return self.name if self.storage == default_storage_url(self.name) else f"{self.name}@{self.storage}"


def parse_study_ref(text: str, storage: str | None = None) -> StudyRef:
    """``NAME`` or ``NAME@URL``; the storage defaults to ``storage`` or ``sqlite:///studies/NAME.db``."""
    name, at, url = text.partition("@")
    name = name.strip()
    if not name:
        raise InvalidSpecError(f"study {text!r} has no name: write NAME or NAME@STORAGE_URL")
    check_study_name(name)
    if at and not url.strip():
        raise InvalidSpecError(f"study {text!r} has an empty storage after '@': write NAME@sqlite:///file.db")
    return StudyRef(name, url.strip() if at else (storage or default_storage_url(name)))


def _list_hint(storage: str) -> str:
    return f"list the studies with `mpsearch report --list --storage {storage}`"


def open_study(ref: StudyRef) -> tuple[Any, StudySpec]:
    """Load a stored mpsearch study without creating anything; StorageError (one line) otherwise."""
    import optuna

    # Opening a missing SQLite file would create an empty database: check first.
    if ref.storage.startswith("sqlite:///") and ref.storage != "sqlite:///:memory:":
        path = Path(ref.storage.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StorageError(
                f"cannot report study {ref.name!r}: storage {ref.storage} does not exist (no file {path}); "
                f"give the right --storage, or {_list_hint('URL')} (without --storage it lists studies/*.db)"
            )
    storage = open_storage(ref.storage, read_only=True)
    names = optuna.get_all_study_names(storage)
    if ref.name not in names:
        held = f"it holds {', '.join(sorted(names))}" if names else "it holds no study"
        raise StorageError(f"no study {ref.name!r} in storage {ref.storage} ({held}); {_list_hint(ref.storage)}")
    study = optuna.load_study(study_name=ref.name, storage=storage)
    spec = read_spec(study)
    if spec is None:
        raise StorageError(
            f"study {ref.name!r} in {ref.storage} was not created by mpsearch (it has no {SPEC_KEY} attribute); "
            "report mpsearch studies only, or open it with optuna-dashboard"
        )
    return study, spec


def list_studies(storages: list[str]) -> pd.DataFrame:
    """Every mpsearch study in ``storages`` (unreadable ones are listed with the reason)."""
    import optuna

    rows = []
    for url in storages:
        try:
            summaries = optuna.get_all_study_summaries(open_storage(url, read_only=True), include_best_trial=False)
        except StorageError as err:
            rows.append({"study": "?", "storage": url, "trials": None, "network": "", "device": str(err),
                         "exhaustive": None})
            continue
        for s in summaries:
            spec = StudySpec.from_attr(s.user_attrs[SPEC_KEY]) if s.user_attrs.get(SPEC_KEY) else None
            rows.append({
                "study": s.study_name, "storage": url, "trials": s.n_trials,
                "network": spec.network.get("name", "") if spec else "(not an mpsearch study)",
                "device": spec.device if spec else "", "exhaustive": spec.exhaustive if spec else None,
            })
    return pd.DataFrame(rows, columns=["study", "storage", "trials", "network", "device", "exhaustive"])


def local_storages(directory: Path = STUDIES_DIR) -> list[str]:
    """SQLite storages in the studies folder, as URLs."""
    return [f"sqlite:///{p}" for p in sorted(glob.glob(str(directory / "*.db")))]


# --- the report -----------------------------------------------------------------------------------


@dataclass
class ExhaustiveComparison:
    """This study's front against the exhaustive front of the same space."""

    study: StudyRef
    n_configs: int  # distinct configurations the exhaustive study holds
    front_size: int
    reference_point: list[float]
    hypervolume: float  # of this study's front, against the exhaustive reference point
    exhaustive_hypervolume: float

    @property
    def percent(self) -> float:
        return 100.0 * self.hypervolume / self.exhaustive_hypervolume if self.exhaustive_hypervolume > 0 else float("nan")


@dataclass
class StudyReport:
    """Everything a report shows about one study, computed; :mod:`render` draws it."""

    ref: StudyRef
    spec: StudySpec
    objectives: list[str]
    directions: list[str]
    layers: list[str]
    trials: pd.DataFrame  # one row per trial (every state), with per-layer formats and ``on_front``
    front: pd.DataFrame  # one row per distinct Pareto-optimal configuration, sorted by latency
    reference_point: list[float] | None
    reference_point_derived: bool  # not stored with the study: derived from its trials
    hypervolume: float | None
    exhaustive: ExhaustiveComparison | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def latency_objective(self) -> str:
        """The x axis: the objective called latency, else the first one."""
        return "latency" if "latency" in self.objectives else self.objectives[0]

    def default_y(self) -> str:
        """The y axis: capacity when the study has it (the reference figure), else the first other objective."""
        others = [o for o in self.objectives if o != self.latency_objective]
        if not others:
            raise InvalidSpecError(f"study {self.name} has a single objective; a Pareto plot needs two")
        return "capacity" if "capacity" in others else others[0]

    @property
    def latency_origin(self) -> str:
        """Where this study's latencies come from, in words (``replayed from NVIDIA H100 ...``)."""
        done = self.trials[self.trials["state"] == "COMPLETE"]
        pairs = sorted({(s, d) for s, d in zip(done["latency_source"], done["device"]) if s})
        if not pairs:
            src, dev = self.spec.backend.get("source", "?"), self.spec.device
            return f"{SOURCE_WORDS.get(src, src)} {dev} (from the study spec; trials record no origin)"
        details = sorted({d for d in done["latency_detail"] if d})
        how = f" ({'; '.join(details)})" if len(details) == 1 else ""  # several: see the CSV's column
        return "; ".join(f"{SOURCE_WORDS.get(s, s)} {d}" for s, d in pairs) + how

    def summary(self) -> dict[str, Any]:
        """The report's numbers, JSON-able."""
        counts = self.trials["state"].value_counts().to_dict()
        out: dict[str, Any] = {
            "study": self.name,
            "storage": self.ref.storage,
            "network": self.spec.network.get("name"),
            "fingerprint": self.spec.fingerprint,
            "menu": list(self.spec.menu),
            "objectives": [{"name": n, "direction": d} for n, d in zip(self.objectives, self.directions)],
            "device": self.spec.device,
            "backend": self.spec.backend,
            "sampler": self.spec.sampler,
            "latency_origin": self.latency_origin,
            "trials": int(len(self.trials)),
            "trials_by_state": {k: int(v) for k, v in counts.items()},
            "distinct_configs": int(self.trials.loc[self.trials["state"] == "COMPLETE", "config"].nunique()),
            "space_size": SearchSpace(Network.from_dict(self.spec.network), tuple(self.spec.menu)).size,
            "front_size": int(len(self.front)),
            "reference_point": self.reference_point,
            "hypervolume": self.hypervolume,
            "notes": self.notes,
        }
        if self.exhaustive is not None:
            e = self.exhaustive
            out["exhaustive"] = {
                "study": e.study.name, "storage": e.study.storage, "configs": e.n_configs,
                "front_size": e.front_size, "reference_point": e.reference_point,
                "hypervolume": e.hypervolume, "exhaustive_hypervolume": e.exhaustive_hypervolume,
                "percent": e.percent,
            }
        return out


def _front_points(front: pd.DataFrame, objectives: list[str]) -> list[list[float]]:
    return front[objectives].astype(float).values.tolist()


def ensure_reference_point(study: Any, spec: StudySpec, objectives: list[str], directions: list[str]) -> tuple[list[float] | None, bool]:
    """The study's stored reference point; if none (a search stores one when it stops), one derived
    from its complete feasible trials, *not* stored: a report never writes into a study.

    Returns (point, derived); (None, False) when the study has no complete trial yet."""
    if spec.reference_point is not None:
        if len(spec.reference_point) != len(objectives):
            raise InvalidSpecError(
                f"study {study.study_name}: stored reference point {spec.reference_point} has "
                f"{len(spec.reference_point)} values for {len(objectives)} objectives; fix the study's spec"
            )
        return [float(v) for v in spec.reference_point], False
    from mpsearch.search.study import derived_reference_point

    point = derived_reference_point(study)
    return point, point is not None


def _with_layers(frame: pd.DataFrame, layers: list[str]) -> pd.DataFrame:
    """Add one column per layer (its format) from the ``config`` column."""
    split = frame["config"].fillna("").astype(str).str.split(",")
    for i, layer in enumerate(layers):
        frame[layer] = [parts[i] if len(parts) == len(layers) else "" for parts in split]
    return frame


def compute_report(ref: StudyRef, *, exhaustive: StudyRef | None | bool = True,
                   search_storages: list[str] | None = None) -> StudyReport:
    """Open the study ``ref`` and compute its report.

    ``exhaustive``: a StudyRef to compare against, True to look for one (same storage, then
    ``search_storages``, default every ``studies/*.db``), False for no comparison.
    """
    study, spec = open_study(ref)
    objectives = objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    layers = [layer["name"] for layer in spec.network["layers"]]
    for clash in set(objectives) & set(layers):
        raise InvalidSpecError(f"study {ref.name}: layer {clash!r} has an objective's name; the report cannot tell them apart")

    trials = _with_layers(trials_frame(study), layers)
    # How each latency was obtained ("end-to-end recording", "sum of recorded per-op latencies", ...).
    detail = {t.number: t.user_attrs.get(attrs.LATENCY_DETAIL, "") for t in study.get_trials(deepcopy=False)}
    trials["latency_detail"] = trials["trial"].map(detail)
    x = "latency" if "latency" in objectives else objectives[0]
    # Where each front latency came from, next to the number (it is a column of trials too).
    front = pareto_frame(study).merge(trials[["trial", "device", "latency_detail"]], on="trial", how="left")
    front = front.sort_values([x, "trial"]).reset_index(drop=True)
    front = front[["trial", *objectives, "latency_source", "device", "latency_detail", "config", *layers]]
    trials["on_front"] = trials["trial"].isin(set(front["trial"]))

    point, derived = ensure_reference_point(study, spec, objectives, directions)
    hv = hypervolume(_front_points(front, objectives), point, directions) if point is not None else None
    notes = []
    if derived:
        notes.append(f"no reference point is stored with the study; derived {[float(f'{v:.6g}') for v in point]} from its "
                     f"{int((trials['state'] == 'COMPLETE').sum())} complete trials (not stored: a report never writes into a study)")
    from mpsearch.search.constraints import best_feasible_text

    best = best_feasible_text(study)  # a study searched under --constraint: the decision it was for
    if best:
        notes.append(best)
    report = StudyReport(ref, spec, objectives, directions, layers, trials, front, point, derived, hv, notes=notes)

    if isinstance(exhaustive, StudyRef):
        report.exhaustive = compare_with_exhaustive(report, exhaustive)
    elif exhaustive and not spec.exhaustive:  # an exhaustive study is its own 100%
        target = find_exhaustive(ref, spec, objectives, search_storages)
        if target is not None:
            report.exhaustive = compare_with_exhaustive(report, target)
    return report


def _same_space(spec: StudySpec, other: StudySpec, objectives: list[str]) -> bool:
    return (
        other.fingerprint == spec.fingerprint
        and sorted(other.menu) == sorted(spec.menu)
        and [o["name"] for o in other.objectives] == objectives
        and other.device == spec.device
    )


def find_exhaustive(ref: StudyRef, spec: StudySpec, objectives: list[str],
                    search_storages: list[str] | None = None) -> StudyRef | None:
    """An exhaustive study of ``spec``'s space: in the same storage first, then ``search_storages``
    (default: every ``studies/*.db``). The one with the most trials wins within a storage."""
    import optuna

    urls = [ref.storage] + [u for u in (local_storages() if search_storages is None else search_storages) if u != ref.storage]
    for url in urls:
        try:
            summaries = optuna.get_all_study_summaries(open_storage(url, read_only=True), include_best_trial=False)
        except StorageError:
            continue  # a broken neighbour must not stop this report
        found = []
        for s in summaries:
            data = s.user_attrs.get(SPEC_KEY)
            if not data or (s.study_name == ref.name and url == ref.storage):
                continue
            other = StudySpec.from_attr(data)
            if other.exhaustive and _same_space(spec, other, objectives):
                found.append((s.n_trials, s.study_name))
        if found:
            return StudyRef(max(found)[1], url)
    return None


def compare_with_exhaustive(report: StudyReport, target: StudyRef) -> ExhaustiveComparison:
    """Hypervolume of ``report``'s front as a share of the exhaustive front's, both against the
    exhaustive study's reference point (so the 100% is the true front's volume)."""
    study, spec = open_study(target)
    objectives = objective_names(study)
    directions = [d.name.lower() for d in study.directions]
    if not _same_space(report.spec, spec, report.objectives) or directions != report.directions:
        raise InvalidSpecError(
            f"study {target.label} is not an exhaustive study of {report.name}'s space (it must have the same network "
            f"fingerprint, menu, objectives and device; it has {spec.fingerprint}, {','.join(spec.menu)}, "
            f"{','.join(objectives)}, {spec.device}); pick another --exhaustive"
        )
    if not spec.exhaustive:
        raise InvalidSpecError(f"study {target.label} is not exhaustive (made by `mpsearch search`, not `mpsearch enumerate`); pick another --exhaustive")
    point, _ = ensure_reference_point(study, spec, objectives, directions)
    front = pareto_frame(study)
    full = hypervolume(_front_points(front, objectives), point, directions) if point else 0.0
    mine = hypervolume(_front_points(report.front, objectives), point, directions) if point and not report.front.empty else 0.0
    configs = trials_frame(study)
    n_configs = int(configs.loc[configs["state"] == "COMPLETE", "config"].nunique())
    return ExhaustiveComparison(target, n_configs, len(front), point or [], mine, full)
