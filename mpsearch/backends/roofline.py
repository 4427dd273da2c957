"""The roofline backend: latency modelled from datasheet peak rates and memory bandwidth.

Per op of :meth:`Network.ops` (a GEMM, or a conversion of an fp16 activation)::

    time = max(flops / peak rate of the op's input format,  bytes moved / memory bandwidth) + launch

A GEMM moves A (m×k) and B (k×n) in its input format and writes D (m×n) in its output format, each
once; a conversion reads m×k fp16 and writes m×k in the target format, and does no tensor-core work.
This is a lower bound on what the hardware can do, not a prediction of what a kernel achieves:
the fp16 layers of mlp6 measured on an H100 (cuBLAS and CUTLASS, 2026-11-26) took 1.3-3.6× the modelled time
(cuBLAS and CUTLASS; small layers fare worst). Use it to
explore without a GPU or a recording; report its numbers as modelled, never as measured.

Devices are data (:data:`DEVICES`): each peak cites its source. Rates are dense (no 2:4 sparsity).
A format that only runs emulated on a device (int4 on Hopper) is priced at its emulated rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpsearch.backends import config_formats
from mpsearch.backends.base import MODEL, BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.errors import InvalidSpecError, UnsupportedConfigError
from mpsearch.formats import EMULATED, check_k_alignment, check_menu, get_format, parse_menu
from mpsearch.network import Network, Op
from mpsearch.space import Config

# Assumed cost of starting one kernel on a stream that is already busy (launch-to-start, a few µs on
# current GPUs); not a datasheet number. It keeps tiny ops from being priced as free.
DEFAULT_LAUNCH_US = 5.0


@dataclass(frozen=True)
class DeviceSpec:
    """A GPU as the roofline model sees it: peak dense rate per format (TFLOP/s or TOP/s), memory
    bandwidth (TB/s), architecture, and the name PyTorch reports for it (so modelled and measured
    results name the same device the same way)."""

    key: str
    name: str
    arch: int
    peak_tflops: dict[str, float]
    bandwidth_tbs: float
    source: str

    def rate(self, fmt: str) -> float:
        try:
            return self.peak_tflops[fmt]
        except KeyError:
            raise UnsupportedConfigError(
                f"format {fmt} cannot run on {self.name} (sm_{self.arch}): the roofline model prices "
                f"{', '.join(self.peak_tflops)} there; remove {fmt} from --formats"
            ) from None


DEVICES: dict[str, DeviceSpec] = {
    d.key: d
    for d in (
        # NVIDIA A100 Tensor Core GPU datasheet (2021, A100 80GB SXM column) and the NVIDIA A100
        # Tensor Core GPU Architecture whitepaper, Table 1 (int4): FP16/BF16 tensor 312 TFLOPS,
        # INT8 624 TOPS, INT4 1248 TOPS (dense; the larger figures are with sparsity); HBM2e
        # 2,039 GB/s. Ampere has no fp8.
        DeviceSpec(
            "a100", "NVIDIA A100-SXM4-80GB", 80,
            {"fp16": 312.0, "bf16": 312.0, "int8": 624.0, "int4": 1248.0},
            2.039, "NVIDIA A100 datasheet (80GB SXM) and A100 architecture whitepaper Table 1",
        ),
        # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): FP16/BF16 tensor 1,979 TFLOPS and
        # FP8 / INT8 3,958 with sparsity, i.e. 989.4 and 1,979 dense; HBM3 3.35 TB/s. Hopper has no
        # int4 tensor cores: the sm_80 int4 kernels ran at 38 TOPS on an H100 (measured with
        # CUTLASS's sm_80 kernels, 2026-11-26), and that is the rate used.
        DeviceSpec(
            "h100", "NVIDIA H100 80GB HBM3", 90,
            {"fp16": 989.4, "bf16": 989.4, "fp8_e4m3": 1979.0, "int8": 1979.0, "int4": 38.0},
            3.35, "NVIDIA H100 datasheet (SXM); int4 emulation rate measured on an H100",
        ),
        # NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column): the same tensor rates as the H100
        # SXM (FP16/BF16 989 TFLOPS dense, FP8/INT8 1,979 dense) with HBM3e at 4.8 TB/s. int4 is
        # emulated as on the H100 (same SMs and clocks), so the H100's measured 38 TOPS is assumed.
        DeviceSpec(
            "h200", "NVIDIA H200", 90,
            {"fp16": 989.4, "bf16": 989.4, "fp8_e4m3": 1979.0, "int8": 1979.0, "int4": 38.0},
            4.8, "NVIDIA H200 datasheet (SXM); int4 emulation rate assumed equal to the H100's measured one",
        ),
        # NVIDIA L40S datasheet (2023): FP16/BF16 tensor 362.05 TFLOPS, FP8 733 TFLOPS, INT8 733
        # TOPS, INT4 733 TOPS (dense; the doubled figures are with sparsity); GDDR6 864 GB/s.
        DeviceSpec(
            "l40s", "NVIDIA L40S", 89,
            {"fp16": 362.05, "bf16": 362.05, "fp8_e4m3": 733.0, "int8": 733.0, "int4": 733.0},
            0.864, "NVIDIA L40S datasheet",
        ),
    )
}


def device_spec(device: str) -> DeviceSpec:
    """The modelled GPU called ``device`` (a key of :data:`DEVICES`, or its full name)."""
    wanted = device.strip().lower()
    for spec in DEVICES.values():
        if wanted in (spec.key, spec.name.lower()):
            return spec
    raise InvalidSpecError(f"unknown roofline device {device!r}: use one of {', '.join(DEVICES)}")


def op_time_ms(op: Op, spec: DeviceSpec, launch_us: float = DEFAULT_LAUNCH_US) -> float:
    """Modelled time of one op on ``spec``, in ms (see the module docstring for the formula)."""
    src = get_format(op.fmt)
    dst = get_format(op.out_fmt)
    if op.kind == "gemm":
        flops = 2.0 * op.m * op.n * op.k
        compute_s = flops / (spec.rate(src.name) * 1e12)
        moved = op.m * op.k * src.storage_bytes + op.k * op.n * src.storage_bytes + op.m * op.n * dst.storage_bytes
    elif op.kind == "convert":
        spec.rate(dst.name)  # refuses a target format the device cannot run
        compute_s = 0.0
        moved = op.m * op.k * (src.storage_bytes + dst.storage_bytes)
    else:
        raise InvalidSpecError(f"op kind must be 'gemm' or 'convert', got {op.kind!r}")
    memory_s = moved / (spec.bandwidth_tbs * 1e12)
    return max(compute_s, memory_s) * 1e3 + launch_us * 1e-3


class RooflineBackend(LatencyBackend):
    """Modelled latency for one of :data:`DEVICES` (default the H100 SXM)."""

    def __init__(self, device: str = "h100", *, launch_us: float = DEFAULT_LAUNCH_US):
        self.spec = device_spec(device)
        if not launch_us >= 0:
            raise InvalidSpecError(f"launch_us must be a number >= 0, got {launch_us!r}")
        self.launch_us = float(launch_us)
        fmts = frozenset(self.spec.peak_tflops)
        self._caps = BackendCapabilities(
            name="roofline",
            source=MODEL,
            device=self.spec.name,
            arch=self.spec.arch,
            formats=fmts,
            emulated=frozenset(f for f in fmts if get_format(f).support_on(self.spec.arch) == EMULATED),
        )

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        menu = parse_menu(menu)
        check_menu(menu, self.spec.arch, warn=False)
        for fmt in menu:
            self.spec.rate(fmt)

    def measure(self, network: Network, config: Config) -> LatencyResult:
        formats = config_formats(network, config)
        per_layer = dict.fromkeys(network.layer_names, 0.0)
        for op in network.ops(formats):
            if op.kind == "gemm":
                check_k_alignment(op.layer, op.k, op.fmt)  # no kernel exists: infeasible, not slow
            per_layer[op.layer] += op_time_ms(op, self.spec, self.launch_us)
        layers = tuple(per_layer.values())
        return LatencyResult(
            ms=sum(layers),
            source=MODEL,
            device=self.spec.name,
            per_layer_ms=layers,
            detail=(
                f"roofline: max(compute, memory) + {self.launch_us:g} us launch per op, "
                f"dense datasheet peaks of {self.spec.name} ({self.spec.source})"
            ),
        )

    def provenance(self) -> dict:
        return {
            **super().provenance(),
            "model": "roofline",
            "peak_tflops": dict(self.spec.peak_tflops),
            "bandwidth_tbs": self.spec.bandwidth_tbs,
            "launch_us": self.launch_us,
            "peaks_source": self.spec.source,
        }
