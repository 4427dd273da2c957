"""Tuned CUTLASS kernels vs cuBLAS (through torch) on every mlp6 layer, per format, in one run.

For each layer (m, n, k) of ``mlp6`` and each format, the CUTLASS backend's tuned kernel (the
fastest of its candidate tiles, checked against float64) and the matching cuBLAS call are timed
with the same policy (warm-up, L2 flushed before every repeat, CUDA events) on the same operands:

==========  =====================================  ===========================================
format      CUTLASS (mpsearch)                      cuBLAS via torch
==========  =====================================  ===========================================
fp16        fp16 x fp16 -> fp16, fp32 accumulate    torch.matmul -> fp16
bf16        bf16 x bf16 -> fp16, fp32 accumulate    torch.matmul -> bf16
fp8_e4m3    e4m3 x e4m3 -> fp16, fast accumulate    torch._scaled_mm -> fp16, use_fast_accum=True
                                                    (and =False, reported alongside)
int8        s8 x s8 -> fp16 (scaled), s32 acc.      torch._int_mm -> int32 (no scale: cuBLAS has
                                                    no int8 GEMM with a scaled fp16 output)
int4        sm_80 s4 kernel -> fp16 (emulated)      none: cuBLAS has no int4 GEMM
==========  =====================================  ===========================================

Both sides are timed in this run, one after the other per layer (the tile choice may come from the
tuning cache; its time is measured again here). The network ratio is the sum of the six layers.
A ratio > 1 means CUTLASS is faster.

    python benchmarks/kernels/bench_vs_cublas.py --out benchmarks/results/h100_kernels_vs_cublas
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from mpsearch.network import Op, preset

FORMATS = ("fp16", "bf16", "fp8_e4m3", "int8", "int4")


def cublas_launch(torch, fmt: str, a, w, fast_accum: bool = True):
    if fmt in ("fp16", "bf16"):
        return lambda: torch.matmul(a, w.t())
    if fmt == "fp8_e4m3":
        one = torch.ones((), device="cuda", dtype=torch.float32)
        return lambda: torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.float16,
                                        use_fast_accum=fast_accum)
    if fmt == "int8":
        return lambda: torch._int_mm(a, w.t())
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/h100_kernels_vs_cublas")
    parser.add_argument("--cache-dir")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch

    from mpsearch.backends.cutlass import CutlassBackend

    backend = CutlassBackend(cache_dir=args.cache_dir, repeats=args.repeats)
    network = preset("mlp6")
    rows = []
    for fmt in FORMATS:
        for layer in network.layers:
            m, n, k = layer.m, layer.n, layer.k
            op = Op("gemm", layer.name, m, n, k, fmt, "fp16")
            record = backend.tune(op)
            # Re-time the chosen kernel here, beside cuBLAS: timings drift between runs and machines,
            # so only numbers from one run are compared.
            cut = statistics.median(backend.time_launch(backend.op_launcher(op), what=f"CUTLASS {fmt} {m}x{n}x{k}"))
            a = backend.operand("A", fmt, m, k)
            w = backend.operand("W", fmt, n, k)
            row = {"format": fmt, "layer": layer.name, "m": m, "n": n, "k": k, "cutlass_ms": cut,
                   "cutlass_kernel": record["kernel"], "cutlass_check_rel_err": record["check_rel_err"],
                   "cutlass_tiles_tried": len(record["candidates"])}
            launch = cublas_launch(torch, fmt, a, w)
            if launch is not None:
                samples = backend.time_launch(launch, what=f"cuBLAS {fmt} {m}x{n}x{k}")
                row["cublas_ms"] = statistics.median(samples)
                row["ratio_cublas_over_cutlass"] = row["cublas_ms"] / cut
            if fmt == "fp8_e4m3":
                samples = backend.time_launch(cublas_launch(torch, fmt, a, w, fast_accum=False),
                                              what=f"cuBLAS fp8 (exact accumulate) {m}x{n}x{k}")
                row["cublas_exact_accum_ms"] = statistics.median(samples)
            rows.append(row)
            print(f"{fmt:9s} {layer.name} {m}x{n}x{k}: CUTLASS {cut:.4f} ms"
                  + (f", cuBLAS {row['cublas_ms']:.4f} ms, ratio {row['ratio_cublas_over_cutlass']:.3f}" if "cublas_ms" in row else ", no cuBLAS")
                  + f"  [{record['kernel']}]", flush=True)
    networks = {}
    for fmt in FORMATS:
        mine = [r for r in rows if r["format"] == fmt]
        entry = {"cutlass_ms": sum(r["cutlass_ms"] for r in mine)}
        if all("cublas_ms" in r for r in mine):
            entry["cublas_ms"] = sum(r["cublas_ms"] for r in mine)
            entry["ratio_cublas_over_cutlass"] = entry["cublas_ms"] / entry["cutlass_ms"]
            entry["layers_at_or_above_1"] = sum(r["ratio_cublas_over_cutlass"] >= 1.0 for r in mine)
        networks[fmt] = entry
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip()
    prov = backend.provenance()
    result = {"device": backend.device, "driver": driver, "cuda": torch.version.cuda, "torch": torch.__version__,
              "cutlass": prov["cutlass"], "mpsearch": prov["mpsearch"], "timing": prov["timing"],
              "network": "mlp6 (per-layer sum)", "layers": rows, "networks": networks}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Tuned CUTLASS vs cuBLAS on mlp6, {backend.device}", "",
             f"driver {driver}, CUDA {torch.version.cuda}, torch {torch.__version__}, nvidia-cutlass {prov['cutlass']}, "
             f"mpsearch {prov['mpsearch']}; timing: {prov['timing']['warmup']} warm-up, {args.repeats} repeats, "
             f"{prov['timing']['l2']}, medians. ratio = cuBLAS ms / CUTLASS ms (> 1: CUTLASS faster).", "",
             "| format | layer | m x n x k | CUTLASS ms | cuBLAS ms | ratio | CUTLASS kernel |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {r['layer']} | {r['m']}x{r['n']}x{r['k']} | {r['cutlass_ms']:.4f} | "
                     + (f"{r['cublas_ms']:.4f} | {r['ratio_cublas_over_cutlass']:.3f}" if "cublas_ms" in r else "- | -")
                     + f" | {r['cutlass_kernel']} |")
    lines += ["", "| format | network CUTLASS ms | network cuBLAS ms | ratio | layers >= 1.0x |", "|---|---|---|---|---|"]
    for fmt, e in networks.items():
        lines.append(f"| {fmt} | {e['cutlass_ms']:.4f} | " + (f"{e['cublas_ms']:.4f} | {e['ratio_cublas_over_cutlass']:.3f} | {e['layers_at_or_above_1']}/6 |" if "cublas_ms" in e else "- | - | - |"))
    fp8 = [r for r in rows if "cublas_exact_accum_ms" in r]
    lines += ["", "fp8 cuBLAS without fast accumulation (ms): " + ", ".join(f"{r['layer']} {r['cublas_exact_accum_ms']:.4f}" for r in fp8)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
