"""Build the CUTLASS backend's kernel cache on a machine without a GPU (nvcc and the gpu extra only).

GPU time is scarce and a kernel costs ~45 s of one core to compile, so the kernels a GPU session
will need are compiled beforehand on any machine with the CUDA toolkit, and the cache directory is
carried to the GPU host (a warm run there compiles nothing). Groups, in the order they are built:

- ``sweep``: every design of ``catalog.SWEEP`` for the pairs the kernel benchmark compares with
  cuBLAS (fp16->fp16, bf16->bf16, fp8->fp16 with fast accumulation, int8->fp16, int8->int8); the cooperative
  stage-1 designs of fp8 without fast accumulation;
- ``menu``: the stage-1 designs of every other pair of the default Hopper menu (fp16, fp8, int8);
- ``default``: the stage-1 designs of every pair of the default menu: what a first run of
  ``mpsearch search mlp6 --backend cutlass`` compiles before it tunes (its cold compile, stage 1);
- ``bf16`` / ``int4``: the pairs that involve bf16 or int4 (sm_80 kernels), for per-op recordings.

    python benchmarks/kernels/build_cache.py --cache-dir .kcache --groups sweep,menu --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mpsearch.backends.cutlass import catalog
from mpsearch.backends.cutlass.compile import compile_operations
from mpsearch.backends.cutlass.shim import import_cutlass

ARCH = 90
BENCH_PAIRS = (("fp16", "fp16"), ("bf16", "bf16"), ("fp8_e4m3", "fp16"), ("int8", "fp16"), ("int8", "int8"))
MENU = ("fp16", "fp8_e4m3", "int8")


def group_specs(cutlass, group: str) -> list[catalog.KernelSpec]:
    specs: list[catalog.KernelSpec] = []
    if group == "sweep":
        for in_fmt, out_fmt in BENCH_PAIRS:
            specs += catalog.candidate_specs(cutlass, in_fmt, out_fmt, ARCH, designs=catalog.SWEEP)
        coop = [d for d in catalog.STAGE1 if d.schedule == catalog.COOPERATIVE]
        specs += catalog.candidate_specs(cutlass, "fp8_e4m3", "fp16", ARCH, designs=coop, fast_accum=False)
    elif group == "menu":
        for in_fmt in MENU:
            for out_fmt in MENU:
                if (in_fmt, out_fmt) not in BENCH_PAIRS:
                    specs += catalog.candidate_specs(cutlass, in_fmt, out_fmt, ARCH)
    elif group == "default":
        for in_fmt in MENU:
            for out_fmt in MENU:
                specs += catalog.candidate_specs(cutlass, in_fmt, out_fmt, ARCH)
    elif group == "bf16":
        for other in MENU:
            specs += catalog.candidate_specs(cutlass, "bf16", other, ARCH)
            specs += catalog.candidate_specs(cutlass, other, "bf16", ARCH)
    elif group == "int4":
        for out_fmt in ("fp16", "bf16", "int8"):
            specs += catalog.candidate_specs(cutlass, "int4", out_fmt, ARCH, limit=4)
    else:
        raise SystemExit(f"unknown group {group!r}: use sweep, menu, default, bf16, int4")
    return specs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--groups", default="sweep,menu")
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args(argv)
    cutlass = import_cutlass(Path(args.cache_dir), device_cc=ARCH)
    for group in args.groups.split(","):
        specs = list(dict.fromkeys(group_specs(cutlass, group)))
        ops = {s.key: catalog.build_operation(cutlass, s, ARCH) for s in specs}
        start = time.monotonic()
        report = compile_operations(cutlass, ops, Path(args.cache_dir).resolve(), arch=ARCH, jobs=args.jobs)
        print(f"group {group}: {report.total} kernels, {report.compiled} compiled, {report.cached} cached, "
              f"{len(report.failed)} failed, {time.monotonic() - start:.0f} s", flush=True)
        for name, why in report.failed.items():
            print(f"  FAILED {name}: {why[:300]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
