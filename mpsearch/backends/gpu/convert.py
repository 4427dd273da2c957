"""Conversion kernels: an activation into another format, scaled and saturated, in one pass.

Used where no GEMM epilogue writes the format a layer needs: the fp16 activation entering a
non-fp16 layer of an unchained network (a transformer block), int4 outputs (packed two per byte,
low nibble first, as CUTLASS's int4 operands are), and the requantisation of an integer GEMM's
int32 accumulators (PyTorch's ``_int_mm``). One Triton kernel reads each element once and writes
the result once, whatever the source type; where Triton is missing, torch operations (several
passes) stand in and the kernel name says so.
"""

from __future__ import annotations

from typing import Any, Callable

# Saturation bounds of the targets: the largest finite e4m3 value, and the integer ranges.
FP8_MAX = 448.0
INT_RANGE = {"int8": (-128, 127), "int4": (-8, 7)}

_KERNELS: dict[str, Any] = {}


def _triton_kernels() -> dict[str, Any]:
    if _KERNELS:
        return _KERNELS
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    @triton.jit
    def _to_float(x_ptr, y_ptr, n, scale, lo, hi, BLOCK: tl.constexpr, SAT: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32) * scale
        if SAT:
            x = tl.minimum(tl.maximum(x, lo), hi)
        tl.store(y_ptr + offs, x.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _to_int8(x_ptr, y_ptr, n, scale, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32) * scale
        q = libdevice.rint(tl.minimum(tl.maximum(x, -128.0), 127.0))
        tl.store(y_ptr + offs, q.to(tl.int8), mask=mask)

    @triton.jit
    def _to_int4(x_ptr, y_ptr, n_pairs, scale, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n_pairs
        lo = tl.load(x_ptr + 2 * offs, mask=mask, other=0.0).to(tl.float32) * scale
        hi = tl.load(x_ptr + 2 * offs + 1, mask=mask, other=0.0).to(tl.float32) * scale
        lo = libdevice.rint(tl.minimum(tl.maximum(lo, -8.0), 7.0)).to(tl.int32)
        hi = libdevice.rint(tl.minimum(tl.maximum(hi, -8.0), 7.0)).to(tl.int32)
        packed = (lo & 0xF) | ((hi & 0xF) << 4)
        tl.store(y_ptr + offs, packed.to(tl.uint8), mask=mask)

    _KERNELS.update(float=_to_float, int8=_to_int8, int4=_to_int4)
    return _KERNELS


def kernel_name(out_fmt: str, triton_ok: bool, src: str = "fp16") -> str:
    return f"{'triton' if triton_ok else 'torch'}:{src}->{out_fmt} scale+sat"


def _source_name(src: Any) -> str:
    return {"torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.int32": "int32"}.get(str(src.dtype), str(src.dtype))


def make_converter(src: Any, dst: Any, out_fmt: str, scale: float) -> tuple[Callable[[], None], str]:
    """A no-argument launcher that converts ``src`` (fp16, bf16 or int32) into ``dst`` (``out_fmt``)
    times ``scale``, and its name.

    ``dst`` has ``src``'s shape (int4: half the columns, bytes). Launching enqueues on the current
    stream and does not synchronise.
    """
    try:
        kernels = _triton_kernels()
        triton_ok = True
    except ImportError:
        triton_ok = False
    n = src.numel()
    block = 1024
    if triton_ok:
        if out_fmt in ("fp16", "bf16", "fp8_e4m3"):
            sat = out_fmt == "fp8_e4m3"
            grid = ((n + block - 1) // block,)
            fn = kernels["float"]
            launch = lambda: fn[grid](src, dst, n, scale, -FP8_MAX, FP8_MAX, BLOCK=block, SAT=sat)  # noqa: E731
        elif out_fmt == "int8":
            grid = ((n + block - 1) // block,)
            fn = kernels["int8"]
            launch = lambda: fn[grid](src, dst, n, scale, BLOCK=block)  # noqa: E731
        elif out_fmt == "int4":
            pairs = n // 2
            grid = ((pairs + block - 1) // block,)
            fn = kernels["int4"]
            launch = lambda: fn[grid](src, dst, pairs, scale, BLOCK=block)  # noqa: E731
        else:
            raise ValueError(f"no conversion to {out_fmt}")
        return launch, kernel_name(out_fmt, True, _source_name(src))
    return (lambda: reference_convert(src, out_fmt, scale, out=dst)), kernel_name(out_fmt, False, _source_name(src))


def reference_convert(src: Any, out_fmt: str, scale: float, out: Any = None) -> Any:
    """The conversion in torch operations: the check's reference, and the fallback without Triton."""
    import torch

    x = src.float() * scale
    if out_fmt == "fp16":
        y = x.half()
    elif out_fmt == "bf16":
        y = x.bfloat16()
    elif out_fmt == "fp8_e4m3":
        y = x.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    elif out_fmt == "int8":
        y = torch.round(x.clamp(-128, 127)).to(torch.int8)
    elif out_fmt == "int4":
        q = torch.round(x.clamp(-8, 7)).to(torch.int16)
        y = ((q[..., 0::2] & 0xF) | ((q[..., 1::2] & 0xF) << 4)).to(torch.uint8)
    else:
        raise ValueError(f"no conversion to {out_fmt}")
    if out is not None:
        out.copy_(y)
        return out
    return y
