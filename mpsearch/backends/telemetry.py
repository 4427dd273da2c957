"""GPU telemetry through NVML: clocks, power and the reasons the clocks are held down.

Read-only: nothing here changes a clock, a power limit or any other setting of the GPU.

``nvidia-ml-py`` (module ``pynvml``) is imported when :func:`open_telemetry` is called, only by the
GPU backends. When NVML is missing or refuses (no driver, a container without the library, no
permission), :func:`open_telemetry` returns a :class:`NoTelemetry` that says why, and the caller
warns once in one line; measurements go on and record that telemetry was absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# NVML's clocks-event ("throttle") reason bits, as nvml.h names them.
THROTTLE_REASONS = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
POWER_CAP_BIT = 0x4


def throttle_names(mask: int) -> list[str]:
    """The names of the reason bits set in ``mask`` (unknown bits as hex), lowest bit first."""
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(THROTTLE_REASONS.get(bit, f"0x{bit:x}"))
        bit <<= 1
    return names


@dataclass(frozen=True)
class TelemetryReading:
    """One reading: SM and memory clocks (MHz), board power (W), GPU temperature (C), reason bits."""

    sm_mhz: int
    mem_mhz: int
    power_w: float
    temp_c: int
    throttle: int

    def as_row(self) -> dict[str, Any]:
        return {"sm_mhz": self.sm_mhz, "mem_mhz": self.mem_mhz, "power_w": round(self.power_w, 1),
                "temp_c": self.temp_c, "throttle": throttle_names(self.throttle)}


class Telemetry(Protocol):
    """What the timing protocol reads between samples."""

    available: bool
    why_absent: str

    def read(self) -> TelemetryReading | None:
        """A reading now, or None (absent, or one read failed)."""

    def limits(self) -> dict[str, Any]:
        """Power limit and clock ceilings, for provenance and ``mpsearch env`` (empty if absent)."""


class NoTelemetry:
    """Stands in when NVML cannot be used; ``why_absent`` says why (one line)."""

    available = False

    def __init__(self, why: str):
        self.why_absent = why

    def read(self) -> TelemetryReading | None:
        return None

    def limits(self) -> dict[str, Any]:
        return {}


class NvmlTelemetry:
    """Readings of one GPU through a ``pynvml`` module (passed in, so tests can give a fake)."""

    available = True
    why_absent = ""

    def __init__(self, nvml: Any, handle: Any):
        self._nvml = nvml
        self._handle = handle
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._reasons = reasons or nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    def read(self) -> TelemetryReading | None:
        n, h = self._nvml, self._handle
        try:
            return TelemetryReading(
                sm_mhz=int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                mem_mhz=int(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                power_w=n.nvmlDeviceGetPowerUsage(h) / 1000.0,
                temp_c=int(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                throttle=int(self._reasons(h)),
            )
        except n.NVMLError:
            return None

    def limits(self) -> dict[str, Any]:
        n, h = self._nvml, self._handle
        out: dict[str, Any] = {}
        for key, call in (("power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                          ("max_sm_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
                          ("max_mem_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM))):
            try:
                out[key] = call()
            except n.NVMLError:
                continue
        return out


def open_telemetry(pci_bus_id: str | None = None, index: int = 0, nvml: Any = None) -> Telemetry:
    """Telemetry for the GPU on ``pci_bus_id`` (what CUDA calls device 0 under CUDA_VISIBLE_DEVICES
    need not be NVML's device 0), else NVML's device ``index``; a :class:`NoTelemetry` if NVML is
    missing or refuses."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return NoTelemetry("NVML is not available (pip install nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as err:  # NVMLError, or a library that fails to load: both mean "absent"
        return NoTelemetry(f"NVML refused ({str(err).strip() or type(err).__name__})")
    try:
        if pci_bus_id:
            return NvmlTelemetry(nvml, nvml.nvmlDeviceGetHandleByPciBusId_v2(pci_bus_id))
    except Exception:  # a bus id NVML spells differently: one visible GPU is still unambiguous
        if nvml.nvmlDeviceGetCount() != 1:
            return NoTelemetry(f"NVML knows no GPU on PCI bus {pci_bus_id}")
    try:
        return NvmlTelemetry(nvml, nvml.nvmlDeviceGetHandleByIndex(index))
    except Exception as err:
        return NoTelemetry(f"NVML refused ({str(err).strip() or type(err).__name__})")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges of telemetry rows (``TelemetryReading.as_row``), and the reasons seen."""
    import statistics

    if not rows:
        return {}
    out: dict[str, Any] = {}
    for key in ("sm_mhz", "mem_mhz", "power_w", "temp_c"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    reasons = sorted({name for r in rows for name in r.get("throttle", [])})
    out["throttle_seen"] = reasons
    return out
