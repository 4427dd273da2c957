"""``GpuBackend``: what every backend that measures on the local GPU shares.

A subclass says how one GEMM runs (:meth:`GpuBackend.gemm_launches`) and how an op's kernel is
chosen and timed alone (:meth:`GpuBackend.op_record`). This class owns the rest, so the CUTLASS and
PyTorch backends measure the same way: operands (:mod:`~mpsearch.backends.gpu.tensors`), the
float64 check (:meth:`check_gemm`), the conversions a network needs (:mod:`.convert`), the network
run end to end, and every timing under one :class:`~mpsearch.backends.timing.TimingProtocol` with
telemetry.

A network latency is timed alone (its own steady state under the power cap), or, with
``against_reference`` (``--timing paired``), alternately with the study's reference configuration
and reported on the study's scale (:mod:`mpsearch.backends.scale`): :meth:`GpuBackend.scale_record`
measures the scale for a new study, :meth:`GpuBackend.adopt_scale` takes a stored one.

How a network runs (``Network.ops``): in a chained network each GEMM writes the next layer's
format, reading its predecessor's output; in an unchained one each non-fp16 layer converts an fp16
activation first and every GEMM writes fp16. End to end, all launches run back to back on one
stream between the protocol's events.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from abc import abstractmethod
from typing import Any, Callable

from mpsearch import __version__
from mpsearch.backends.base import MEASURED, LatencyBackend, LatencyResult
from mpsearch.backends.scale import SCALE_SAMPLE_S, LatencyScale, reference_formats, scaled
from mpsearch.backends.timing import SUSTAINED, Measurement, PairedMeasurement, TimingProtocol, median_ci
from mpsearch.errors import BackendUnavailableError, KernelCheckError, UnsupportedConfigError
from mpsearch.network import Network, Op
from mpsearch.space import Config


def require_cuda_torch(backend: str, install_hint: str) -> Any:
    """torch, after checking that it is installed and sees a CUDA GPU (one-line error if not)."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"--backend {backend} needs PyTorch with CUDA ({install_hint}) on a machine with an NVIDIA GPU; "
            "use --backend replay / --backend roofline here"
        ) from None
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise BackendUnavailableError(
            f"--backend {backend} needs an NVIDIA GPU, and torch {torch.__version__} sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
            "run on a GPU host, or use --backend replay / --backend roofline"
        )
    return torch


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def op_key(op: Op) -> str:
    """How an op is named in tuning records and recordings."""
    if op.kind == "convert":
        return f"convert {op.m}x{op.k} {op.fmt}->{op.out_fmt}"
    return f"gemm {op.m}x{op.n}x{op.k} {op.fmt}->{op.out_fmt}"


def chain(*launches: Callable[[], None]) -> Callable[[], None]:
    """One launch that runs ``launches`` in order."""
    if len(launches) == 1:
        return launches[0]

    def launch() -> None:
        for one in launches:
            one()
    return launch


def poison(t: Any) -> None:
    """Fill an output before a check so that an element the kernel never writes cannot pass."""
    import torch

    if t.dtype.is_floating_point:
        if t.dtype.itemsize == 1:  # fp8: NaN is 0x7f in e4m3fn
            t.view(dtype=torch.uint8).fill_(0x7F)
        else:
            t.fill_(float("nan"))
    else:
        t.fill_(0x5A if t.dtype == torch.uint8 else 99)


def timing_record(m: Measurement) -> dict[str, Any]:
    """The JSON record of a timed op: median, spread, every sample and how they were taken."""
    import statistics

    q = statistics.quantiles(m.samples, n=10, method="inclusive") if len(m.samples) > 1 else [m.samples[0]] * 9
    return {"median_ms": m.median_ms, "p10_ms": q[0], "p90_ms": q[-1], "n_samples": len(m.samples),
            "samples_ms": [round(s, 6) for s in m.samples], "timing": m.summary(), "date": _dt.date.today().isoformat()}


class GpuBackend(LatencyBackend):
    """A backend measuring on the local GPU; see the module docstring.

    ``protocol``: how every latency is timed (default: the sustained regime). ``progress``: where
    one-line progress and warnings go (default: stderr). ``against_reference`` (an attribute, default
    False; ``--timing paired`` sets it): in the sustained regime, time each network against the
    reference configuration, on the study's scale, instead of alone.
    """

    name = "gpu"
    install_hint = "pip install 'mpsearch[gpu]'"

    def __init__(self, *, protocol: TimingProtocol | None = None, progress: Callable[[str], None] | None = None):
        self._torch = self._require()
        torch = self._torch
        self.protocol = protocol or TimingProtocol()
        self._say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.device = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        self.arch = major * 10 + minor
        from mpsearch.backends.gpu import tensors
        from mpsearch.backends.telemetry import open_telemetry
        from mpsearch.backends.gpu.timer import CudaEventTimer, gpu_pci_bus_id

        self._tensors = tensors
        self._timer = CudaEventTimer()
        self._telemetry = open_telemetry(gpu_pci_bus_id())
        if not self._telemetry.available:
            self._say(f"warning: no GPU telemetry ({self._telemetry.why_absent}); latencies are measured without "
                      "clocks and power, and each trial records that")
        self._pool = tensors.TensorPool()
        self._records: dict[str, dict[str, Any]] = {}
        self._menus: dict[str, tuple[str, ...]] = {}  # network fingerprint -> the menu it was prepared for
        self._scales: dict[str, LatencyScale] = {}  # network fingerprint -> the scale its latencies are on
        self.against_reference = False

    def _require(self) -> Any:
        return require_cuda_torch(self.name, self.install_hint)

    # --- what a subclass provides ------------------------------------------------------------------

    @abstractmethod
    def gemm_launches(self, op: Op, a: Any, out: Any, role: str) -> list[Callable[[], None]]:
        """The launches that compute GEMM ``op`` from activations ``a`` into ``out`` (the op's output
        format), weights from the pool; ``role`` names scratch buffers."""

    @abstractmethod
    def op_record(self, op: Op) -> dict[str, Any]:
        """``op``'s chosen kernel timed alone: at least ``kernel``, ``median_ms`` and ``check_rel_err``."""

    def kernel_formats(self) -> frozenset[str]:
        return self.capabilities.formats

    # --- the LatencyBackend contract -----------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        torch = self._torch
        telemetry: dict[str, Any] = (self._telemetry.limits() if self._telemetry.available
                                     else {"absent": self._telemetry.why_absent})
        return {
            **super().provenance(),
            "driver": driver_version(),
            "cuda": torch.version.cuda or "unknown",
            "torch": torch.__version__,
            "mpsearch": __version__,
            "regime": "paired" if self.paired else self.protocol.regime,
            "timing": self.protocol.as_dict(),
            "telemetry": telemetry,
        }

    @property
    def paired(self) -> bool:
        """Whether network latencies are timed against the reference (``--timing paired``:
        ``against_reference`` in the sustained regime)."""
        return self.against_reference and self.protocol.regime == SUSTAINED

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        """Remember the menu: the reference configuration is made of its formats. Subclasses
        extend this (and call it)."""
        self._menus[network.fingerprint()] = tuple(menu)

    def scale_record(self, network: Network) -> dict[str, Any] | None:
        if not self.paired:
            return None
        return self._scale(network).to_record()

    def adopt_scale(self, network: Network, record: dict[str, Any], where: str) -> None:
        if not self.paired:
            return
        scale = LatencyScale.from_record(record, where)
        scale.check_fits(network.fingerprint(), len(network.layers), self.device, self.capabilities.formats, where)
        self._scales[network.fingerprint()] = scale

    def _runs(self, network: Network, index: int, fmt: str) -> bool:
        """Can layer ``index`` run in ``fmt`` here (its ops with every layer in ``fmt``)?"""
        if fmt not in self.capabilities.formats:
            return False
        name = network.layer_names[index]
        try:
            for op in network.ops([fmt] * len(network.layers)):
                if op.layer == name:
                    self.check_op(op)
        except UnsupportedConfigError:
            return False
        return True

    def _scale(self, network: Network) -> LatencyScale:
        """The scale of ``network``'s latencies: adopted, or measured now (the reference alone, for
        at least ``SCALE_SAMPLE_S``)."""
        import dataclasses

        from mpsearch.backends.timing import measure
        from mpsearch.formats import default_menu

        key = network.fingerprint()
        if key not in self._scales:
            menu = self._menus.get(key) or tuple(f for f in default_menu(self.arch) if f in self.capabilities.formats)
            formats = reference_formats(len(network.layers), menu, lambda i, fmt: self._runs(network, i, fmt))
            launch = self.checked_network_launch(network, formats)
            protocol = dataclasses.replace(self.protocol, min_sample_s=max(self.protocol.min_sample_s, SCALE_SAMPLE_S),
                                           sample_cap_s=max(self.protocol.sample_cap_s, 2 * SCALE_SAMPLE_S))
            m = measure(launch, protocol, self._timer, self._telemetry,
                        what=f"network {network.name} reference {','.join(formats)}")
            self._scales[key] = LatencyScale.from_measurement(key, formats, m, self.device)
            self._say(f"latency scale of {network.name}: {self._scales[key].describe()}")
        return self._scales[key]

    def measure(self, network: Network, config: Config) -> LatencyResult:
        from mpsearch.backends import config_formats

        formats = config_formats(network, config)
        caps = self.capabilities
        for fmt in set(formats):
            if fmt not in caps.formats:
                raise UnsupportedConfigError(self.unpriced_reason(fmt))
        ops = network.ops(formats)
        records = self._checked_records(ops)
        what = f"network {network.name} {','.join(formats)}"
        paired: dict[str, Any] = {}
        if self.paired:
            scale = self._scale(network)
            reference = self.checked_network_launch(network, list(scale.formats))
            pair = self.time_against_reference(self.network_launch(network, formats), reference, what)
            _, samples = scaled(pair.ratios, scale)
            t = pair.target
            m = Measurement(list(samples), t.regime, t.stop, t.warmup, t.telemetry, t.telemetry_absent, t.seconds)
            lo, hi = median_ci(pair.ratios)
            paired = {"ratio": round(pair.ratio, 6), "ratio_ci95": [round(lo, 6), round(hi, 6)],
                      "target_median_ms": round(t.median_ms, 6), "reference_median_ms": round(pair.reference.median_ms, 6),
                      "scale": scale.to_record()}
            how = (f"end to end, sustained regime, timed alternately with the reference {','.join(scale.formats)} "
                   f"(round by round, L2 flushed before each launch): the median ratio x the study's scale, "
                   f"{scale.describe()}")
        else:
            m = self.time(self.network_launch(network, formats), what)
            how = (f"end to end, {self.protocol.regime} regime: all layers' kernels back to back on one stream "
                   "(conversions included), CUDA events, L2 flushed before each sample")
        per_layer: dict[str, float] = {}
        kernels: dict[str, str] = {}
        errors: dict[str, float] = {}
        spreads: dict[str, dict[str, float]] = {}
        for op in ops:
            rec = records[op_key(op)]
            per_layer[op.layer] = per_layer.get(op.layer, 0.0) + rec["median_ms"]
            label = f"{op.layer}:{op.kind} {op.fmt}->{op.out_fmt}"
            kernels[label] = rec["kernel"]
            errors[label] = rec["check_rel_err"]
            spreads[label] = {k: rec[k] for k in ("median_ms", "p10_ms", "p90_ms", "n_samples") if k in rec}
        return LatencyResult(
            ms=m.median_ms, source=MEASURED, device=self.device,
            samples=tuple(round(s, 6) for s in m.samples),
            per_layer_ms=tuple(round(per_layer[name], 6) for name in network.layer_names),
            detail=f"{how}; per layer: each op timed alone",
            extra={"kernels": kernels, "check_rel_err": errors, "emulated": sorted(set(formats) & caps.emulated),
                   "per_op": spreads, "timing": m.summary(), **({"paired": paired} if paired else {})},
        )

    def close(self) -> None:
        self._pool.clear()

    # --- shared machinery ------------------------------------------------------------------------

    def unpriced_reason(self, fmt: str) -> str:
        return f"format {fmt} cannot run on {self.device} (sm_{self.arch}) with --backend {self.name}; remove it from the menu"

    def check_op(self, op: Op) -> None:
        """Raise UnsupportedConfigError for an op this backend can never run (shape, format)."""

    def time(self, launch: Callable[[], None], what: str) -> Measurement:
        """``launch`` timed under the backend's protocol."""
        from mpsearch.backends.timing import measure

        return measure(launch, self.protocol, self._timer, self._telemetry, what=what)

    def time_interleaved(self, launches: dict[str, Callable[[], None]], what: str,
                         race_margin: float | None = None) -> dict[str, Measurement]:
        """Several launches timed round-robin under the backend's protocol (for comparisons)."""
        from mpsearch.backends.timing import measure_interleaved

        return measure_interleaved(launches, self.protocol, self._timer, self._telemetry,
                                   race_margin=race_margin, what=what)

    def time_against_reference(self, launch: Callable[[], None], reference: Callable[[], None],
                               what: str) -> PairedMeasurement:
        """``launch`` timed alternately with ``reference`` under the backend's protocol (their ratio
        repeats under a power cap where either latency alone moves)."""
        from mpsearch.backends.timing import measure_against_reference

        return measure_against_reference(launch, reference, self.protocol, self._timer, self._telemetry, what=what)

    def checked_network_launch(self, network: Network, formats: list[str]) -> Callable[[], None]:
        """:meth:`network_launch` after every op's kernel was chosen and checked against float64
        (what :meth:`measure` does before it times)."""
        self._checked_records(network.ops(formats))
        return self.network_launch(network, formats)

    def _checked_records(self, ops: list[Op]) -> dict[str, dict[str, Any]]:
        """Every op's record (its kernel chosen, checked and timed alone), by :func:`op_key`."""
        for op in ops:
            self.check_op(op)  # before any kernel runs: an op that cannot run is infeasible, not a crash
        return {op_key(op): self.op_record(op) for op in ops}

    def operand(self, role: str, fmt: str, rows: int, cols: int) -> Any:
        """The random GPU tensor the backend uses for ``role`` ("A" activations, "W" weights [N, K])."""
        return self._pool.get(role, fmt, rows, cols)

    def op_launcher(self, op: Op) -> Callable[[], None]:
        """One launch of GEMM ``op`` on the backend's operands (to time it beside others)."""
        if op.kind != "gemm":
            raise UnsupportedConfigError(f"op_launcher takes a gemm op, got {op.kind}")
        a = self._pool.get("A", op.fmt, op.m, op.k)
        out = self._pool.empty(f"bench.{op.out_fmt}", op.out_fmt, op.m, op.n)
        return chain(*self.gemm_launches(op, a, out, "bench"))

    def network_launch(self, network: Network, formats: list[str]) -> Callable[[], None]:
        """One launch running every kernel of one forward pass, in order, on the network's buffers."""
        return chain(*(launch for _, launch in self.op_launches(network, formats)))

    def op_launches(self, network: Network, formats: list[str]) -> list[tuple[Op, Callable[[], None]]]:
        """Each op of one forward pass with the launch that runs it (its kernels, in order)."""
        from mpsearch.backends.gpu import convert

        out: list[tuple[Op, Callable[[], None]]] = []
        pool, t = self._pool, self._tensors
        ops = network.ops(formats)
        if network.chained:
            first = ops[0]
            a = pool.get("net.in", first.fmt, first.m, first.k)
            for i, op in enumerate(ops):
                dst = pool.empty(f"net.act{i + 1}", op.out_fmt, op.m, op.n)
                out.append((op, chain(*self.gemm_launches(op, a, dst, f"net.act{i + 1}"))))
                a = dst
            return out
        pending: dict[str, Any] = {}
        for op in ops:
            if op.kind == "convert":
                self.op_record(op)
                x = pool.get("x", "fp16", op.m, op.k)
                dst = pool.empty(f"net.{op.layer}.in", op.out_fmt, op.m, op.k)
                launch, _ = convert.make_converter(x, dst, op.out_fmt, t.FORMAT_STD[op.out_fmt] / t.FORMAT_STD["fp16"])
                out.append((op, launch))
                pending[op.layer] = dst
            else:
                a = pending.pop(op.layer, None)
                if a is None:
                    a = pool.get("x", op.fmt, op.m, op.k)
                dst = pool.empty(f"net.{op.layer}.out", op.out_fmt, op.m, op.n)
                out.append((op, chain(*self.gemm_launches(op, a, dst, f"net.{op.layer}"))))
        return out

    def gemm_reference(self, op: Op, via: str | None = None) -> tuple[Any, Any, Any, float]:
        """(a, w, expected, alpha) for GEMM ``op``: the pool's operands and the float64 reference of
        ``sat(alpha * a @ w.T)`` rounded into the op's output format, through ``via`` first when the
        kernel writes ``via`` and a separate conversion makes the output format."""
        t = self._tensors
        a = self._pool.get("A", op.fmt, op.m, op.k)
        w = self._pool.get("W", op.fmt, op.n, op.k)
        alpha = t.gemm_alpha(op.fmt, op.out_fmt, op.k)
        expected = t.reference_output(alpha * (t.to_float64(a, op.fmt) @ t.to_float64(w, op.fmt).T), op.out_fmt, via)
        return a, w, expected, alpha

    def check_gemm(self, op: Op, launch: Callable[[], None], outputs: list[Any], final: Any, expected: Any,
                   what: str) -> tuple[bool, float, str]:
        """Run ``launch`` once on poisoned ``outputs`` and compare ``final`` (in the op's output
        format) with ``expected``: (passed, relative error, reason). A launch that raises fails."""
        from mpsearch.backends.gpu.timer import wait_for_gpu

        t = self._tensors
        for out in outputs:
            poison(out)
        try:
            launch()
        except Exception as err:  # a launch error (e.g. too much shared memory) disqualifies the kernel
            return False, float("inf"), f"launch failed: {err}"[:200]
        wait_for_gpu(what)
        return t.check_output(t.to_float64(final, op.out_fmt), op.out_fmt, expected, op.fmt)

    def convert_record(self, op: Op) -> dict[str, Any]:
        """A conversion op (fp16 activation into a layer's format) checked and timed alone."""
        from mpsearch.backends.gpu import convert
        from mpsearch.backends.gpu.timer import wait_for_gpu

        t = self._tensors
        src = self._pool.get("x", "fp16", op.m, op.k)
        dst = self._pool.empty("conv", op.out_fmt, op.m, op.k)
        scale = t.FORMAT_STD[op.out_fmt] / t.FORMAT_STD["fp16"]
        launch, name = convert.make_converter(src, dst, op.out_fmt, scale)
        poison(dst)
        launch()
        wait_for_gpu(name)
        expected = t.to_float64(convert.reference_convert(src, op.out_fmt, scale), op.out_fmt)
        ok, rel, reason = t.check_output(t.to_float64(dst, op.out_fmt), op.out_fmt, expected, "fp16")
        if not ok:
            raise KernelCheckError(f"conversion kernel {name} for {op.m}x{op.k} fp16->{op.out_fmt} failed its check: {reason}")
        return {"kind": op.kind, "m": op.m, "n": op.n, "k": op.k, "fmt": op.fmt, "out_fmt": op.out_fmt,
                "kernel": name, "check_rel_err": rel, **timing_record(self.time(launch, name))}
