"""The GPU side: tensors in each format, compiled kernels, the float64 check, and event timing.

Imported only by a constructed :class:`~mpsearch.backends.cutlass.CutlassBackend` (it imports torch).

Data. Every format gets random values of a typical magnitude for that format (``FORMAT_STD``: unit
normal for floats, quantised integers spread over their range), never zeros. A GEMM computes
``D = sat(alpha * A @ W^T)`` with ``alpha`` chosen so that D has the typical magnitude of its own
format: the output of one layer looks like the input the next layer expects.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from mpsearch.backends.cutlass import convert
from mpsearch.errors import KernelCheckError

FORMAT_STD = {"fp16": 1.0, "bf16": 1.0, "fp8_e4m3": 1.0, "int8": 32.0, "int4": 2.0}
# Relative error allowed against the float64 reference rounded into the output format.
TOLERANCE = {"fp16": 1e-3, "bf16": 1e-2, "fp8_e4m3": 5e-2, "int8": 1e-3, "int4": 1e-3}
INTEGER = ("int8", "int4")
L2_FLUSH_BYTES = 256 << 20  # > 5x the H100's 50 MB L2


def torch_dtype(fmt: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn,
            "int8": torch.int8, "int4": torch.uint8}[fmt]


def storage_shape(fmt: str, rows: int, cols: int) -> tuple[int, int]:
    return (rows, cols // 2) if fmt == "int4" else (rows, cols)


def random_tensor(fmt: str, rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """Random ``rows x cols`` values in ``fmt`` on the GPU (int4 packed two per byte)."""
    x = torch.randn(rows, cols, device="cuda", generator=gen, dtype=torch.float32) * FORMAT_STD[fmt]
    if fmt == "int8":
        return torch.round(x.clamp(-127, 127)).to(torch.int8)
    if fmt == "int4":
        return convert.reference_convert(x, "int4", 1.0)
    return x.to(torch_dtype(fmt))


def to_float64(t: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "int4":
        b = t.to(torch.int16)
        lo = ((b & 0xF) ^ 8) - 8  # sign-extend the low nibble
        hi = (((b >> 4) & 0xF) ^ 8) - 8
        return torch.stack((lo, hi), dim=-1).reshape(t.shape[0], t.shape[1] * 2).double()
    return t.double()


def round_into(ref: torch.Tensor, fmt: str) -> torch.Tensor:
    """``ref`` (float64) rounded and saturated into ``fmt``, back as float64 values."""
    if fmt in INTEGER:
        lo, hi = convert.INT_RANGE[fmt]
        return torch.round(ref.clamp(lo, hi))
    if fmt == "fp8_e4m3":
        return ref.clamp(-convert.FP8_MAX, convert.FP8_MAX).to(torch.float8_e4m3fn).double()
    return ref.to(torch_dtype(fmt)).double()


def gemm_alpha(in_fmt: str, out_fmt: str, k: int) -> float:
    """Dequantise-and-requantise scale: A·W^T has std FORMAT_STD[in]^2·sqrt(k); D gets FORMAT_STD[out]."""
    return FORMAT_STD[out_fmt] / (FORMAT_STD[in_fmt] ** 2 * math.sqrt(k))


# Relative error that rounding into the *output* format alone can cause when float accumulation
# moves a value across a rounding boundary (one step of that format, in a few elements).
OUTPUT_ROUNDING = {"fp16": 1e-3, "bf16": 1e-2, "fp8_e4m3": 5e-2, "int8": 1e-2, "int4": 1e-1}
_MANTISSA_BITS = {"fp16": 10, "bf16": 7, "fp8_e4m3": 3}
_MIN_EXPONENT = {"fp16": -14, "bf16": -126, "fp8_e4m3": -6}


def output_step(values: torch.Tensor, fmt: str) -> torch.Tensor:
    """The spacing of ``fmt``'s representable numbers at each of ``values`` (1 for integers)."""
    if fmt in INTEGER:
        return torch.ones_like(values)
    _, exponent = torch.frexp(values)
    exponent = (exponent - 1).clamp_min(_MIN_EXPONENT[fmt])  # subnormals share the smallest step
    return torch.pow(2.0, (exponent - _MANTISSA_BITS[fmt]).double())


def check_output(got: torch.Tensor, out_fmt: str, expected: torch.Tensor, in_fmt: str) -> tuple[bool, float, str]:
    """(passed, relative error, reason) of ``got`` (float64 values) against ``expected`` (the float64
    reference rounded into ``out_fmt``).

    Integer inputs accumulate exactly, so the result must equal the reference but for a rare
    one-step rounding flip from the fp32 scale ("exact before the output conversion"). Float inputs:
    relative error within the input format's tolerance, or within what one rounding step of a
    coarser output format (fp8, int8) can add, whichever is larger.
    """
    if not torch.isfinite(got).all():
        return False, math.inf, "output has NaN/inf (or elements never written)"
    diff = got - expected
    rel = float(diff.norm() / expected.norm().clamp_min(1e-30))
    if in_fmt in INTEGER:
        steps = diff.abs() / output_step(expected, out_fmt)
        worst = float(steps.max())
        flipped = float((diff != 0).double().mean())
        if worst > 1.0 + 1e-9 or flipped > 1e-3:
            return False, rel, (f"integer path not exact: max |diff| {worst:g} steps of {out_fmt}, "
                                f"{flipped:.2%} of elements differ")
        return True, rel, ""
    tol = max(TOLERANCE[in_fmt], OUTPUT_ROUNDING[out_fmt])
    if rel > tol:
        return False, rel, f"relative error {rel:.3g} > {tol:g} ({in_fmt} inputs, {out_fmt} output)"
    return True, rel, ""


HANG_SECONDS = 60.0  # far above any kernel here (the slowest, emulated int4 on mlp6, takes ~60 ms)


def sync(what: str, timeout_s: float = HANG_SECONDS) -> None:
    """Wait for the GPU's queued work, or raise KernelCheckError if it does not finish in time.

    torch.cuda.synchronize() would wait forever on a kernel that never finishes; polling an event
    turns that into an error naming the kernel (the process cannot use the GPU afterwards)."""
    event = torch.cuda.Event()
    event.record()
    deadline = time.monotonic() + timeout_s
    while not event.query():
        if time.monotonic() > deadline:
            raise KernelCheckError(f"{what} did not finish within {timeout_s:.0f} s: the kernel hangs; "
                                   "this process cannot use the GPU any more")
        time.sleep(2e-4)


class Timer:
    """CUDA-event timing with an L2 flush before every repeat (the policy of triton's do_bench)."""

    def __init__(self, warmup: int, repeats: int):
        self.warmup = warmup
        self.repeats = repeats
        self._flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")

    @property
    def policy(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "repeats": self.repeats,
                "l2": f"flushed before every repeat by zeroing a {L2_FLUSH_BYTES >> 20} MiB buffer",
                "clock": "CUDA events on the default stream around the launches only"}

    def time(self, launch: Callable[[], None], repeats: int | None = None, warmup: int | None = None,
             what: str = "a timed kernel") -> list[float]:
        for _ in range(self.warmup if warmup is None else warmup):
            launch()
        n = self.repeats if repeats is None else repeats
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            self._flush.zero_()
            starts[i].record()
            launch()
            ends[i].record()
        sync(what)
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


@dataclass
class TensorPool:
    """Random tensors by role and shape, made once (weights are the bulk: keep one copy per format)."""

    seed: int = 0
    tensors: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def get(self, role: str, fmt: str, rows: int, cols: int, *, fresh: bool = False) -> torch.Tensor:
        key = (role, fmt, rows, cols)
        if fresh or key not in self.tensors:
            gen = torch.Generator(device="cuda")
            # crc32, not hash(): str hashes change between processes, and the data should not.
            gen.manual_seed(zlib.crc32(repr(key).encode()) ^ self.seed)
            self.tensors[key] = random_tensor(fmt, rows, cols, gen)
        return self.tensors[key]

    def empty(self, role: str, fmt: str, rows: int, cols: int) -> torch.Tensor:
        key = ("out", role, fmt, rows, cols)
        if key not in self.tensors:
            self.tensors[key] = torch.empty(storage_shape(fmt, rows, cols), dtype=torch_dtype(fmt), device="cuda")
        return self.tensors[key]

    def clear(self) -> None:
        self.tensors.clear()
        torch.cuda.empty_cache()


class CompiledGemm:
    """One compiled CUTLASS GEMM operation and cached launch arguments per set of buffers."""

    def __init__(self, operation: Any, in_fmt: str, out_fmt: str):
        self.operation = operation
        self.in_fmt = in_fmt
        self.out_fmt = out_fmt
        self._args: dict[tuple, Any] = {}

    def launcher(self, a: torch.Tensor, w: torch.Tensor, d: torch.Tensor, m: int, n: int, k: int, alpha: float,
                 schedule: tuple[int, int] | None = None) -> Callable[[], None]:
        """A no-argument launch of this kernel on these buffers; ``schedule`` = (swizzle, raster
        order) of the sm_90 persistent tile scheduler (None: cutlass_cppgen's 1, heuristic)."""
        from cutlass_cppgen.backend.gemm_operation import GemmArguments
        from cutlass_cppgen.shape import GemmCoord
        from cutlass_library import GemmUniversalMode

        is_3x = self.operation.api.name == "v3x"
        schedule = tuple(schedule) if (schedule is not None and is_3x) else None
        key = (a.data_ptr(), w.data_ptr(), d.data_ptr(), m, n, k, alpha, schedule)
        args = self._args.get(key)
        if args is None:
            with _scheduler_arguments(schedule):
                args = GemmArguments(
                    operation=self.operation, problem_size=GemmCoord(m, n, k),
                    A=a, B=w, C=None if is_3x else d, D=d,
                    output_op=self.operation.epilogue_type(alpha, 0.0),
                    gemm_mode=GemmUniversalMode.Gemm, split_k_slices=1,
                )
            self._args[key] = args
        run = self.operation.run
        return lambda: run(args)


@contextlib.contextmanager
def _scheduler_arguments(schedule: tuple[int, int] | None):
    """While arguments are built, give the persistent tile scheduler ``schedule`` = (max swizzle
    size, raster order). cutlass_cppgen hard-codes (1, heuristic) in the function swapped here; the
    values end up in the kernel's parameter block, built once per set of arguments."""
    if schedule is None:
        yield
        return
    import cutlass_cppgen.backend.gemm_operation as gemm_operation
    from cutlass_cppgen.backend.c_types import _PersistentTileSchedulerArguments

    original = gemm_operation.get_tile_scheduler_arguments_3x
    gemm_operation.get_tile_scheduler_arguments_3x = lambda tile_scheduler, splits=1: _PersistentTileSchedulerArguments(*schedule)
    try:
        yield
    finally:
        gemm_operation.get_tile_scheduler_arguments_3x = original
