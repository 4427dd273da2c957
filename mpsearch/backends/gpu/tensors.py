"""Tensors in each format on the GPU, the float64 reference and the correctness check: what every
GPU backend (CUTLASS, PyTorch) uses to make operands and to check a kernel before it is timed.

Imported only by a constructed GPU backend (it imports torch).

Data. Every format gets random values of a typical magnitude for that format (``FORMAT_STD``: unit
normal for floats, quantised integers spread over their range), never zeros. A GEMM computes
``D = sat(alpha * A @ W^T)`` with ``alpha`` chosen so that D has the typical magnitude of its own
format: the output of one layer looks like the input the next layer expects.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import torch

from mpsearch.backends.gpu import convert

FORMAT_STD = {"fp16": 1.0, "bf16": 1.0, "fp8_e4m3": 1.0, "int8": 32.0, "int4": 2.0}
# Relative error allowed against the float64 reference rounded into the output format.
TOLERANCE = {"fp16": 1e-3, "bf16": 1e-2, "fp8_e4m3": 5e-2, "int8": 1e-3, "int4": 1e-3}
INTEGER = ("int8", "int4")


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


def reference_output(exact: torch.Tensor, out_fmt: str, via: str | None = None) -> torch.Tensor:
    """What a GEMM's output should hold: ``exact`` (float64) rounded into ``out_fmt`` (float64 values),
    through ``via`` first when the kernel writes ``via`` and a separate conversion makes ``out_fmt``
    (an int4 output goes through fp16). Rounding twice is what such a path does: against a direct
    rounding, an fp16 intermediate moves about 0.1 % of int4 outputs by one step (values that fp16
    rounds onto a tie), which a correct kernel must not be failed for."""
    if via is not None and via != out_fmt:
        exact = round_into(exact, via)
    return round_into(exact, out_fmt)


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


