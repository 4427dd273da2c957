"""The latency backend interface: every source of latency (GPU, recording, model) sits behind it.

Contract for implementers (``mpsearch.testing`` checks it for the built-in backends and yours):

- Construct cheaply. Heavy setup (CUDA, compiling kernels, reading big files) may happen in
  :meth:`prepare` or lazily on the first :meth:`measure`.
- :attr:`capabilities` says what the backend is and what it can run; it is data, not behaviour.
- :meth:`prepare` is called once per study before the first trial with the network and the menu.
  Raise :class:`~mpsearch.errors.UnsupportedConfigError` if anything in them can never be served
  (a format the device lacks, a shape a recording does not have), naming what and how to fix it.
- :meth:`measure` returns the latency of the whole network in one configuration. It is pure with
  respect to the study: no storage access. It raises ``UnsupportedConfigError`` for a configuration
  it cannot serve, ``KernelCheckError`` for a kernel that failed its correctness check; any other
  exception is a bug in the backend. The result's ``source`` is one of SOURCES and ``device`` names
  the GPU the number belongs to (measured on, recorded on, or modelled for).
- :meth:`close` frees resources; measuring after close is not required to work.
- A backend whose latencies are ratios to a reference configuration times a scale (the GPU
  backends with ``--timing paired``, :mod:`mpsearch.backends.scale`) returns the scale's record from
  :meth:`scale_record` (measuring it on first call), and takes a stored one in :meth:`adopt_scale`,
  so that every process measuring one study reports on one scale. Others keep the defaults: no
  record, and nothing to adopt.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from mpsearch.network import Network
from mpsearch.space import Config

MEASURED = "measured"
REPLAY = "replay"
MODEL = "model"
SOURCES = (MEASURED, REPLAY, MODEL)


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one network configuration.

    ``ms`` is the median end-to-end latency; ``samples`` all timed repeats (empty for a model);
    ``per_layer_ms`` one entry per layer (GEMM plus its conversion), where known; ``detail`` says how
    the number was obtained (e.g. "end-to-end recording" or "sum of recorded per-layer latencies").
    """

    ms: float
    source: str
    device: str
    samples: tuple[float, ...] = ()
    per_layer_ms: tuple[float, ...] = ()
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"LatencyResult.source must be one of {SOURCES}, got {self.source!r}")

    @property
    def spread_ms(self) -> tuple[float, float] | None:
        """(10th, 90th) percentile of the samples, or None with fewer than 2 samples."""
        if len(self.samples) < 2:
            return None
        q = statistics.quantiles(self.samples, n=10, method="inclusive")
        return q[0], q[-1]

    def as_attrs(self) -> dict[str, Any]:
        """JSON-able record for a trial's user attributes."""
        return {
            "latency_source": self.source,
            "latency_device": self.device,
            "latency_detail": self.detail,
            "latency_samples_ms": list(self.samples),
            "latency_per_layer_ms": list(self.per_layer_ms),
            **({"latency_extra": self.extra} if self.extra else {}),
        }

    def describe(self) -> str:
        """e.g. ``2.731 ms (measured on NVIDIA H100 80GB HBM3, p10-p90 2.72-2.75)``."""
        where = {MEASURED: "measured on", REPLAY: "replayed from", MODEL: "modelled for"}[self.source]
        spread = self.spread_ms
        tail = f", p10-p90 {spread[0]:.3f}-{spread[1]:.3f}" if spread else ""
        return f"{self.ms:.3f} ms ({where} {self.device}{tail})"


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend is: its name, the kind of number it gives, the device and arch it speaks for,
    the formats it can price, and which of those run emulated on that device."""

    name: str
    source: str
    device: str
    arch: int
    formats: frozenset[str]
    emulated: frozenset[str] = frozenset()

    @property
    def measures_real_hardware(self) -> bool:
        return self.source == MEASURED


class LatencyBackend(ABC):
    """A source of network latency. See the module docstring for the contract."""

    @property
    @abstractmethod
    def capabilities(self) -> BackendCapabilities:
        """What this backend is and can price."""

    @abstractmethod
    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        """Check (and set up) everything a study of ``network`` over ``menu`` needs."""

    @abstractmethod
    def measure(self, network: Network, config: Config) -> LatencyResult:
        """The latency of ``network`` with ``config``."""

    def close(self) -> None:
        """Free resources (GPU memory, processes)."""

    def scale_record(self, network: Network) -> dict[str, Any] | None:
        """The JSON record of the scale ``network``'s latencies are on, for a new study to store
        (None: latencies are not ratios to a reference)."""
        return None

    def adopt_scale(self, network: Network, record: dict[str, Any], where: str) -> None:
        """Put ``network``'s latencies on the stored scale ``record`` (from :meth:`scale_record` of
        the process that created the study ``where`` names); StudyMismatchError if it belongs to
        another device or network. Ignored by backends without a scale."""

    def provenance(self) -> dict[str, Any]:
        """Versions and settings a stored study records (driver, CUDA, CUTLASS, data file, ...)."""
        caps = self.capabilities
        return {"backend": caps.name, "source": caps.source, "device": caps.device, "arch": caps.arch}
