"""``TorchBackend`` (``--backend torch``): latency measured with the kernels PyTorch runs, i.e. what
a user who deploys through PyTorch gets (cuBLAS/cuBLASLt behind it).

Every GEMM ``D = sat(alpha * A @ W^T)`` (A activations [M, K] row-major, W weights [N, K]) runs as:

- fp16 / bf16: ``torch.addmm`` with ``alpha`` (cuBLAS applies it in its epilogue), writing the
  input's type; another output format is a one-pass conversion after it;
- fp8 (e4m3): ``torch._scaled_mm`` with ``alpha`` as A's scale, writing fp16, bf16 or fp8 directly
  (``use_fast_accum`` as chosen, default on: cuBLAS's fast fp8 path, recorded); int8/int4 outputs
  are a conversion of its fp16 output;
- int8: ``torch._int_mm`` (int32 accumulators) plus the requantisation the next layer needs, one
  Triton pass that scales, rounds and saturates into the output format; both are timed together.

int4 is refused: PyTorch has no int4 x int4 GEMM (``torch._weight_int4pack_mm`` is weight-only int4
with bf16 activations, another number format). Conversions between layers of unchained networks
are the same one-pass Triton kernels the CUTLASS backend uses. No compiler is needed, so this
backend also serves a GPU host without nvcc. Timing, the float64 check and provenance are shared
with the CUTLASS backend (:class:`~mpsearch.backends.gpu.base.GpuBackend`).
"""

from __future__ import annotations

from typing import Any, Callable

from mpsearch.backends.base import MEASURED, BackendCapabilities
from mpsearch.backends.gpu.base import GpuBackend, chain, op_key, timing_record
from mpsearch.backends.timing import TimingProtocol
from mpsearch.errors import KernelCheckError, UnsupportedConfigError
from mpsearch.formats import check_menu, get_format
from mpsearch.network import Network, Op

TORCH_FORMATS = ("fp16", "bf16", "fp8_e4m3", "int8")
# What each library call needs of the shape (cuBLASLt's fp8 and int8 kernels read 16-byte vectors).
_MULTIPLE = {"fp8_e4m3": 16, "int8": 8}
_INT_MM_MIN_ROWS = 17  # torch._int_mm requires more than 16 rows


def refusal(fmt: str) -> str:
    """Why ``--backend torch`` cannot price ``fmt`` (one line)."""
    if fmt == "int4":
        return ("--backend torch cannot run int4: PyTorch has no int4 x int4 GEMM (torch._weight_int4pack_mm is "
                "weight-only int4 with bf16 activations, another format); use --backend cutlass for int4")
    return f"--backend torch has no kernel for {fmt}; it runs {', '.join(TORCH_FORMATS)}"


def gemm_plan(in_fmt: str, out_fmt: str, fp8_out_direct: bool = True) -> tuple[str, str]:
    """(library call, format it writes) for a GEMM ``in_fmt -> out_fmt``; when the written format is
    not ``out_fmt`` a conversion follows. Plain data: the CPU tests pin the op mapping with it."""
    if in_fmt in ("fp16", "bf16"):
        return "torch.addmm", in_fmt
    if in_fmt == "fp8_e4m3":
        direct = ("fp16", "bf16") + (("fp8_e4m3",) if fp8_out_direct else ())
        return "torch._scaled_mm", out_fmt if out_fmt in direct else "fp16"
    if in_fmt == "int8":
        return "torch._int_mm", "int32"
    raise UnsupportedConfigError(refusal(in_fmt))


def check_shape(op: Op) -> None:
    """UnsupportedConfigError for a GEMM shape the PyTorch call refuses (one line)."""
    if op.kind != "gemm":
        return
    multiple = _MULTIPLE.get(op.fmt)
    if multiple and (op.k % multiple or op.n % multiple):
        raise UnsupportedConfigError(
            f"layer {op.layer} ({op.fmt}) has k={op.k}, n={op.n}; PyTorch's {op.fmt} GEMM needs both multiples of "
            f"{multiple}: pad the layer or keep it out of {op.fmt}")
    if op.fmt == "int8" and op.m < _INT_MM_MIN_ROWS:
        raise UnsupportedConfigError(
            f"layer {op.layer} (int8) has m={op.m} rows; torch._int_mm needs more than 16: keep it out of int8 "
            "with --backend torch, or use --backend cutlass")


class TorchBackend(GpuBackend):
    """Measures each configuration with PyTorch's kernels on this machine's GPU (module docstring).

    ``protocol``: the timing protocol (default: sustained). ``fp8_fast_accum``: ``use_fast_accum``
    of ``torch._scaled_mm``.
    """

    name = "torch"
    install_hint = "pip install torch (a CUDA build)"

    def __init__(self, *, protocol: TimingProtocol | None = None, fp8_fast_accum: bool = True,
                 progress: Callable[[str], None] | None = None):
        super().__init__(protocol=protocol, progress=progress)
        self.fp8_fast_accum = fp8_fast_accum
        self._fp8_out_direct = True  # until cuBLASLt refuses an fp8 output on this GPU
        self._scratch: dict[tuple, Any] = {}
        formats = frozenset(f for f in TORCH_FORMATS if get_format(f).support_on(self.arch) is not None)
        self._caps = BackendCapabilities(name="torch", source=MEASURED, device=self.device, arch=self.arch,
                                         formats=formats, emulated=frozenset())

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def provenance(self) -> dict[str, Any]:
        torch = self._torch
        return {**super().provenance(), "cublas": "bundled with torch " + torch.__version__,
                "fp8_fast_accum": self.fp8_fast_accum}

    def unpriced_reason(self, fmt: str) -> str:
        if fmt in TORCH_FORMATS:
            return f"format {fmt} cannot run on {self.device} (sm_{self.arch}); remove it from the menu"
        return refusal(fmt)

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        for fmt in menu:
            if fmt not in self._caps.formats:
                raise UnsupportedConfigError(self.unpriced_reason(fmt))
        check_menu(menu, self.arch, warn=False)
        super().prepare(network, menu)

    def check_op(self, op: Op) -> None:
        check_shape(op)

    def close(self) -> None:
        super().close()
        self._scratch.clear()

    # --- kernels -------------------------------------------------------------------------------

    def _buffer(self, role: str, dtype: Any, rows: int, cols: int) -> Any:
        key = (role, str(dtype), rows, cols)
        if key not in self._scratch:
            self._scratch[key] = self._torch.empty(rows, cols, dtype=dtype, device="cuda")
        return self._scratch[key]

    def gemm_launches(self, op: Op, a: Any, out: Any, role: str) -> list[Callable[[], None]]:
        from mpsearch.backends.gpu import convert

        torch, t = self._torch, self._tensors
        w = self._pool.get("W", op.fmt, op.n, op.k)
        wt = w.t()  # [K, N] column-major: the layout cuBLAS's fp8/int8 kernels read
        alpha = t.gemm_alpha(op.fmt, op.out_fmt, op.k)
        call, writes = gemm_plan(op.fmt, op.out_fmt, self._fp8_out_direct)
        direct = writes == op.out_fmt
        if writes == "int32":
            target = self._buffer(role + ".acc", torch.int32, op.m, op.n)
        else:
            target = out if direct else self._pool.empty(role + ".tmp", writes, op.m, op.n)
        if call == "torch.addmm":
            def gemm() -> None:
                torch.addmm(target, a, wt, beta=0.0, alpha=alpha, out=target)
        elif call == "torch._scaled_mm":
            scale_a = self._buffer(f"scale.{alpha!r}", torch.float32, 1, 1).fill_(alpha).view(())
            scale_b = self._buffer("scale.1", torch.float32, 1, 1).fill_(1.0).view(())
            fast = self.fp8_fast_accum

            def gemm() -> None:
                torch._scaled_mm(a, wt, scale_a, scale_b, out_dtype=target.dtype, use_fast_accum=fast, out=target)
        else:
            def gemm() -> None:
                torch._int_mm(a, wt, out=target)
        if direct:
            return [gemm]
        # int32 accumulators carry the whole scale; an fp16/bf16 intermediate has it applied already.
        conv, _ = convert.make_converter(target, out, op.out_fmt, alpha if writes == "int32" else 1.0)
        return [gemm, conv]

    def kernel_name(self, op: Op) -> str:
        call, writes = gemm_plan(op.fmt, op.out_fmt, self._fp8_out_direct)
        name = f"{call} (cuBLAS{'Lt' if call != 'torch.addmm' else ''}) -> {writes}"
        if call == "torch._scaled_mm":
            name += " fast-accum" if self.fp8_fast_accum else " exact-accum"
        if writes != op.out_fmt:
            name += f" + triton {writes}->{op.out_fmt} scale+sat"
        return name

    def op_record(self, op: Op) -> dict[str, Any]:
        key = op_key(op)
        if key in self._records:
            return self._records[key]
        if op.kind == "convert":
            record = self.convert_record(op)
        else:
            record = self._check_and_time(op)
        self._records[key] = record
        return record

    def _check_and_time(self, op: Op) -> dict[str, Any]:
        a, _, expected, _ = self.gemm_reference(op)
        out = self._pool.empty("D", op.out_fmt, op.m, op.n)
        what = f"{self.kernel_name(op)} on {op.m}x{op.n}x{op.k}"
        try:
            launch = chain(*self.gemm_launches(op, a, out, "check"))
            ok, rel, reason = self.check_gemm(op, launch, [out], out, expected, what)
        except RuntimeError as err:  # e.g. a cuBLASLt build without fp8 outputs
            ok, rel, reason = False, float("inf"), str(err).splitlines()[0][:200]
        if not ok and op.fmt == "fp8_e4m3" and op.out_fmt == "fp8_e4m3" and self._fp8_out_direct:
            self._fp8_out_direct = False  # write fp16 and convert, as for the int outputs
            self._say(f"note: torch._scaled_mm writing fp8 failed its check ({reason}); fp8 outputs are written as fp16 "
                      "and converted")
            return self._check_and_time(op)
        if not ok:
            raise KernelCheckError(f"{what} failed its float64 check: {reason}")
        launch = chain(*self.gemm_launches(op, a, out, "time"))
        return {"kind": op.kind, "m": op.m, "n": op.n, "k": op.k, "fmt": op.fmt, "out_fmt": op.out_fmt,
                "kernel": self.kernel_name(op), "check_rel_err": rel, **timing_record(self.time(launch, what))}
