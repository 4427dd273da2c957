"""What a first CUTLASS run of mlp6 compiles, how long it takes, and what a second run compiles.

Runs ``CutlassBackend.prepare`` for mlp6 over the default Hopper menu (fp16, fp8, int8) on the given
cache directory, the way the first trial of ``mpsearch search mlp6 --backend cutlass`` does:
stage-1 kernels of every format pair (compiled in parallel), stage-1 tuning of the heavy ops, the
stage-2 neighbours of their winners (compiled in parallel), stage-2 tuning. Every compile report is
kept. Then a fresh process runs ``prepare`` again on the same cache: a warm run must compile nothing.

Stage 1 may already be in the cache (built by ``build_cache.py --groups default``, e.g. while the
GPU was busy with other work); its time is then the one ``build_cache.py`` printed, and this run's
reports say how many kernels were cached.

    python benchmarks/kernels/cold_compile.py --cache-dir DIR --out cold_compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MENU = ("fp16", "fp8_e4m3", "int8")


def prepare_once(cache_dir: str) -> dict:
    from mpsearch.backends.cutlass import CutlassBackend
    from mpsearch.network import preset

    t0 = time.monotonic()
    backend = CutlassBackend(cache_dir=cache_dir)
    backend.prepare(preset("mlp6"), MENU)
    seconds = time.monotonic() - t0
    reports = [{"total": r.total, "compiled": r.compiled, "cached": r.cached, "failed": len(r.failed),
                "seconds": round(r.seconds, 1)} for r in backend.compile_reports]
    out = {"device": backend.device, "prepare_seconds": round(seconds, 1), "compile_reports": reports,
           "compiled": sum(r["compiled"] for r in reports), "cached": sum(r["cached"] for r in reports),
           "compile_seconds": round(sum(r["seconds"] for r in reports), 1), "jobs": backend.jobs,
           "cpu_count": os.cpu_count()}
    backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(prepare_once(args.cache_dir)))
        return 0
    first = prepare_once(args.cache_dir)
    print(json.dumps({"first_run": first}), flush=True)
    proc = subprocess.run([sys.executable, __file__, "--cache-dir", args.cache_dir, "--child"], capture_output=True,
                          text=True, env=os.environ.copy())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    second = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
    result = {"first_run": first, "warm_rerun": second}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
