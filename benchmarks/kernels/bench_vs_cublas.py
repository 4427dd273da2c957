"""CUTLASS kernel designs vs what PyTorch deploys (cuBLAS), per mlp6 layer and format, in one run.

For each layer (m, n, k) of ``mlp6`` and each format, every CUTLASS design of a family list
(``--designs sweep``: ``catalog.SWEEP``; ``stage1``: the backend's defaults) is compiled (or found in
the cache), checked against float64 and raced round-robin under the sustained timing protocol
(``mpsearch.backends.timing``); the three fastest then run round-robin beside the PyTorch backend's
launch for the same op until every median is pinned to +-0.5%. Same operands, same output format,
same protocol, same process:

==========  ==========================================  ============================================
format      CUTLASS                                     PyTorch backend (cuBLAS / cuBLASLt)
==========  ==========================================  ============================================
fp16, bf16  x -> same type, fp32 accumulate, alpha      torch.addmm(alpha) -> same type
fp8 fast    e4m3 -> fp16, fast accumulation             torch._scaled_mm(use_fast_accum=True)
fp8 exact   e4m3 -> fp16, promotion every few MMAs      torch._scaled_mm(use_fast_accum=False)
int8->fp16  s8 -> fp16, s32 accumulate, scaled          torch._int_mm + one-pass scale to fp16
int8->int8  s8 -> s8, scaled and saturated              torch._int_mm + one-pass requant to int8
==========  ==========================================  ============================================

The network ratio is over the sum of the six layers. ratio = PyTorch ms / CUTLASS ms (> 1: CUTLASS
faster). Every candidate tried is in the JSON with its median or its error.

    python benchmarks/kernels/bench_vs_cublas.py --cache-dir DIR --out benchmarks/results/h200_kernels_vs_cublas
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mpsearch.network import Op, preset

CASES = (  # (label, in format, out format, fp8 fast accumulation)
    ("fp16", "fp16", "fp16", True),
    ("bf16", "bf16", "bf16", True),
    ("fp8 fast-accum", "fp8_e4m3", "fp16", True),
    ("fp8 exact-accum", "fp8_e4m3", "fp16", False),
    ("int8->fp16", "int8", "fp16", True),
    ("int8->int8", "int8", "int8", True),
)
FINALISTS = 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out", required=True, help="path without suffix: writes .json and .md")
    ap.add_argument("--designs", choices=("sweep", "stage1"), default="sweep")
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES))
    ap.add_argument("--layers", default="fc1,fc2,fc3,fc4,fc5,fc6")
    args = ap.parse_args(argv)

    from mpsearch.backends.cutlass import CutlassBackend, catalog
    from mpsearch.backends.gpu.base import chain, op_key
    from mpsearch.backends.pytorch import TorchBackend

    cases = [c for c in CASES if c[0] in args.cases.split(",")]
    designs = catalog.SWEEP if args.designs == "sweep" else catalog.STAGE1
    network = preset("mlp6")
    layers = [l for l in network.layers if l.name in args.layers.split(",")]
    started = time.monotonic()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cut = CutlassBackend(cache_dir=args.cache_dir, local_search=0)
    ref = TorchBackend(progress=lambda line: None)
    ref._pool = cut._pool  # the same operands for both libraries
    rows = []
    for label, in_fmt, out_fmt, fast_accum in cases:
        cut.fp8_fast_accum = fast_accum
        ref.fp8_fast_accum = fast_accum
        kernel_out = catalog.fused_output(in_fmt, out_fmt)
        these = designs if fast_accum or in_fmt != "fp8_e4m3" else [d for d in designs if d.schedule == catalog.COOPERATIVE]
        specs = cut.candidate_specs(in_fmt, kernel_out, these)
        for layer in layers:
            op = Op("gemm", layer.name, layer.m, layer.n, layer.k, in_fmt, out_fmt)
            t0 = time.monotonic()
            # Every design with the scheduler's default settings, raced; then the three fastest designs
            # with every swizzle and raster order, raced; then the three fastest of those beside PyTorch.
            first = cut._tune_gemm(op, specs, kernel_out, schedules=[catalog.SCHEDULES_SM90[0]])
            ranked = sorted((c for c in first["candidates"].values() if "median_ms" in c), key=lambda c: c["median_ms"])
            top = list(dict.fromkeys(c["tile"] for c in ranked))[:FINALISTS]
            record = cut._tune_gemm(op, [s for s in specs if s.tile in top], first["kernel_out"])
            timed = {lbl: c for lbl, c in record["candidates"].items() if "median_ms" in c}
            finalists = sorted(timed, key=lambda lbl: timed[lbl]["median_ms"])[:FINALISTS]
            record["candidates"] = {**{f"designs: {k}": v for k, v in first["candidates"].items()},
                                    **{f"schedules: {k}": v for k, v in record["candidates"].items()}}
            launches = {}
            a = cut.operand("A", in_fmt, op.m, op.k)
            for lbl in finalists:
                rec = {**record, "tile": timed[lbl]["tile"], "schedule": timed[lbl]["schedule"]}
                cut._tuned[op_key(op)] = rec
                out = cut._pool.empty(f"bench.{lbl}", out_fmt, op.m, op.n)
                launches["cutlass " + lbl] = chain(*cut.gemm_launches(op, a, out, f"bench.{lbl}"))
            cut._tuned.pop(op_key(op), None)
            ref_record = ref.op_record(op)  # checks PyTorch's result against float64 too
            ref._records.pop(op_key(op), None)
            out = ref._pool.empty("bench.torch", out_fmt, op.m, op.n)
            launches["pytorch " + ref.kernel_name(op)] = chain(*ref.gemm_launches(op, a, out, "bench.torch"))
            final = cut.time_interleaved(launches, f"final {label} {layer.name}")
            best = min((k for k in final if k.startswith("cutlass ")), key=lambda k: final[k].median_ms)
            torch_key = next(k for k in final if k.startswith("pytorch "))
            row = {
                "case": label, "layer": layer.name, "m": op.m, "n": op.n, "k": op.k,
                "cutlass_ms": final[best].median_ms, "cutlass_kernel": best[len("cutlass "):],
                "pytorch_ms": final[torch_key].median_ms, "pytorch_kernel": torch_key[len("pytorch "):],
                "ratio": final[torch_key].median_ms / final[best].median_ms,
                "cutlass_check_rel_err": timed[best[len("cutlass "):]]["check_rel_err"],
                "pytorch_check_rel_err": ref_record["check_rel_err"],
                "final_samples": {k: len(m.samples) for k, m in final.items()},
                "final_stop": {k: m.stop for k, m in final.items()},
                "telemetry": final[best].summary()["telemetry"],
                "candidates": record["candidates"], "seconds": round(time.monotonic() - t0, 1),
            }
            rows.append(row)
            Path(args.out).with_suffix(".partial.json").write_text(json.dumps(rows, indent=1) + "\n")
            print(f"{label:16s} {layer.name} {op.m}x{op.n}x{op.k}: CUTLASS {row['cutlass_ms']:.4f} ms, PyTorch "
                  f"{row['pytorch_ms']:.4f} ms, ratio {row['ratio']:.3f}  [{row['cutlass_kernel']}] "
                  f"({len(specs)} designs, {len(timed)} schedules of the best {len(top)}, {row['seconds']} s)", flush=True)
    networks = {}
    for label, *_ in cases:
        mine = [r for r in rows if r["case"] == label]
        if len(mine) == len(layers):
            cut_ms, ref_ms = sum(r["cutlass_ms"] for r in mine), sum(r["pytorch_ms"] for r in mine)
            networks[label] = {"cutlass_ms": cut_ms, "pytorch_ms": ref_ms, "ratio": ref_ms / cut_ms,
                               "layers_at_or_above_1": sum(r["ratio"] >= 1.0 for r in mine), "layers": len(mine)}
    prov = cut.provenance()
    result = {"device": cut.device, "provenance": prov, "designs": args.designs, "network": "mlp6 (sum of layers)",
              "layers": rows, "networks": networks, "seconds": round(time.monotonic() - started, 1)}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| case | layer | m x n x k | CUTLASS ms | PyTorch ms | ratio | CUTLASS kernel |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['layer']} | {r['m']}x{r['n']}x{r['k']} | {r['cutlass_ms']:.4f} | {r['pytorch_ms']:.4f} | "
              f"{r['ratio']:.3f} | {r['cutlass_kernel']} |" for r in rows]
    lines += ["", "| case | network CUTLASS ms | network PyTorch ms | ratio | layers >= 1.0x |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {e['cutlass_ms']:.4f} | {e['pytorch_ms']:.4f} | {e['ratio']:.3f} | {e['layers_at_or_above_1']}/{e['layers']} |"
              for k, e in networks.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
