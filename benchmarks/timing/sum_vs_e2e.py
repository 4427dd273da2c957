"""Why the sum of per-op latencies differs from the end-to-end latency: measured, per op.

For each configuration, four numbers from one process, all in the sustained regime:

- ``e2e``: the network end to end (the backend's ``measure``), L2 flushed once before each sample;
- ``sum_alone``: the sum of each op timed alone (the per-op rows of a recording), L2 flushed before each;
- ``sum_in_chain``: the chain run end to end with a CUDA event between ops, each op's time read off;
- ``sum_in_chain_flushed``: the same with the L2 flushed (outside the events) before every op.

If ``sum_in_chain`` matches ``e2e`` and ``sum_in_chain_flushed`` matches ``sum_alone``, the gap is the
L2 cache: inside a chain each op reads the activation its predecessor just wrote from L2, while an
op timed alone reads it from memory. The per-op breakdown shows which ops gain or lose.

    python benchmarks/timing/sum_vs_e2e.py --backend cutlass --cache-dir DIR --out benchmarks/results/h200_sum_vs_e2e
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from mpsearch.network import preset
from mpsearch.space import SearchSpace

MENUS = {"fp16,fp8_e4m3,int8": ("fp16", "fp8_e4m3", "int8"), "fp16,int8,int4": ("fp16", "int8", "int4")}


def in_chain(backend, op_launches, flush_each: bool, samples: int, warm_s: float) -> list[list[float]]:
    """Per-op times (ms) of ``samples`` chain runs, events between ops; L2 flushed before the chain
    or, with ``flush_each``, before every op (the flush itself outside the events)."""
    import torch

    from mpsearch.backends.gpu.timer import wait_for_gpu

    timer = backend._timer
    launches = [launch for _, launch in op_launches]
    t0 = time.monotonic()
    while time.monotonic() - t0 < warm_s:  # sustained: run back to back first
        for launch in launches:
            launch()
        wait_for_gpu("warm-up")
    out = []
    for _ in range(samples):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2 * len(launches))]
        torch.cuda._sleep(int(2e6))  # ~1 ms: every launch below is queued before the GPU reaches it
        timer._flush.zero_()
        for i, launch in enumerate(launches):
            if flush_each and i:
                timer._flush.zero_()
            events[2 * i].record()
            launch()
            events[2 * i + 1].record()
        wait_for_gpu("chain")
        out.append([events[2 * i].elapsed_time(events[2 * i + 1]) for i in range(len(launches))])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("cutlass", "torch"), default="cutlass")
    ap.add_argument("--cache-dir")
    ap.add_argument("--configs", type=int, default=12, help="random configurations per menu (plus the uniform ones)")
    ap.add_argument("--menus", default="fp16,fp8_e4m3,int8")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.backend == "cutlass":
        from mpsearch.backends.cutlass import CutlassBackend

        backend = CutlassBackend(cache_dir=args.cache_dir)
    else:
        from mpsearch.backends.pytorch import TorchBackend

        backend = TorchBackend()
    network = preset("mlp6")
    rows = []
    for menu_name in args.menus.split(";"):
        menu = MENUS[menu_name]
        space = SearchSpace(network, menu)
        backend.prepare(network, menu)
        rng = random.Random(0)
        configs = [space.parse_config(",".join([f] * 6)) for f in menu]
        configs += [space.parse_config(",".join(rng.choice(menu) for _ in range(6))) for _ in range(args.configs)]
        for config in configs:
            e2e = backend.measure(network, config)
            ops = backend.op_launches(network, list(config.formats))
            alone = [backend.op_record(op)["median_ms"] for op, _ in ops]
            chained = in_chain(backend, ops, False, args.samples, 0.2)
            flushed = in_chain(backend, ops, True, args.samples, 0.2)
            per_op_chain = [statistics.median(s[i] for s in chained) for i in range(len(ops))]
            per_op_flushed = [statistics.median(s[i] for s in flushed) for i in range(len(ops))]
            row = {"menu": menu_name, "config": config.key, "e2e_ms": e2e.ms, "sum_alone_ms": sum(alone),
                   "sum_in_chain_ms": statistics.median(sum(s) for s in chained),
                   "sum_in_chain_flushed_ms": statistics.median(sum(s) for s in flushed),
                   "ops": [{"op": f"{op.layer}:{op.kind} {op.fmt}->{op.out_fmt}", "alone_ms": a, "in_chain_ms": c,
                            "in_chain_flushed_ms": f} for (op, _), a, c, f in zip(ops, alone, per_op_chain, per_op_flushed)]}
            rows.append(row)
            print(f"{menu_name} {config.key}: e2e {row['e2e_ms']:.4f}, sum alone {row['sum_alone_ms']:.4f}, in chain "
                  f"{row['sum_in_chain_ms']:.4f}, in chain flushed {row['sum_in_chain_flushed_ms']:.4f}", flush=True)
    summary = {}
    for menu_name in args.menus.split(";"):
        mine = [r for r in rows if r["menu"] == menu_name]
        gap = [(r["sum_alone_ms"] - r["e2e_ms"]) / r["e2e_ms"] for r in mine]
        chain_gap = [(r["sum_in_chain_ms"] - r["e2e_ms"]) / r["e2e_ms"] for r in mine]
        flushed_gap = [(r["sum_in_chain_flushed_ms"] - r["sum_alone_ms"]) / r["sum_alone_ms"] for r in mine]
        summary[menu_name] = {
            "configs": len(mine),
            "sum_alone_vs_e2e_mean": statistics.mean(gap), "sum_alone_vs_e2e_max_abs": max(map(abs, gap)),
            "in_chain_vs_e2e_mean": statistics.mean(chain_gap), "in_chain_vs_e2e_max_abs": max(map(abs, chain_gap)),
            "in_chain_flushed_vs_alone_mean": statistics.mean(flushed_gap),
            "in_chain_flushed_vs_alone_max_abs": max(map(abs, flushed_gap)),
        }
    result = {"device": backend.device, "backend": args.backend, "provenance": backend.provenance(),
              "samples": args.samples, "rows": rows, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
