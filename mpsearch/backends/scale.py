"""One latency scale per study: how a GPU backend times configurations against a reference.

Under its power cap a GPU's SM clock settles at a different level in each process, and keeps moving
within one, by several percent: a configuration timed alone, twice, can differ by more than two
configurations a search must tell apart. Two launches timed milliseconds apart run at the same clock,
so with ``--timing paired`` a GPU backend times each configuration alternately with one *reference*
configuration and keeps the ratio of the two (:func:`~mpsearch.backends.timing.measure_against_reference`).

The latency it reports is that ratio times the *scale*: the reference's latency, measured once, for
a long window, when a study is created. The scale is stored with the study, and every process that
measures the study (a resume, a worker on another GPU of the same model) multiplies its ratios by
the stored value, so all the study's latencies sit on one scale. The ratio repeats where a latency
alone does not; the scale's absolute level still carries the power state of the moment it was
measured (a few percent), which every trial of the study shares. And the pair runs at the clock
the two launches' power allows, not at the configuration's own: under a power cap, a configuration
that draws much less power than the reference (an int8 chain against an fp16-heavy reference) is
reported slower than it runs alone, by 12-21 % on an H200. So timing alone stays the default.

This module holds the pure parts (which configuration is the reference, the stored record, the
arithmetic), tested without a GPU; :class:`~mpsearch.backends.gpu.base.GpuBackend` measures.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mpsearch.errors import StudyMismatchError, UnsupportedConfigError

# The scale is measured once per study, so it can afford to average over the power controller's
# oscillation (a period of 0.1-0.2 s under the cap): at least this long.
SCALE_SAMPLE_S = 1.0


def reference_formats(n_layers: int, menu: Sequence[str], runs: Callable[[int, str], bool]) -> list[str]:
    """The reference configuration: layer ``i`` takes the menu's formats in turn (``menu[i % len]``),
    so the reference mixes the menu as the configurations a search measures do, and a ratio moves
    little with the clock; a format that ``runs(i, fmt)`` refuses on a layer gives way to the next."""
    if not menu:
        raise UnsupportedConfigError("a reference configuration needs a non-empty menu")
    out = []
    for i in range(n_layers):
        turn = [menu[(i + j) % len(menu)] for j in range(len(menu))]
        fmt = next((f for f in turn if runs(i, f)), None)
        if fmt is None:
            raise UnsupportedConfigError(f"layer {i} runs none of the menu's formats ({', '.join(menu)}); "
                                         "no configuration of this network can be measured")
        out.append(fmt)
    return out


@dataclass(frozen=True)
class LatencyScale:
    """The reference configuration of one network and its latency on one device (the record a
    study stores as ``latency_scale`` in its backend provenance)."""

    network_fingerprint: str
    formats: tuple[str, ...]
    ms: float
    device: str
    measured: dict[str, Any]  # how: samples, window, SM clock and power while it was taken
    date: str

    @classmethod
    def from_measurement(cls, fingerprint: str, formats: Sequence[str], measurement: Any, device: str) -> "LatencyScale":
        """From a :class:`~mpsearch.backends.timing.Measurement` of the reference alone."""
        summary = measurement.summary()
        summary.pop("telemetry_rows", None)  # kept short: one record per study
        return cls(fingerprint, tuple(formats), float(measurement.median_ms), device, summary,
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def to_record(self) -> dict[str, Any]:
        return {"network_fingerprint": self.network_fingerprint, "reference": list(self.formats), "ms": self.ms,
                "device": self.device, "measured": self.measured, "date": self.date}

    @classmethod
    def from_record(cls, record: Any, where: str) -> "LatencyScale":
        """Parse a stored record; a malformed one is refused in one line naming ``where``."""
        def bad(what: str) -> StudyMismatchError:
            return StudyMismatchError(f"{where}: the stored latency scale {what}; start a new study")
        if not isinstance(record, dict):
            raise bad(f"is a {type(record).__name__}, not a record")
        ms = record.get("ms")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
            raise bad(f"has ms={ms!r}, not a latency > 0")
        formats = record.get("reference")
        if not isinstance(formats, list) or not formats or not all(isinstance(f, str) for f in formats):
            raise bad(f"has reference={formats!r}, not a list of formats")
        fingerprint, device = record.get("network_fingerprint"), record.get("device")
        if not isinstance(fingerprint, str) or not isinstance(device, str):
            raise bad("lacks its network fingerprint or device")
        measured = record.get("measured") if isinstance(record.get("measured"), dict) else {}
        return cls(fingerprint, tuple(formats), float(ms), device, measured, str(record.get("date", "")))

    def check_fits(self, fingerprint: str, n_layers: int, device: str, formats: frozenset[str], where: str) -> None:
        """StudyMismatchError unless this scale belongs to this network and device and its reference
        can run here."""
        if self.device != device:
            raise StudyMismatchError(f"{where}: its latency scale was measured on {self.device}, this backend "
                                     f"measures {device}; measure the study on {self.device} GPUs only")
        if self.network_fingerprint != fingerprint or len(self.formats) != n_layers:
            raise StudyMismatchError(f"{where}: its latency scale belongs to another network (fingerprint "
                                     f"{self.network_fingerprint}, this one {fingerprint})")
        missing = sorted(set(self.formats) - formats)
        if missing:
            raise StudyMismatchError(f"{where}: its reference configuration uses {', '.join(missing)}, which this "
                                     "backend cannot run")

    def describe(self) -> str:
        clock = ((self.measured.get("telemetry") or {}).get("sm_mhz") or {}).get("median")
        at = f", SM clock {clock:g} MHz" if isinstance(clock, (int, float)) else ""
        return f"reference {','.join(self.formats)} = {self.ms:.4f} ms (measured {self.date}{at})"


def scaled(ratios: Sequence[float], scale: LatencyScale) -> tuple[float, tuple[float, ...]]:
    """(latency, samples) of a configuration from its per-round ratios to the reference: the
    median ratio and every ratio, times the scale."""
    return statistics.median(ratios) * scale.ms, tuple(round(r * scale.ms, 6) for r in ratios)
