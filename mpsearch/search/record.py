"""How mpsearch writes a study into Optuna's storage (the names themselves: :mod:`mpsearch.search.attrs`).

- ``study.user_attrs[SPEC_KEY]``: the study spec (see :class:`StudySpec`): network, menu, objectives,
  backend provenance, device, sampler and its settings, hypervolume reference point.
- ``study.metric_names``: the objective names, in order; directions match.
- ``trial.params``: one entry per decision (tied group or layer) → format name.
- ``trial.user_attrs``:
    - ``config``: the per-layer formats, ``"fp8_e4m3,int8,fp16,..."`` (layer order);
    - ``device``: the device the trial's latency belongs to, and the latency attributes of
      :meth:`mpsearch.backends.base.LatencyResult.as_attrs` (``latency_source``, ...);
    - ``repeat_of``: on a trial told PRUNED, the sampler proposed a configuration already measured
      in this study (the value is that trial's number); nothing was measured again, and the trial
      holds no values, so it never counts as a measurement nor shows on a front. (Studies stored
      by earlier versions have such trials COMPLETE, with the values copied: read as the same.)
    - ``fail_reason``: why a FAILED trial failed (one line);
    - ``worker``: host:pid of the process that ran it, for people; ``worker_token``,
      ``worker_namespace`` and ``worker_started`` tell workers apart and whether one is gone
      (:mod:`mpsearch.search.workers.identity`); the other coordination keys are in
      :mod:`mpsearch.search.workers`.
- ``study.user_attrs["mpsearch_creating"]``: written first when a study is created (who creates it);
  the study is complete once its spec is stored (:mod:`mpsearch.search.study`).
- ``trial.constraints``: ``unsupported`` (> 0: the backend cannot run the configuration) and one per
  bound the study was given (:mod:`mpsearch.search.constraints`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mpsearch.search import attrs

# The names, spelled in mpsearch.search.attrs; these aliases are what the rest of mpsearch imports.
SPEC_KEY = attrs.SPEC
CONFIG_ATTR = attrs.CONFIG
REPEAT_ATTR = attrs.REPEAT
FAIL_ATTR = attrs.FAIL
DEVICE_ATTR = attrs.DEVICE
WORKER_ATTR = attrs.WORKER
STOP_ATTR = attrs.STOP  # study attr: why the last search stopped
INFEASIBLE_CONSTRAINT = attrs.INFEASIBLE_CONSTRAINT


@dataclass
class StudySpec:
    """Everything a stored study must keep to be resumed and compared honestly."""

    network: dict[str, Any]  # Network.to_dict()
    fingerprint: str  # Network.fingerprint()
    menu: list[str]
    objectives: list[dict[str, str]]  # [{"name", "direction", "spec"}]
    backend: dict[str, Any]  # LatencyBackend.provenance(): backend, source, device, arch, versions
    sampler: dict[str, Any]  # {"name", "seed", ...settings}
    mpsearch_version: str
    reference_point: list[float] | None = None
    exhaustive: bool = False  # written by `mpsearch enumerate`: every configuration of the space
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return str(self.backend.get("device", "?"))

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_attr(cls, data: dict[str, Any]) -> "StudySpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_spec(study: Any) -> StudySpec | None:
    """The spec stored in an Optuna study, or None if it is not an mpsearch study."""
    data = study.user_attrs.get(SPEC_KEY)
    return StudySpec.from_attr(data) if data else None


def is_feasible(trial: Any) -> bool:
    """A finished trial whose configuration could run (its ``unsupported`` constraint is <= 0)."""
    return all(v <= 0 for v in (trial.constraints or {}).values())
