"""Which CUTLASS kernels mpsearch builds: formats to CUTLASS types, candidate tiles, kernel keys.

A *kernel* is one (input format, output format, tile); it serves every shape. A *tile* is named by
its description (threadblock shape, cluster, kernel schedule, epilogue schedule, tile scheduler;
stages and warp layout for sm_80 kernels), never by its position in CUTLASS's registry, whose order
changes between processes.

Everything here but :func:`build_operation` is plain data and runs without CUTLASS or a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mpsearch.errors import UnsupportedConfigError
from mpsearch.formats import EMULATED, get_format

# The formats a GEMM kernel can read, their CUTLASS element type names, and accumulator type names.
ELEMENT = {"fp16": "f16", "bf16": "bf16", "fp8_e4m3": "e4m3", "int8": "s8", "int4": "s4"}
ACCUMULATOR = {"fp16": "f32", "bf16": "f32", "fp8_e4m3": "f32", "int8": "s32", "int4": "s32"}

# Outputs an epilogue writes directly (scale alpha, then a saturating conversion for fp8/int8).
# int4 outputs are not written by an epilogue: the sm_90 TMA epilogue has no sub-byte store, so a
# GEMM that feeds an int4 layer writes fp16 and a separate conversion kernel packs int4.
EPILOGUE_OUTPUTS = ("fp16", "bf16", "fp8_e4m3", "int8")

# Candidate tiles, in the order they are tried when trimming, as patterns over tile keys. Each
# pattern picks the first registry tile whose key matches; patterns that match nothing on a
# format are skipped. The list covers large cooperative tiles (big GEMMs), ping-pong and 64-row
# tiles (thin GEMMs), stream-K (few tiles, long K) and both cluster orientations.
_SM90_PATTERNS = (
    r"^256x128x\d+ c2x1 TmaWarpSpecializedCooperative(FP8FastAccum)? TmaWarpSpecializedCooperative Default$",
    r"^128x256x\d+ c1x2 TmaWarpSpecializedCooperative(FP8FastAccum)? TmaWarpSpecializedCooperative Default$",
    r"^256x256x\d+ c2x1 TmaWarpSpecializedCooperative(FP8FastAccum)? TmaWarpSpecializedCooperative Default$",
    r"^128x256x\d+ c1x2 TmaWarpSpecializedCooperative(FP8FastAccum)? NoSmemWarpSpecialized Default$",
    r"^128x128x\d+ c2x1 TmaWarpSpecializedPingpong(FP8FastAccum)? TmaWarpSpecialized Default$",
    r"^128x256x\d+ c1x2 TmaWarpSpecializedPingpong(FP8FastAccum)? NoSmemWarpSpecialized Default$",
    r"^64x256x\d+ c1x2 TmaWarpSpecializedPingpong(FP8FastAccum)? NoSmemWarpSpecialized Default$",
    r"^64x128x\d+ c1x2 TmaWarpSpecializedPingpong(FP8FastAccum)? NoSmemWarpSpecialized Default$",
    r"^128x256x\d+ c1x1 CpAsyncWarpSpecializedCooperative NoSmemWarpSpecialized Default$",
    r"^128x128x\d+ c1x2 TmaWarpSpecializedPingpong(FP8FastAccum)? TmaWarpSpecialized Default$",
)
# Not offered: tiles whose M per CTA would fall below what the schedule needs. With a cluster of 2
# along M, cutlass_cppgen's tile is the cluster's, each CTA gets half the rows, and nvcc rejects a
# cooperative kernel under 128 rows per CTA and the no-smem epilogue with a split M tile ("Cooperative
# kernel requires Tile Size to be greater than or equal to 128 along the M-dimension", "Tile_M must
# be a multiple of 64"; seen on sm_90a, nvcc 13.0, CUTLASS 4.2). Nor the stream-K tile scheduler: cutlass_cppgen zeroes its workspace once,
# when the arguments are made, but stream-K's reduction flags must be reset before every launch, so
# a second launch of the same arguments can wait forever (a tuning run hung on an H100 there).
# fp8 uses the fast-accumulating schedules (promotion to fp32 every k-block, not every 4): what
# cuBLAS's fast fp8 path does too; the correctness check bounds the error (≤ 5e-2).
_FP8_FAST = "FP8FastAccum"
_SM80_PATTERNS = (
    r"^128x256x128 w2x4x1 s3$",
    r"^256x128x128 w4x2x1 s3$",
    r"^128x128x128 w2x2x1 s5$",
    r"^128x128x256 w2x2x1 s3$",
    r"^64x128x128 w2x2x1 s6$",
    r"^128x64x128 w2x2x1 s6$",
    r"^256x64x128 w4x1x1 s4$",
    r"^64x256x128 w1x4x1 s4$",
)

DEFAULT_TILES = 8  # candidates per kernel type: the issue asks for at least 8

# Run-time variants of each sm_90 tile: the persistent tile scheduler's swizzle (how many tiles along
# one dimension it groups, for L2 reuse) and raster order (0 heuristic, 1 along M, 2 along N).
# cutlass_cppgen always passes swizzle 1 / heuristic; they are launch arguments, so trying them
# costs timing, not compiling. sm_80 kernels fix their swizzle at compile time: one variant.
SCHEDULES_SM90 = ((1, 0), (2, 0), (4, 0), (8, 0), (4, 1), (4, 2))
_RASTER = {0: "heuristic", 1: "along M", 2: "along N"}


def schedules(cc: int) -> tuple[tuple[int, int] | None, ...]:
    return SCHEDULES_SM90 if cc >= 90 else (None,)


def candidate_label(tile: str, schedule: tuple[int, int] | None) -> str:
    """A tuning candidate's description: the tile, and its swizzle and raster order if chosen."""
    if schedule is None:
        return tile
    swizzle, raster = schedule
    return f"{tile} swizzle {swizzle} raster {_RASTER[raster]}"


@dataclass(frozen=True)
class KernelSpec:
    """One compiled kernel: it reads ``in_fmt`` operands and writes ``out_fmt``, with ``tile``."""

    in_fmt: str
    out_fmt: str
    tile: str

    @property
    def key(self) -> str:
        return f"{self.in_fmt}->{self.out_fmt} {self.tile}"


def kernel_cc(fmt: str, arch: int) -> int:
    """The architecture whose kernels serve ``fmt`` on ``arch`` (int4 on Hopper: the sm_80 ones)."""
    level = get_format(fmt).support_on(arch)
    if level is None:
        raise UnsupportedConfigError(f"format {fmt} cannot run on sm_{arch}: pick another format")
    if fmt == "int4" and arch >= 90:
        return 80
    return 90 if arch >= 90 else 80


def is_emulated(fmt: str, arch: int) -> bool:
    return get_format(fmt).support_on(arch) == EMULATED


def _enum_name(value: Any) -> str:
    return str(value).rsplit(".", 1)[-1]


def tile_key(td: Any, cc: int) -> str:
    """Stable description of a CUTLASS TileDescription, e.g.
    ``256x128x64 c2x1 TmaWarpSpecializedCooperative TmaWarpSpecializedCooperative Default`` (sm_90)
    or ``128x256x128 w2x4x1 s3`` (sm_80: warps and stages instead of cluster and schedules)."""
    shape = "x".join(str(int(v)) for v in td.threadblock_shape)
    if cc >= 90:
        cluster = "x".join(str(int(v)) for v in td.cluster_shape[:2])
        return (f"{shape} c{cluster} {_enum_name(td.kernel_schedule)} "
                f"{_enum_name(td.epilogue_schedule)} {_enum_name(td.tile_scheduler)}")
    warps = "x".join(str(int(v)) for v in td.warp_count)
    return f"{shape} w{warps} s{int(td.stages)}"


def select_tiles(keys: list[str], fmt: str, cc: int, limit: int = DEFAULT_TILES) -> list[str]:
    """Up to ``limit`` distinct keys from ``keys``, chosen by the candidate patterns in their order.

    Deterministic whatever the order of ``keys`` (the registry's order is not stable)."""
    patterns = _SM90_PATTERNS if cc >= 90 else _SM80_PATTERNS
    available = sorted(set(keys))
    chosen: list[str] = []
    for pattern in patterns:
        matches = [k for k in available if re.search(pattern, k) and k not in chosen]
        if fmt == "fp8_e4m3" and cc >= 90:
            # Prefer the fast-accumulating schedule when both exist; fall back to the plain one.
            fast = [k for k in matches if _FP8_FAST in k]
            matches = fast or matches
        if matches:
            chosen.append(matches[0])
        if len(chosen) == limit:
            break
    return chosen


def check_pair(in_fmt: str, out_fmt: str, arch: int) -> None:
    for fmt in (in_fmt, out_fmt):
        if fmt not in ELEMENT:
            raise UnsupportedConfigError(f"the CUTLASS backend has no kernels for format {fmt!r}; it runs {', '.join(ELEMENT)}")
        kernel_cc(fmt, arch)


def fused_output(in_fmt: str, out_fmt: str) -> str:
    """The format the GEMM's epilogue writes for an op ``in_fmt -> out_fmt``: ``out_fmt`` itself, or
    fp16 followed by a separate conversion when no epilogue writes ``out_fmt``."""
    return out_fmt if out_fmt in EPILOGUE_OUTPUTS else "fp16"


# --- building CUTLASS operations (needs cutlass_cppgen; no GPU) -----------------------------------

def _types(cutlass_cppgen: Any, in_fmt: str) -> tuple[Any, Any]:
    dt = cutlass_cppgen.DataType
    return getattr(dt, ELEMENT[in_fmt]), getattr(dt, ACCUMULATOR[in_fmt])


def _plan(cutlass_cppgen: Any, in_fmt: str, arch: int) -> Any:
    dt = cutlass_cppgen.DataType
    layout = cutlass_cppgen.LayoutType
    element, acc = _types(cutlass_cppgen, in_fmt)
    cc = kernel_cc(in_fmt, arch)
    # A row-major (activations, K contiguous), B column-major (weights stored [N, K]): the "TN"
    # layout, the only one Hopper's fp8/int8 tensor cores read.
    return cutlass_cppgen.op.Gemm(
        element_A=element, element_B=element, element_C=dt.void, element_D=dt.f16,
        element_accumulator=acc, layout_A=layout.RowMajor, layout_B=layout.ColumnMajor,
        layout_C=layout.RowMajor, cc=arch, kernel_cc=cc,
    )


def registry_tiles(cutlass_cppgen: Any, in_fmt: str, arch: int) -> dict[str, Any]:
    """Every tile CUTLASS's registry offers for ``in_fmt`` on ``arch``, by key."""
    plan = _plan(cutlass_cppgen, in_fmt, arch)
    cc = kernel_cc(in_fmt, arch)
    out: dict[str, Any] = {}
    for td in plan.tile_descriptions():
        out.setdefault(tile_key(td, cc), td)
    return out


def candidate_specs(cutlass_cppgen: Any, in_fmt: str, out_fmt: str, arch: int, limit: int = DEFAULT_TILES) -> list[KernelSpec]:
    check_pair(in_fmt, out_fmt, arch)
    tiles = registry_tiles(cutlass_cppgen, in_fmt, arch)
    keys = select_tiles(list(tiles), in_fmt, kernel_cc(in_fmt, arch), limit)
    return [KernelSpec(in_fmt, out_fmt, k) for k in keys]


def build_operation(cutlass_cppgen: Any, spec: KernelSpec, arch: int) -> Any:
    """The ``GemmOperationUniversal`` for ``spec``: D = saturate(alpha * A·B) in ``out_fmt``, no C.

    Built directly rather than through ``Gemm.construct``, which would compute the epilogue in the
    accumulator type: an int32 alpha cannot carry an int8 dequantisation scale.
    """
    from cutlass_cppgen.backend import GemmOperationUniversal
    from cutlass_cppgen.backend.epilogue import LinearCombination
    from cutlass_cppgen.backend.library import TensorDescription

    dt = cutlass_cppgen.DataType
    layout = cutlass_cppgen.LayoutType
    plan = _plan(cutlass_cppgen, spec.in_fmt, arch)
    tiles = registry_tiles(cutlass_cppgen, spec.in_fmt, arch)
    if spec.tile not in tiles:
        raise UnsupportedConfigError(f"CUTLASS offers no tile {spec.tile!r} for {spec.in_fmt} on sm_{arch}")
    td = tiles[spec.tile]
    element, acc = _types(cutlass_cppgen, spec.in_fmt)
    out_element = getattr(dt, ELEMENT[spec.out_fmt])
    bits = {"f16": 16, "bf16": 16, "e4m3": 8, "s8": 8, "s4": 4}
    align_in = 128 // bits[ELEMENT[spec.in_fmt]]
    align_out = 128 // bits[ELEMENT[spec.out_fmt]]
    a = TensorDescription(element, layout.RowMajor, align_in)
    b = TensorDescription(element, layout.ColumnMajor, align_in)
    c = TensorDescription(dt.void if plan.current_cc >= 90 else out_element, layout.RowMajor, align_out)
    epilogue = LinearCombination(out_element, align_out, acc, dt.f32)
    return GemmOperationUniversal(
        arch=plan.current_cc, tile_description=td, A=a, B=b, C=c,
        epilogue_functor=epilogue, swizzling_functor=plan._swizzling_functor,
    )


def check_alignment(op: Any) -> None:
    """UnsupportedConfigError if the GEMM ``op`` (a :class:`mpsearch.network.Op`) has a shape the
    catalog's kernels cannot run: they load 16-byte vectors along K for A and B and along N for D,
    so K must be a multiple of 128/bits of the input format and N of the output format."""
    from mpsearch.formats import check_k_alignment

    if op.kind != "gemm":
        return
    check_k_alignment(op.layer, op.k, op.fmt)  # the shared rule (no kernel anywhere), same message
    k_multiple = get_format(op.fmt).alignment
    n_multiple = get_format(op.out_fmt).alignment
    if op.k % k_multiple or op.n % n_multiple:
        raise UnsupportedConfigError(
            f"layer {op.layer} ({op.fmt} in, {op.out_fmt} out) has k={op.k}, n={op.n}; the CUTLASS kernels need "
            f"k a multiple of {k_multiple} and n a multiple of {n_multiple} (16-byte vector loads): pad the layer "
            f"or keep it out of {op.fmt}"
        )
