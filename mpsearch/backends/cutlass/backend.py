"""``CutlassBackend``: latency measured with tuned, checked CUTLASS kernels on the local GPU."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any, Callable

from mpsearch.backends.base import MEASURED, BackendCapabilities
from mpsearch.backends.cutlass import catalog
from mpsearch.backends.cutlass.cache import TuningStore, ensure_cache_dir, resolve_cache_dir
from mpsearch.backends.gpu.base import GpuBackend, chain, op_key, package_version, require_cuda_torch, timing_record
from mpsearch.backends.timing import TimingProtocol
from mpsearch.errors import BackendUnavailableError, KernelCheckError, UnsupportedConfigError
from mpsearch.formats import check_menu, get_format
from mpsearch.network import Network, Op

_GPU_EXTRA = "pip install 'mpsearch[gpu]'"

# The local search (stage 2) is spent on the GEMM shapes that together carry this share of a
# network's multiply-adds: where a few percent of kernel speed moves the end-to-end latency.
LOCAL_SEARCH_SHARE = 0.7
# While tuning, a candidate whose median is this much above the best stops being sampled.
RACE_MARGIN = 0.05
LOCAL_SEARCH_ENV = "MPSEARCH_LOCAL_SEARCH"


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise BackendUnavailableError(f"${name} must be a whole number of stage-2 designs (0 for none), got {text!r}")
    return int(text)


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
            "with an NVIDIA GPU, or use --backend torch / replay / roofline"
        )
    return require_cuda_torch("cutlass", _GPU_EXTRA)


def heavy_shapes(network: Network, share: float = LOCAL_SEARCH_SHARE) -> set[tuple[int, int, int]]:
    """The fewest layer shapes (m, n, k), largest first, that carry ``share`` of the network's GEMM
    multiply-adds."""
    sizes: dict[tuple[int, int, int], int] = {}
    for layer in network.layers:
        shape = (layer.m, layer.n, layer.k)
        sizes[shape] = sizes.get(shape, 0) + layer.m * layer.n * layer.k
    total = sum(sizes.values())
    chosen: set[tuple[int, int, int]] = set()
    covered = 0
    for shape, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if covered >= share * total:
            break
        chosen.add(shape)
        covered += size
    return chosen


class CutlassBackend(GpuBackend):
    """Measures each configuration on this machine's GPU (see the package docstring for the method).

    ``cache_dir``: kernel and tuning cache (default: see :mod:`mpsearch.backends.cutlass.cache`).
    ``protocol``: the timing protocol (default: sustained). ``int4_tiles``: sm_80 registry tiles tried
    for int4 (emulated on Hopper). ``fp8_fast_accum``: fp8 kernels promote to fp32 once per k-block
    (cuBLAS's fast path) rather than every few MMAs. ``local_search``: stage-2 designs tried around
    each heavy op's stage-1 winner (0: none; default ``$MPSEARCH_LOCAL_SEARCH``, else
    ``catalog.LOCAL_SEARCH``). ``jobs``: parallel nvcc processes (default: all cores).
    """

    name = "cutlass"
    install_hint = _GPU_EXTRA

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *, protocol: TimingProtocol | None = None,
                 int4_tiles: int = 4, fp8_fast_accum: bool = True, local_search: int | None = None,
                 jobs: int | None = None, progress: Callable[[str], None] | None = None):
        super().__init__(protocol=protocol, progress=progress)
        if local_search is None:
            local_search = _env_int(LOCAL_SEARCH_ENV, catalog.LOCAL_SEARCH)
        self.cache_dir = ensure_cache_dir(resolve_cache_dir(cache_dir))
        self.int4_tiles, self.fp8_fast_accum, self.local_search, self.jobs = int4_tiles, fp8_fast_accum, local_search, jobs
        # MPSEARCH_TRACE_TUNING=1 prints every candidate as it is checked and timed.
        self._trace = self._say if os.environ.get("MPSEARCH_TRACE_TUNING") else (lambda line: None)
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
        self._kernels: dict[str, Any] = {}  # KernelSpec.key -> CompiledGemm
        self._compile_failed: dict[str, str] = {}
        accum = "fast-accum" if fp8_fast_accum else "exact-accum"
        self._store = TuningStore(self.cache_dir, f"{self.device} sm_{self.arch} cutlass {package_version('nvidia-cutlass')} "
                                                  f"release {self.protocol.regime} fp8 {accum}")
        self._tuned: dict[str, dict[str, Any]] = {}
        self._heavy: set[tuple[int, int, int]] = set()
        self.compile_reports: list[Any] = []
        formats = frozenset(f for f in catalog.ELEMENT if _supported(f, self.arch))
        self._caps = BackendCapabilities(
            name="cutlass", source=MEASURED, device=self.device, arch=self.arch, formats=formats,
            emulated=frozenset(f for f in formats if catalog.is_emulated(f, self.arch)),
        )

    def _require(self) -> Any:
        return require_gpu()

    # --- the LatencyBackend contract ------------------------------------------------------------

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def provenance(self) -> dict[str, Any]:
        from mpsearch.backends.cutlass.compile import BUILD_DEFINES

        return {
            **super().provenance(),
            "nvcc": self._cutlass.nvcc_version(),
            "cutlass": package_version("nvidia-cutlass"),
            "cuda_python": package_version("cuda-python"),
            "kernel_build": " ".join(BUILD_DEFINES),
            "fp8_fast_accum": self.fp8_fast_accum,
            "local_search": self.local_search,
            "cache_dir": str(self.cache_dir),
        }

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        """Check the menu against this GPU, compile every stage-1 kernel the study can need (in
        parallel), then tune the heavy ops: stage 1, one parallel compile of their winners'
        neighbours, stage 2. Later trials then compile nothing."""
        super().prepare(network, menu)
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
        self._heavy |= heavy_shapes(network)
        heavy = [op for op in _possible_ops(network, menu) if (op.m, op.n, op.k) in self._heavy and op.kind == "gemm"]
        heavy = [op for op in heavy if self._can_search(op)]
        for op in heavy:
            try:
                catalog.check_alignment(op)
            except UnsupportedConfigError:
                continue
            self.tune(op, local_search=False)
        records = [self._tuned[op_key(op)] for op in heavy if op_key(op) in self._tuned]
        self._ensure_kernels(local_search_kernels(records, self._stage2_specs))
        for op in heavy:
            if op_key(op) in self._tuned:
                self.tune(op)

    def check_op(self, op: Op) -> None:
        catalog.check_alignment(op)

    def op_record(self, op: Op) -> dict[str, Any]:
        return self.tune(op)

    def close(self) -> None:
        super().close()
        self._kernels.clear()

    # --- kernels -------------------------------------------------------------------------------

    def candidate_specs(self, in_fmt: str, out_fmt: str, designs: Any = catalog.STAGE1) -> list[catalog.KernelSpec]:
        return catalog.candidate_specs(self._cutlass, in_fmt, out_fmt, self.arch, self.int4_tiles, designs=designs,
                                       fast_accum=self.fp8_fast_accum)

    def compile_pairs(self, pairs: list[tuple[str, str]], designs: Any = catalog.STAGE1) -> None:
        """Compile (in parallel) and load every candidate kernel for these (in, out) op formats."""
        specs = []
        for in_fmt, out_fmt in pairs:
            catalog.check_pair(in_fmt, out_fmt, self.arch)
            specs += self.candidate_specs(in_fmt, catalog.fused_output(in_fmt, out_fmt), designs)
        self._ensure_kernels(list(dict.fromkeys(specs)))

    def _ensure_kernels(self, specs: list[catalog.KernelSpec]) -> None:
        from mpsearch.backends.cutlass.compile import cache_key, cached_keys, compile_operations

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

    def _can_search(self, op: Op) -> bool:
        return self.local_search > 0 and catalog.kernel_cc(op.fmt, self.arch) >= 90

    def _stage2_specs(self, record: dict[str, Any]) -> list[catalog.KernelSpec]:
        """The designs one step from a stage-1 winner, as kernels of the winner's format pair."""
        tile, _ = catalog.Sm90Tile.parse(record["tile"])
        steps = catalog.neighbours(tile.replace(fast_accum=False), self.local_search)
        return self.candidate_specs(record["in_fmt"], record["kernel_out"], steps)

    def tune(self, op: Op, local_search: bool | None = None) -> dict[str, Any]:
        """The tuned record of ``op`` (cached per device and regime): chosen kernel, its timings and
        check error, every candidate's. Stage 2 (the winner's neighbours) runs for heavy ops, or when
        ``local_search`` says so."""
        key = op_key(op)
        if op.kind == "convert":
            if key not in self._tuned:
                self._tuned[key] = self._store.get(key) or self.convert_record(op)
                self._store.put(key, self._tuned[key])
            return self._tuned[key]
        if local_search is None:
            local_search = (op.m, op.n, op.k) in self._heavy and self._can_search(op)
        record = self._tuned.get(key)
        if record is None:
            stored = self._store.get(key)
            if stored is not None and self._same_stage1(stored) and self._loadable(stored):
                record = stored
        if record is None:
            record = self._tune_gemm(op, self.candidate_specs(op.fmt, catalog.fused_output(op.fmt, op.out_fmt)))
            record["stage"] = 1
            self._store.put(key, record)
        if local_search and record.get("stage") == 1 and self._can_search(op):
            # The stage-1 winner runs again beside its neighbours, so all are timed in one session.
            winner = catalog.KernelSpec(op.fmt, record["kernel_out"], record["tile"])
            specs = [winner] + [s for s in self._stage2_specs(record) if s != winner]
            second = self._tune_gemm(op, specs, kernel_out=record["kernel_out"])
            record = {**second, "candidates": {**record["candidates"], **second["candidates"]}, "stage": 2,
                      "stage1_candidates": self._stage1_labels(op.fmt, record["kernel_out"])}
            self._store.put(key, record)
        self._tuned[key] = record
        return record

    def _stage1_labels(self, in_fmt: str, kernel_out: str) -> list[str]:
        cc = catalog.kernel_cc(in_fmt, self.arch)
        return [catalog.candidate_label(spec.tile, sched) for spec in self.candidate_specs(in_fmt, kernel_out)
                for sched in catalog.schedules(cc)]

    def _same_stage1(self, record: dict[str, Any]) -> bool:
        """A stored choice stands only if its stage 1 ran over today's stage-1 candidates."""
        tried = set(record.get("stage1_candidates") or record.get("candidates", {}))
        return set(self._stage1_labels(record["in_fmt"], record["kernel_out"])) <= tried

    def _loadable(self, record: dict[str, Any]) -> bool:
        spec = catalog.KernelSpec(record["in_fmt"], record["kernel_out"], record["tile"])
        self._ensure_kernels([spec])
        return spec.key in self._kernels

    def _tune_gemm(self, op: Op, specs: list[catalog.KernelSpec], kernel_out: str | None = None,
                   schedules: list[Any] | None = None) -> dict[str, Any]:
        """Check every (kernel, scheduler schedule) candidate against float64, time the ones that pass
        round-robin under the protocol, and keep the fastest. ``schedules`` narrows the scheduler
        settings tried (default: all of the kernel's architecture)."""
        m, n, k, in_fmt, out_fmt = op.m, op.n, op.k, op.fmt, op.out_fmt
        kernel_out = kernel_out or (specs[0].out_fmt if specs else catalog.fused_output(in_fmt, out_fmt))
        self._ensure_kernels(specs)
        if not any(s.key in self._kernels for s in specs) and kernel_out != "fp16":
            # No epilogue writing out_fmt compiled: write fp16 and convert separately.
            return self._tune_gemm(op, self.candidate_specs(in_fmt, "fp16", _designs_of(specs)), "fp16", schedules)
        a, w, expected, alpha = self.gemm_reference(op, via=kernel_out)
        d = self._pool.empty("D", kernel_out, m, n)
        conv_launch, conv_name, final = None, "", d
        if kernel_out != out_fmt:
            from mpsearch.backends.gpu import convert

            final = self._pool.empty("Q", out_fmt, m, n)
            conv_launch, conv_name = convert.make_converter(d, final, out_fmt, 1.0)
        candidates: dict[str, dict[str, Any]] = {}
        launches: dict[str, Callable[[], None]] = {}
        errors: dict[str, float] = {}
        chosen: dict[str, tuple[catalog.KernelSpec, Any]] = {}
        cc = catalog.kernel_cc(in_fmt, self.arch)
        for spec in specs:
            for schedule in (schedules if schedules is not None and cc >= 90 else catalog.schedules(cc)):
                label = catalog.candidate_label(spec.tile, schedule)
                if spec.key not in self._kernels:
                    candidates[label] = {"error": "compile failed: " + self._compile_failed.get(spec.key, "?")[:200]}
                    continue
                gemm = self._kernels[spec.key].launcher(a, w, d, m, n, k, alpha, schedule)
                launch = chain(gemm, conv_launch) if conv_launch else gemm
                what = f"{in_fmt}->{kernel_out} kernel {label} on {m}x{n}x{k}"
                self._trace(f"  checking {what}")
                ok, rel, reason = self.check_gemm(op, launch, [d, final], final, expected, what)
                if not ok:
                    candidates[label] = {"error": f"check failed: {reason}", "check_rel_err": rel}
                    continue
                launches[label], errors[label], chosen[label] = launch, rel, (spec, schedule)
        del expected
        if not launches:
            if kernel_out not in ("fp16", "bf16"):
                # No epilogue writing out_fmt passed: fall back to an fp16 epilogue and a conversion.
                record = self._tune_gemm(op, self.candidate_specs(in_fmt, "fp16", _designs_of(specs)), "fp16", schedules)
                record["candidates"] = {f"{t} (fused {kernel_out})": c for t, c in candidates.items()} | record["candidates"]
                return record
            reasons = "; ".join(f"{t}: {c['error']}" for t, c in candidates.items())
            raise KernelCheckError(f"no {in_fmt}->{out_fmt} kernel for {m}x{n}x{k} passed its float64 check: {reasons}")
        timed = self.time_interleaved(launches, f"tuning {op_key(op)}", race_margin=RACE_MARGIN)
        for label, meas in timed.items():
            spec, schedule = chosen[label]
            candidates[label] = {"median_ms": meas.median_ms, "n_samples": len(meas.samples), "stop": meas.stop,
                                 "check_rel_err": errors[label], "tile": spec.tile,
                                 "schedule": list(schedule) if schedule else None}
            self._trace(f"    {label}: {meas.median_ms:.4f} ms ({meas.stop}), err {errors[label]:.2e}")
        best = min((lbl for lbl in timed if not timed[lbl].eliminated), key=lambda lbl: timed[lbl].median_ms)
        spec, schedule = chosen[best]
        kernel = best + (f" + separate {conv_name}" if conv_name else "")
        return {
            "kind": op.kind, "m": m, "n": n, "k": k, "fmt": in_fmt, "out_fmt": out_fmt,
            "kernel": kernel, "tile": spec.tile, "in_fmt": in_fmt, "kernel_out": kernel_out,
            "check_rel_err": errors[best], **timing_record(timed[best]), "candidates": candidates,
            "schedule": list(schedule) if schedule else None, "candidate": best,
            "fp8_accumulation": ("fast" if "fast-accum" in spec.tile else "exact") if in_fmt == "fp8_e4m3" else None,
        }

    # --- whole networks ------------------------------------------------------------------------

    def gemm_launches(self, op: Op, a: Any, out: Any, role: str) -> list[Callable[[], None]]:
        record = self.tune(op)
        spec = catalog.KernelSpec(op.fmt, record["kernel_out"], record["tile"])
        self._ensure_kernels([spec])
        w = self._pool.get("W", op.fmt, op.n, op.k)
        alpha = self._tensors.gemm_alpha(op.fmt, op.out_fmt, op.k)
        schedule = record.get("schedule")
        if record["kernel_out"] == op.out_fmt:
            return [self._kernels[spec.key].launcher(a, w, out, op.m, op.n, op.k, alpha, schedule)]
        from mpsearch.backends.gpu import convert

        tmp = self._pool.empty(role + ".tmp", record["kernel_out"], op.m, op.n)
        conv, _ = convert.make_converter(tmp, out, op.out_fmt, 1.0)
        return [self._kernels[spec.key].launcher(a, w, tmp, op.m, op.n, op.k, alpha, schedule), conv]


def local_search_kernels(records: list[dict[str, Any]], stage2_specs: Callable[[dict[str, Any]], list[Any]]) -> list[Any]:
    """The kernels stage 2 will time: the neighbours of every stage-1 winner, each once. A record
    that stage 2 already chose (a warm cache) needs none: its winner may itself be a neighbour, whose
    own neighbours stage 2 never tries, so compiling them would only cost a warm run minutes."""
    wanted = [spec for record in records if record.get("stage") == 1 for spec in stage2_specs(record)]
    return list(dict.fromkeys(wanted))


def _designs_of(specs: list[catalog.KernelSpec]) -> list[catalog.Sm90Tile] | tuple[catalog.Sm90Tile, ...]:
    """The sm_90 designs behind ``specs`` (to build the same candidates for another output)."""
    designs = []
    for spec in specs:
        try:
            designs.append(catalog.Sm90Tile.parse(spec.tile)[0].replace(fast_accum=False))
        except ValueError:  # sm_80 registry tiles: the default list serves
            return catalog.STAGE1
    return designs


def _possible_ops(network: Network, menu: tuple[str, ...]) -> list[Op]:
    """Every GEMM op any configuration over ``menu`` can run (each layer, input and output format)."""
    ops = []
    last = len(network.layers) - 1
    for i, layer in enumerate(network.layers):
        for fmt in menu:
            outs = (menu if i < last else ("fp16",)) if network.chained else ("fp16",)
            for out in outs:
                ops.append(Op("gemm", layer.name, layer.m, layer.n, layer.k, fmt, out))
    return ops


def _supported(fmt: str, arch: int) -> bool:
    return get_format(fmt).support_on(arch) is not None
