"""``CutlassBackend``: latency measured with tuned, checked CUTLASS kernels on the local GPU."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Any, Callable

from mpsearch import __version__
from mpsearch.backends.base import MEASURED, BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.backends.cutlass import catalog
from mpsearch.backends.cutlass.cache import TuningStore, ensure_cache_dir, resolve_cache_dir
from mpsearch.errors import BackendUnavailableError, KernelCheckError, UnsupportedConfigError
from mpsearch.formats import check_menu
from mpsearch.network import Network, Op
from mpsearch.space import Config

_GPU_EXTRA = "pip install 'mpsearch[gpu]'"


def missing_dependencies() -> list[str]:
    """What this machine lacks for the CUTLASS backend, one phrase each (empty: nothing)."""
    missing = []
    for module, what in (("cutlass_cppgen", "nvidia-cutlass 4.2 (module cutlass_cppgen)"),
                         ("cuda.bindings", "cuda-python >= 13 (module cuda.bindings)"),
                         ("torch", "PyTorch with CUDA (module torch)")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(what)
    if not (os.environ.get("CUDA_INSTALL_PATH") or shutil.which("nvcc")):
        missing.append("the CUDA compiler nvcc (not on PATH; or set CUDA_INSTALL_PATH)")
    return missing


def require_gpu() -> Any:
    """torch, after checking that the dependencies and a CUDA GPU are there (one-line error if not)."""
    missing = missing_dependencies()
    if missing:
        raise BackendUnavailableError(
            f"--backend cutlass needs {'; '.join(missing)}: install the gpu extra ({_GPU_EXTRA}) on a machine "
            "with an NVIDIA GPU, or use --backend replay / --backend roofline here"
        )
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise BackendUnavailableError(
            f"--backend cutlass needs an NVIDIA GPU, and torch {torch.__version__} sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
            "run on a GPU host, or use --backend replay / --backend roofline"
        )
    return torch


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _op_key(op: Op) -> str:
    if op.kind == "convert":
        return f"convert {op.m}x{op.k} {op.fmt}->{op.out_fmt}"
    return f"gemm {op.m}x{op.n}x{op.k} {op.fmt}->{op.out_fmt}"


class CutlassBackend(LatencyBackend):
    """Measures each configuration on this machine's GPU (see the package docstring for the method).

    ``cache_dir``: kernel and tuning cache (default: see :mod:`mpsearch.backends.cutlass.cache`).
    ``warmup``/``repeats``: timing policy for every timed op and network (repeats >= 10).
    ``tiles``: candidate tiles per kernel type (>= 8 for sm_90 formats; int4's emulated sm_80
    kernels get at most ``int4_tiles``). ``jobs``: parallel nvcc processes (default: all cores).
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, warmup: int = 3, repeats: int = 10,
                 tiles: int = catalog.DEFAULT_TILES, int4_tiles: int = 4, jobs: int | None = None,
                 progress: Callable[[str], None] | None = None):
        if repeats < 10:
            raise UnsupportedConfigError(f"repeats must be at least 10 for a measured latency, got {repeats}")
        self._torch = require_gpu()
        self.cache_dir = ensure_cache_dir(resolve_cache_dir(cache_dir))
        self.warmup, self.repeats, self.tiles, self.int4_tiles = warmup, repeats, tiles, int4_tiles
        self.jobs = jobs
        self._say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        # MPSEARCH_TRACE_TUNING=1 prints every candidate as it is checked and timed.
        self._trace = self._say if os.environ.get("MPSEARCH_TRACE_TUNING") else (lambda line: None)
        torch = self._torch
        self.device = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        self.arch = major * 10 + minor
        if not any(_supported(f, self.arch) for f in catalog.ELEMENT):
            raise BackendUnavailableError(
                f"--backend cutlass has no kernels for {self.device} (sm_{self.arch}); it needs sm_80 or newer: "
                "use --backend roofline or replay"
            )
        from mpsearch.backends.cutlass.shim import import_cutlass

        self._cutlass = import_cutlass(self.cache_dir, device_cc=self.arch)
        self._cutlass.initialize_cuda_context()
        from mpsearch.backends.cutlass import runtime

        self._rt = runtime
        self._timer = runtime.Timer(warmup, repeats)
        self._pool = runtime.TensorPool()
        self._kernels: dict[str, Any] = {}  # KernelSpec.key -> CompiledGemm
        self._compile_failed: dict[str, str] = {}
        self._store = TuningStore(self.cache_dir, f"{self.device} sm_{self.arch} cutlass {_version('nvidia-cutlass')}")
        self._tuned: dict[str, dict[str, Any]] = {}
        self.compile_reports: list[Any] = []
        formats = frozenset(f for f in catalog.ELEMENT if _supported(f, self.arch))
        self._caps = BackendCapabilities(
            name="cutlass", source=MEASURED, device=self.device, arch=self.arch, formats=formats,
            emulated=frozenset(f for f in formats if catalog.is_emulated(f, self.arch)),
        )

    # --- the LatencyBackend contract ------------------------------------------------------------

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def provenance(self) -> dict[str, Any]:
        torch = self._torch
        return {
            **super().provenance(),
            "driver": _driver_version(),
            "cuda": torch.version.cuda or "unknown",
            "nvcc": self._cutlass.nvcc_version(),
            "cutlass": _version("nvidia-cutlass"),
            "cuda_python": _version("cuda-python"),
            "torch": torch.__version__,
            "mpsearch": __version__,
            "timing": self._timer.policy,
            "cache_dir": str(self.cache_dir),
        }

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        """Check the menu against this GPU and compile every kernel the study can need, in parallel."""
        for fmt in menu:
            if fmt not in catalog.ELEMENT:
                raise UnsupportedConfigError(f"the CUTLASS backend has no kernels for {fmt}; it runs {', '.join(catalog.ELEMENT)}")
        check_menu(menu, self.arch, warn=False)
        pairs = set()
        for fmt in menu:
            outs = set(menu) | {"fp16"} if network.chained else {"fp16"}
            for out in outs:
                pairs.add((fmt, out))
        self.compile_pairs(sorted(pairs))

    def measure(self, network: Network, config: Config) -> LatencyResult:
        from mpsearch.backends import config_formats

        formats = config_formats(network, config)
        for fmt in set(formats):
            if fmt not in self._caps.formats:
                raise UnsupportedConfigError(f"format {fmt} cannot run on {self.device} (sm_{self.arch}); remove it from the menu")
        ops = network.ops(formats)
        for op in ops:
            catalog.check_alignment(op)  # before any kernel runs: a misaligned shape is infeasible, not a crash
        records = {_op_key(op): self.tune(op) for op in ops}
        samples = self._time_network(network, formats)
        per_layer: dict[str, float] = {}
        kernels: dict[str, str] = {}
        errors: dict[str, float] = {}
        for op in ops:
            rec = records[_op_key(op)]
            per_layer[op.layer] = per_layer.get(op.layer, 0.0) + rec["median_ms"]
            label = f"{op.layer}:{op.kind} {op.fmt}->{op.out_fmt}"
            kernels[label] = rec["kernel"]
            errors[label] = rec["check_rel_err"]
        return LatencyResult(
            ms=self._rt.median(samples), source=MEASURED, device=self.device,
            samples=tuple(round(s, 6) for s in samples),
            per_layer_ms=tuple(round(per_layer[name], 6) for name in network.layer_names),
            detail="end to end: all layers' kernels back to back on one stream (conversions included), "
                   "CUDA events, L2 flushed before each repeat; per layer: the tuned ops timed alone",
            extra={"kernels": kernels, "check_rel_err": errors,
                   "emulated": sorted(set(formats) & self._caps.emulated)},
        )

    def close(self) -> None:
        self._pool.clear()
        self._kernels.clear()

    # --- for benchmarks: the operands the tuned kernels ran on, and the same timer ---------------

    def operand(self, role: str, fmt: str, rows: int, cols: int) -> Any:
        """The random GPU tensor the backend uses for ``role`` ("A" activations, "W" weights [N, K])."""
        return self._pool.get(role, fmt, rows, cols)

    def op_launcher(self, op: Op) -> Callable[[], None]:
        """A launcher for ``op``'s tuned kernel(s) on the backend's operands (to re-time it beside others)."""
        if op.kind != "gemm":
            raise UnsupportedConfigError(f"op_launcher takes a gemm op, got {op.kind}")
        a = self._pool.get("A", op.fmt, op.m, op.k)
        out = self._pool.empty("bench.out", op.out_fmt, op.m, op.n)
        launches = self._gemm_launch(op, a, out, "bench")
        return launches[0] if len(launches) == 1 else _chain(*launches)

    def time_launch(self, launch: Callable[[], None], what: str, repeats: int | None = None) -> list[float]:
        """Samples (ms) of ``launch`` under the backend's timing policy (warm-up, L2 flush, events)."""
        return self._timer.time(launch, repeats=repeats, what=what)

    # --- kernels -------------------------------------------------------------------------------

    def candidate_specs(self, in_fmt: str, out_fmt: str) -> list[catalog.KernelSpec]:
        limit = self.int4_tiles if in_fmt == "int4" else self.tiles
        return catalog.candidate_specs(self._cutlass, in_fmt, out_fmt, self.arch, limit)

    def compile_pairs(self, pairs: list[tuple[str, str]]) -> None:
        """Compile (in parallel) and load every candidate kernel for these (in, out) op formats."""
        specs = []
        for in_fmt, out_fmt in pairs:
            catalog.check_pair(in_fmt, out_fmt, self.arch)
            specs += self.candidate_specs(in_fmt, catalog.fused_output(in_fmt, out_fmt))
        self._ensure_kernels(list(dict.fromkeys(specs)))

    def _ensure_kernels(self, specs: list[catalog.KernelSpec]) -> None:
        from mpsearch.backends.cutlass.compile import cached_keys, cache_key, compile_operations

        todo = [s for s in specs if s.key not in self._kernels and s.key not in self._compile_failed]
        if not todo:
            return
        ops = {s.key: catalog.build_operation(self._cutlass, s, self.arch) for s in todo}
        report = compile_operations(self._cutlass, ops, self.cache_dir, arch=self.arch, jobs=self.jobs, progress=self._say)
        self.compile_reports.append(report)
        self._compile_failed.update(report.failed)
        have = cached_keys(self.cache_dir)
        from cutlass_cppgen.backend import compiler

        for spec in todo:
            op = ops[spec.key]
            if spec.key in report.failed or cache_key(op) not in have:
                self._compile_failed.setdefault(spec.key, "not compiled")
                continue
            compiler.add_module([op])  # a cache hit: loads the cubin and host stub, compiles nothing
            self._kernels[spec.key] = self._rt.CompiledGemm(op, spec.in_fmt, spec.out_fmt)

    # --- tuning --------------------------------------------------------------------------------

    def tune(self, op: Op) -> dict[str, Any]:
        """The tuned record of ``op`` (cached per device): chosen kernel, its timings and check error."""
        key = _op_key(op)
        if key in self._tuned:
            return self._tuned[key]
        stored = self._store.get(key)
        if stored is not None and (op.kind == "convert" or (self._same_candidates(stored) and self._loadable(stored))):
            self._tuned[key] = stored
            return stored
        record = self._tune_convert(op) if op.kind == "convert" else self._tune_gemm(op)
        self._store.put(key, record)
        self._tuned[key] = record
        return record

    def _same_candidates(self, record: dict[str, Any]) -> bool:
        """A stored choice stands only if it was made among today's candidates (the list may change)."""
        tried = {t for t in record.get("candidates", {}) if "(fused" not in t}
        return tried == set(self._candidate_labels(record["in_fmt"], record["kernel_out"]))

    def _candidates(self, in_fmt: str, kernel_out: str) -> list[tuple[catalog.KernelSpec, Any]]:
        """Every (kernel, scheduler schedule) pair tuning tries for this format pair."""
        cc = catalog.kernel_cc(in_fmt, self.arch)
        return [(spec, schedule) for spec in self.candidate_specs(in_fmt, kernel_out) for schedule in catalog.schedules(cc)]

    def _candidate_labels(self, in_fmt: str, kernel_out: str) -> list[str]:
        return [catalog.candidate_label(spec.tile, sched) for spec, sched in self._candidates(in_fmt, kernel_out)]

    def _loadable(self, record: dict[str, Any]) -> bool:
        spec = catalog.KernelSpec(record["in_fmt"], record["kernel_out"], record["tile"])
        self._ensure_kernels([spec])
        return spec.key in self._kernels

    def _tune_convert(self, op: Op) -> dict[str, Any]:
        rt = self._rt
        src = self._pool.get("x", "fp16", op.m, op.k)
        dst = self._pool.empty("conv", op.out_fmt, op.m, op.k)
        scale = rt.FORMAT_STD[op.out_fmt] / rt.FORMAT_STD["fp16"]
        from mpsearch.backends.cutlass import convert

        launch, name = convert.make_converter(src, dst, op.out_fmt, scale)
        _poison(dst)
        launch()
        rt.sync(name)
        expected = rt.to_float64(convert.reference_convert(src, op.out_fmt, scale), op.out_fmt)
        ok, rel, reason = rt.check_output(rt.to_float64(dst, op.out_fmt), op.out_fmt, expected, "fp16")
        if not ok:
            raise KernelCheckError(f"conversion kernel {name} for {op.m}x{op.k} fp16->{op.out_fmt} failed its check: {reason}")
        samples = self._timer.time(launch, what=name)
        return _record(op, name, samples, rel, tile="", in_fmt="fp16", kernel_out=op.out_fmt, candidates={})

    def _tune_gemm(self, op: Op, separate: bool = False) -> dict[str, Any]:
        rt = self._rt
        m, n, k, in_fmt, out_fmt = op.m, op.n, op.k, op.fmt, op.out_fmt
        kernel_out = "fp16" if separate else catalog.fused_output(in_fmt, out_fmt)
        specs = self.candidate_specs(in_fmt, kernel_out)
        self._ensure_kernels(specs)
        if not any(s.key in self._kernels for s in specs) and kernel_out != "fp16":
            # No epilogue writing out_fmt compiled: write fp16 and convert separately.
            kernel_out = "fp16"
            specs = self.candidate_specs(in_fmt, kernel_out)
            self._ensure_kernels(specs)
        a = self._pool.get("A", in_fmt, m, k)
        w = self._pool.get("W", in_fmt, n, k)
        d = self._pool.empty("D", kernel_out, m, n)
        alpha = rt.gemm_alpha(in_fmt, out_fmt, k)
        expected = rt.round_into(alpha * (rt.to_float64(a, in_fmt) @ rt.to_float64(w, in_fmt).T), kernel_out)
        conv_launch, conv_name, final = None, "", d
        if kernel_out != out_fmt:
            from mpsearch.backends.cutlass import convert

            final = self._pool.empty("Q", out_fmt, m, n)
            conv_launch, conv_name = convert.make_converter(d, final, out_fmt, 1.0)
            expected = rt.round_into(expected, out_fmt)
        candidates: dict[str, dict[str, Any]] = {}
        best = None
        for spec, schedule in self._candidates(in_fmt, kernel_out):
            label = catalog.candidate_label(spec.tile, schedule)
            if spec.key not in self._kernels:
                candidates[label] = {"error": "compile failed: " + self._compile_failed.get(spec.key, "?")[:200]}
                continue
            gemm = self._kernels[spec.key].launcher(a, w, d, m, n, k, alpha, schedule)
            launch = gemm if conv_launch is None else _chain(gemm, conv_launch)
            _poison(d)
            if final is not d:
                _poison(final)
            what = f"{in_fmt}->{kernel_out} kernel {label} on {m}x{n}x{k}"
            self._trace(f"  checking {what}")
            try:
                launch()
            except Exception as err:  # a launch error (e.g. too much shared memory) disqualifies it
                candidates[label] = {"error": f"launch failed: {err}"[:200]}
                continue
            rt.sync(what)
            ok, rel, reason = rt.check_output(rt.to_float64(final, out_fmt), out_fmt, expected, in_fmt)
            if not ok:
                candidates[label] = {"error": f"check failed: {reason}", "check_rel_err": rel}
                continue
            samples = self._timer.time(launch, what=what)
            entry = _stats(samples) | {"check_rel_err": rel}
            self._trace(f"    {entry['median_ms']:.4f} ms, err {rel:.2e}")
            candidates[label] = entry
            if best is None or entry["median_ms"] < best[1]["median_ms"]:
                best = ((spec, schedule, label), entry, samples)
        del expected
        if best is None and kernel_out not in ("fp16", "bf16"):
            # No epilogue writing out_fmt passed: fall back to an fp16 epilogue and a separate
            # conversion, keeping the fused candidates' verdicts in the record.
            record = self._tune_gemm(op, separate=True)
            record["candidates"] = {f"{t} (fused {kernel_out})": c for t, c in candidates.items()} | record["candidates"]
            return record
        if best is None:
            reasons = "; ".join(f"{t}: {c['error']}" for t, c in candidates.items())
            raise KernelCheckError(f"no {in_fmt}->{out_fmt} kernel for {m}x{n}x{k} passed its float64 check: {reasons}")
        (spec, schedule, label), entry, samples = best
        kernel = label + (f" + separate {conv_name}" if conv_name else "")
        record = _record(op, kernel, samples, entry["check_rel_err"], tile=spec.tile, in_fmt=in_fmt,
                         kernel_out=kernel_out, candidates=candidates)
        return record | {"schedule": list(schedule) if schedule else None, "candidate": label}

    # --- whole networks ------------------------------------------------------------------------

    def _gemm_launch(self, op: Op, a: Any, out: Any, role: str) -> list[Callable[[], None]]:
        record = self.tune(op)
        spec = catalog.KernelSpec(op.fmt, record["kernel_out"], record["tile"])
        self._ensure_kernels([spec])
        w = self._pool.get("W", op.fmt, op.n, op.k)
        alpha = self._rt.gemm_alpha(op.fmt, op.out_fmt, op.k)
        schedule = record.get("schedule")
        if record["kernel_out"] == op.out_fmt:
            return [self._kernels[spec.key].launcher(a, w, out, op.m, op.n, op.k, alpha, schedule)]
        from mpsearch.backends.cutlass import convert

        tmp = self._pool.empty(role + ".tmp", record["kernel_out"], op.m, op.n)
        conv, _ = convert.make_converter(tmp, out, op.out_fmt, 1.0)
        return [self._kernels[spec.key].launcher(a, w, tmp, op.m, op.n, op.k, alpha, schedule), conv]

    def _network_launches(self, network: Network, formats: list[str]) -> list[Callable[[], None]]:
        """Every kernel of one forward pass, in order, reading and writing the network's buffers."""
        from mpsearch.backends.cutlass import convert

        launches: list[Callable[[], None]] = []
        pool, rt = self._pool, self._rt
        ops = network.ops(formats)
        if network.chained:
            first = ops[0]
            a = pool.get("net.in", first.fmt, first.m, first.k)
            for i, op in enumerate(ops):
                out = pool.empty(f"net.act{i + 1}", op.out_fmt, op.m, op.n)
                launches += self._gemm_launch(op, a, out, f"net.act{i + 1}")
                a = out
            return launches
        pending: dict[str, Any] = {}
        for i, op in enumerate(ops):
            if op.kind == "convert":
                self.tune(op)
                x = pool.get("x", "fp16", op.m, op.k)
                dst = pool.empty(f"net.{op.layer}.in", op.out_fmt, op.m, op.k)
                launch, _ = convert.make_converter(x, dst, op.out_fmt, rt.FORMAT_STD[op.out_fmt] / rt.FORMAT_STD["fp16"])
                launches.append(launch)
                pending[op.layer] = dst
            else:
                a = pending.pop(op.layer, None)
                if a is None:
                    a = pool.get("x", op.fmt, op.m, op.k)
                out = pool.empty(f"net.{op.layer}.out", op.out_fmt, op.m, op.n)
                launches += self._gemm_launch(op, a, out, f"net.{op.layer}")
        return launches

    def time_network(self, network: Network, config: Config, repeats: int | None = None) -> list[float]:
        """End-to-end samples only (ops are tuned first if they are not): used to record many configs."""
        return self._time_network(network, list(config.formats), repeats)

    def _time_network(self, network: Network, formats: list[str], repeats: int | None = None) -> list[float]:
        launches = self._network_launches(network, formats)

        def run_network() -> None:
            for launch in launches:
                launch()

        return self._timer.time(run_network, repeats=repeats, what=f"network {network.name} {','.join(formats)}")


def _supported(fmt: str, arch: int) -> bool:
    from mpsearch.formats import get_format

    return get_format(fmt).support_on(arch) is not None


def _chain(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def launch() -> None:
        first()
        second()
    return launch


def _poison(t: Any) -> None:
    """Fill an output before a check so that an element the kernel never writes cannot pass."""
    if t.dtype.is_floating_point:
        if t.dtype.itemsize == 1:  # fp8: NaN is 0x7f in e4m3fn
            t.view(dtype=__import__("torch").uint8).fill_(0x7F)
        else:
            t.fill_(float("nan"))
    else:
        t.fill_(0x5A if t.dtype == __import__("torch").uint8 else 99)


def _stats(samples: list[float]) -> dict[str, Any]:
    import statistics

    q = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median_ms": statistics.median(samples), "p10_ms": q[0], "p90_ms": q[-1], "n_samples": len(samples)}


def _record(op: Op, kernel: str, samples: list[float], rel: float, *, tile: str, in_fmt: str, kernel_out: str,
            candidates: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": op.kind, "m": op.m, "n": op.n, "k": op.k, "fmt": op.fmt, "out_fmt": op.out_fmt,
        "kernel": kernel, "tile": tile, "in_fmt": in_fmt, "kernel_out": kernel_out,
        **_stats(samples), "samples_ms": [round(s, 6) for s in samples], "check_rel_err": rel,
        "candidates": candidates, "date": _dt.date.today().isoformat(),
    }
