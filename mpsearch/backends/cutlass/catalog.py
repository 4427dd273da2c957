"""Which CUTLASS kernels mpsearch builds: formats to CUTLASS types, candidate tiles, kernel keys.

A *kernel* is one (input format, output format, tile); it serves every shape. A *tile* is a kernel
design named by a stable description, never by its position in CUTLASS's registry, whose order
changes between processes:

- sm_90 (Hopper): :class:`Sm90Tile`, built directly (not picked from the registry, which offers
  neither 256-row CTA tiles nor explicit stage counts): kernel schedule (cooperative or ping-pong),
  the output tile one CTA computes, the cluster, the epilogue (TMA store through shared memory, or
  direct stores), the pipeline stages, and for fp8 whether accumulation is promoted to fp32 only at
  the end of each k-block ("fast accumulation", cuBLAS's fast fp8 path) or every few MMAs.
- sm_80 (int4 on Hopper, everything on Ampere): registry tiles (threadblock shape, warps, stages).

Tuning is two-stage: every op tries the :data:`STAGE1` designs; the ops that carry most of a
network's time then also try the :func:`neighbours` of their winner (another cluster, epilogue,
stage count or schedule). ``SWEEP`` is the wide family list the kernel benchmark explores.

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

# sm_80 candidate tiles (int4's emulated kernels on Hopper, every format on Ampere), in the order
# they are tried when trimming, as patterns over CUTLASS registry keys.
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

DEFAULT_TILES = 8  # candidates per sm_80 kernel type

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


# --- sm_90 kernel designs ---------------------------------------------------------------------------

COOPERATIVE, PINGPONG = "cooperative", "pingpong"
TMA_EPILOGUE, DIRECT_EPILOGUE = "tma-epilogue", "direct-epilogue"
FAST_ACCUM = "fast-accum"
_SM90_KEY = re.compile(
    r"^(?P<schedule>cooperative|pingpong) (?P<m>\d+)x(?P<n>\d+)x(?P<k>\d+) c(?P<cm>\d)x(?P<cn>\d) "
    r"(?P<epilogue>tma-epilogue|direct-epilogue)(?: (?P<stages>\d+)-stage)?(?P<fast> fast-accum)?$"
)


@dataclass(frozen=True)
class Sm90Tile:
    """One Hopper kernel design (see the module docstring). ``cta`` is the (rows, cols) output tile
    of one CTA; ``stages`` 0 means as many as shared memory holds after the epilogue's share."""

    schedule: str
    cta: tuple[int, int]
    cluster: tuple[int, int]
    epilogue: str = TMA_EPILOGUE
    stages: int = 0
    fast_accum: bool = False

    def key(self, k_tile: int) -> str:
        """e.g. ``cooperative 256x128x64 c2x1 tma-epilogue`` or ``... 4-stage fast-accum``."""
        m, n = self.cta
        text = f"{self.schedule} {m}x{n}x{k_tile} c{self.cluster[0]}x{self.cluster[1]} {self.epilogue}"
        if self.stages:
            text += f" {self.stages}-stage"
        return text + (f" {FAST_ACCUM}" if self.fast_accum else "")

    @classmethod
    def parse(cls, key: str) -> tuple["Sm90Tile", int]:
        """(tile, k_tile) from :meth:`key`'s text; ValueError for anything else."""
        match = _SM90_KEY.match(key)
        if not match:
            raise ValueError(f"not an sm_90 tile key: {key!r}")
        g = match.groupdict()
        tile = cls(g["schedule"], (int(g["m"]), int(g["n"])), (int(g["cm"]), int(g["cn"])), g["epilogue"],
                   int(g["stages"] or 0), bool(g["fast"]))
        return tile, int(g["k"])

    def valid(self) -> bool:
        """Designs CUTLASS's builders accept: a cooperative CTA splits its rows over two warp groups
        (>= 128 rows); a ping-pong CTA gives each warp group the whole tile (<= 128 rows, and at most
        128x256 fp32 accumulators would not fit in registers: <= 64x256 or 128x128)."""
        m, n = self.cta
        if self.schedule == COOPERATIVE:
            return m >= 128 and m * n <= 256 * 128
        return m <= 128 and m * n <= 128 * 128 and n <= 256

    def replace(self, **changes: Any) -> "Sm90Tile":
        from dataclasses import replace

        return replace(self, **changes)


def k_tile(fmt: str) -> int:
    """The K depth of one pipeline stage: 64 elements of 16-bit formats, 128 of 8-bit ones (128 bytes
    either way, one TMA box row)."""
    return 64 if get_format(fmt).bits >= 16 else 128


# Stage 1: every op tries these. Chosen from the kernel benchmark's sweep of 17 designs on an H200
# (benchmarks/results/h200_kernels_vs_cublas.md): the winners of mlp6's six layers for fp16, bf16,
# fp8 and int8 were, by layer, cooperative 128x256 c2x1 or 256x128 c1x2 (the large GEMMs),
# cooperative 128x128 c1x2 (2048x1024x2048) and ping-pong 128x128 (short K, wide N); ping-pong
# 64x256 was next on those, and is there for thin (decode) shapes.
STAGE1 = (
    Sm90Tile(COOPERATIVE, (128, 256), (2, 1)),
    Sm90Tile(COOPERATIVE, (256, 128), (1, 2)),
    Sm90Tile(COOPERATIVE, (128, 128), (1, 2)),
    Sm90Tile(PINGPONG, (128, 128), (1, 1)),
    Sm90Tile(PINGPONG, (64, 256), (1, 1)),
)
CLUSTERS = ((1, 1), (2, 1), (1, 2), (2, 2))
LOCAL_SEARCH = 4  # stage-2 candidates per winner


def neighbours(tile: Sm90Tile, limit: int = LOCAL_SEARCH) -> list[Sm90Tile]:
    """Stage 2: designs one step from ``tile``, the likeliest first: the cluster turned, a 2x2 cluster,
    the other epilogue, no cluster, explicit stage counts, the other schedule on a tile both run."""
    flipped = (tile.cluster[1], tile.cluster[0])
    steps = [
        tile.replace(cluster=flipped),
        tile.replace(cluster=(2, 2)),
        tile.replace(epilogue=DIRECT_EPILOGUE if tile.epilogue == TMA_EPILOGUE else TMA_EPILOGUE),
        tile.replace(cluster=(1, 1)),
        tile.replace(stages=4),
        tile.replace(stages=3),
        tile.replace(schedule=PINGPONG if tile.schedule == COOPERATIVE else COOPERATIVE),
    ]
    out: list[Sm90Tile] = []
    for step in steps:
        if step != tile and step.valid() and step not in out:
            out.append(step)
    return out[:limit]


def _sweep() -> tuple[Sm90Tile, ...]:
    big = ((256, 128), (128, 256), (128, 128))
    designs = [Sm90Tile(COOPERATIVE, cta, cl) for cta in big for cl in ((1, 1), (2, 1), (1, 2))]
    designs.append(Sm90Tile(COOPERATIVE, (256, 128), (2, 2)))
    designs += [Sm90Tile(COOPERATIVE, (256, 128), (2, 1), DIRECT_EPILOGUE),
                Sm90Tile(COOPERATIVE, (128, 256), (1, 2), DIRECT_EPILOGUE)]
    designs += [Sm90Tile(PINGPONG, (64, 128), (1, 2)), Sm90Tile(PINGPONG, (128, 128), (1, 1)),
                Sm90Tile(PINGPONG, (64, 256), (1, 1))]
    designs += [Sm90Tile(COOPERATIVE, (256, 128), (2, 1), stages=st) for st in (3, 4)]
    designs += [d for d in STAGE1 if d not in designs]
    return tuple(d for d in designs if d.valid())


SWEEP = _sweep()  # the kernel benchmark's families (17 designs per format)


def sm90_tiles(fmt: str, designs: tuple[Sm90Tile, ...] | list[Sm90Tile], fast_accum: bool = True) -> list[str]:
    """Tile keys of ``designs`` for input format ``fmt`` (fp8: with or without fast accumulation)."""
    fast = fast_accum and fmt == "fp8_e4m3"
    return [d.replace(fast_accum=fast).key(k_tile(fmt)) for d in designs]


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
    """Up to ``limit`` distinct sm_80 registry keys from ``keys``, chosen by the candidate patterns in
    their order. Deterministic whatever the order of ``keys`` (the registry's order is not stable)."""
    if cc >= 90:
        raise ValueError("sm_90 tiles are designed (Sm90Tile), not selected from the registry")
    available = sorted(set(keys))
    chosen: list[str] = []
    for pattern in _SM80_PATTERNS:
        matches = [k for k in available if re.search(pattern, k) and k not in chosen]
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


def candidate_specs(cutlass_cppgen: Any, in_fmt: str, out_fmt: str, arch: int, limit: int = DEFAULT_TILES, *,
                    designs: tuple[Sm90Tile, ...] | list[Sm90Tile] = STAGE1, fast_accum: bool = True) -> list[KernelSpec]:
    """The kernels to try for ``in_fmt -> out_fmt``: sm_90 ``designs`` (fp8 with or without fast
    accumulation), or up to ``limit`` sm_80 registry tiles (``cutlass_cppgen`` is needed only for those)."""
    check_pair(in_fmt, out_fmt, arch)
    cc = kernel_cc(in_fmt, arch)
    if cc >= 90:
        return [KernelSpec(in_fmt, out_fmt, key) for key in sm90_tiles(in_fmt, designs, fast_accum)]
    tiles = registry_tiles(cutlass_cppgen, in_fmt, arch)
    keys = select_tiles(list(tiles), in_fmt, cc, limit)
    return [KernelSpec(in_fmt, out_fmt, k) for k in keys]


def _sm90_description(cutlass_cppgen: Any, in_fmt: str, key: str, arch: int) -> Any:
    """CUTLASS's TileDescription for an :class:`Sm90Tile` key (math instruction from the registry)."""
    from cutlass_cppgen.backend.library import TileDescription
    from cutlass_library import EpilogueScheduleType, KernelScheduleType, TileSchedulerType

    try:
        tile, depth = Sm90Tile.parse(key)
    except ValueError:
        raise UnsupportedConfigError(f"no tile {key!r} for {in_fmt} on sm_{arch}: sm_90 tiles are named like "
                                     f"{STAGE1[0].key(k_tile(in_fmt))!r}") from None
    if tile.fast_accum and in_fmt != "fp8_e4m3":
        raise UnsupportedConfigError(f"tile {key!r}: fast accumulation exists for fp8 only, not {in_fmt}")
    kernel_name = "TmaWarpSpecialized" + ("Cooperative" if tile.schedule == COOPERATIVE else "Pingpong")
    kernel_name += "FP8FastAccum" if tile.fast_accum else ""
    if tile.epilogue == DIRECT_EPILOGUE:
        epilogue_name = "NoSmemWarpSpecialized"
    else:
        epilogue_name = "TmaWarpSpecializedCooperative" if tile.schedule == COOPERATIVE else "TmaWarpSpecialized"
    proto = next(iter(_plan(cutlass_cppgen, in_fmt, arch).tile_descriptions()))
    (m, n), (cm, cn) = tile.cta, tile.cluster
    # cutlass_cppgen describes a cluster's tile and divides it by the cluster shape to get the CTA's.
    return TileDescription(
        threadblock_shape=[m * cm, n * cn, depth], stages=tile.stages, warp_count=list(proto.warp_count),
        math_instruction=proto.math_instruction, cluster_shape=[cm, cn, 1],
        kernel_schedule=getattr(KernelScheduleType, kernel_name),
        epilogue_schedule=getattr(EpilogueScheduleType, epilogue_name),
        tile_scheduler=TileSchedulerType.Default,
    )


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
    if kernel_cc(spec.in_fmt, arch) >= 90:
        td = _sm90_description(cutlass_cppgen, spec.in_fmt, spec.tile, arch)
    else:
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
