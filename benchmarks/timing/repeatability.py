"""How repeatable is a measured latency, and what does it cost? Six mlp6 configurations, each
measured in several separate processes under several timing protocols.

For each protocol variant and configuration: the medians of the processes, their max/min (the
repeatability target is <= 1.01), and the seconds each measurement took (warm-up included). The
variants trade time for spread; the default protocol is chosen from this table. Processes run one
after another, as separate runs of mpsearch would; inside a process the variants' order rotates so
none is always measured first.

    python benchmarks/timing/repeatability.py --backend cutlass --cache-dir DIR --out benchmarks/results/h200_repeatability
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = (
    "fp16,fp16,fp16,fp16,fp16,fp16",
    "fp8_e4m3,fp8_e4m3,fp8_e4m3,fp8_e4m3,fp8_e4m3,fp8_e4m3",
    "int8,int8,int8,int8,int8,int8",
    "fp8_e4m3,fp16,int8,fp16,fp8_e4m3,int8",
    "fp16,fp8_e4m3,fp8_e4m3,int8,int8,fp16",
    "int8,fp8_e4m3,fp16,fp8_e4m3,fp16,fp8_e4m3",
)
MENU = ("fp16", "fp8_e4m3", "int8")
VARIANTS = {  # name -> TimingProtocol keyword arguments
    # backend.measure as built by default (--timing sustained): each configuration alone.
    "default": {},
    # backend.measure with --timing paired: against the network's reference configuration, times the
    # scale this process measured (as a fresh `mpsearch bench --timing paired` does).
    "own_scale": {},
    # The same, times one scale for all processes (process 0 measures it, the others adopt it): what
    # the trials of one paired study give, over resumes and workers.
    "study": {},
    "quick": {"target_ci": 0.01, "min_sample_s": 0.05, "sample_cap_s": 0.3},
    "long": {"target_ci": 0.0025, "min_sample_s": 1.0, "sample_cap_s": 2.0},
    "burst": {"regime": "burst"},
    # Sustained, each configuration timed against REFERENCE (alternately); its value is the ratio.
    "paired": {},
}
PAIRED_MEASURE = ("own_scale", "study")  # the variants that time through backend.measure with --timing paired
# Not one of CONFIGS: a recording's reference, whose ratios the paired variant reports.
REFERENCE = "fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3"


def prepared(args: argparse.Namespace):
    """mlp6, the backend ``args`` names with every op of the six configurations tuned and checked
    (so what is timed afterwards is kernels only), and the configurations."""
    from mpsearch.network import preset
    from mpsearch.space import SearchSpace

    network = preset("mlp6")
    space = SearchSpace(network, MENU)
    if args.backend == "cutlass":
        from mpsearch.backends.cutlass import CutlassBackend

        backend = CutlassBackend(cache_dir=args.cache_dir)
    else:
        from mpsearch.backends.pytorch import TorchBackend

        backend = TorchBackend()
    backend.prepare(network, MENU)
    configs = [space.parse_config(c) for c in CONFIGS]
    for config in configs:
        for op in network.ops(config.formats):
            backend.op_record(op)
    return network, backend, configs


def child(args: argparse.Namespace) -> None:
    from mpsearch.backends.timing import TimingProtocol

    network, backend, configs = prepared(args)
    variants = args.variants.split(",")
    k = args.index % len(variants)
    for variant in variants[k:] + variants[:k]:
        backend.protocol = TimingProtocol(**VARIANTS[variant])
        backend.against_reference = variant in PAIRED_MEASURE
        if variant == "study":
            shared = Path(args.out).with_suffix(".scale.json")
            if shared.is_file():
                backend.adopt_scale(network, json.loads(shared.read_text()), str(shared))
            else:
                shared.write_text(json.dumps(backend.scale_record(network), indent=1) + "\n")
        elif variant == "own_scale":
            backend._scales.clear()  # this variant measures its own scale, even after the study variant adopted one
        for config in configs:
            t0 = time.monotonic()
            if variant == "paired":
                reference = backend.checked_network_launch(network, REFERENCE.split(","))
                paired = backend.time_against_reference(backend.checked_network_launch(network, list(config.formats)),
                                                        reference, f"{config.key} against {REFERENCE}")
                summary = paired.summary()
                print(json.dumps({"process": args.index, "variant": variant, "config": config.key, "ms": paired.ratio,
                                  "target_ms": paired.target.median_ms, "reference_ms": paired.reference.median_ms,
                                  "seconds": time.monotonic() - t0, "n_samples": len(paired.ratios), "stop": paired.stop,
                                  "warmup": paired.target.warmup, "telemetry": summary["target"]["telemetry"]}), flush=True)
                continue
            result = backend.measure(network, config)
            timing = result.extra["timing"]
            paired = result.extra.get("paired")
            print(json.dumps({"process": args.index, "variant": variant, "config": config.key, "ms": result.ms,
                              **({"ratio": paired["ratio"], "scale_ms": paired["scale"]["ms"],
                                  "target_ms": paired["target_median_ms"]} if paired else {}),
                              "seconds": time.monotonic() - t0, "n_samples": timing["n_samples"], "stop": timing["stop"],
                              "warmup": timing["warmup"], "telemetry": timing["telemetry"] if "absent" in timing["telemetry"]
                              else {k: v for k, v in timing["telemetry"].items()}}), flush=True)
    backend.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("cutlass", "torch"), default="cutlass")
    ap.add_argument("--cache-dir")
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--variants", default="default,own_scale,study,burst")
    ap.add_argument("--out", required=True)
    ap.add_argument("--summarize", action="store_true", help="only summarise the rows an earlier run left in OUT.rows.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        args.index = args.child
        child(args)
        return 0
    out = Path(args.out)
    if args.summarize:
        rows = json.loads(out.with_suffix(".rows.json").read_text())
        return summarize(rows, args.variants.split(","), len({r["process"] for r in rows}), args.backend, out)
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log").open("w")
    out.with_suffix(".scale.json").unlink(missing_ok=True)  # the study variant's scale: this run's process 0 measures it
    for index in range(args.processes):
        cmd = [sys.executable, __file__, "--backend", args.backend, "--variants", args.variants, "--out", args.out,
               "--child", str(index)] + (["--cache-dir", args.cache_dir] if args.cache_dir else [])
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        log.write(proc.stderr)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"process {index} failed")
        mine = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        rows += mine
        # Kept as they come: a session that ends early still leaves the processes it finished.
        out.with_suffix(".rows.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"process {index}: {len(mine)} measurements in {time.monotonic() - t0:.0f} s", flush=True)
    return summarize(rows, args.variants.split(","), args.processes, args.backend, out)


def summarize(rows: list[dict], variants: list[str], processes: int, backend: str, out: Path) -> int:
    """Per variant and configuration: the processes' medians and their max/min (written as .json and .md)."""
    summary = []
    for variant in variants:
        for config in CONFIGS:
            mine = [r for r in rows if r["variant"] == variant and r["config"] == config]
            medians = [r["ms"] for r in mine]
            raw = [r["target_ms"] for r in mine if "target_ms" in r]
            summary.append({"variant": variant, "config": config, "medians_ms": medians,
                            "max_over_min": max(medians) / min(medians),
                            **({"target_medians_ms": raw, "target_max_over_min": max(raw) / min(raw)} if raw else {}),
                            "seconds_median": statistics.median(r["seconds"] for r in mine),
                            "samples_median": statistics.median(r["n_samples"] for r in mine),
                            "stops": sorted({r["stop"] for r in mine})})
    result = {"backend": backend, "processes": processes, "variants": {v: VARIANTS[v] for v in variants},
              "rows": rows, "summary": summary}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["Variant paired: each configuration timed alternately with " + REFERENCE + "; its medians are ratios "
             "to that reference (a recording multiplies them by one constant), and the raw end-to-end medians "
             "of the same measurements are given beside them.", ""]
    lines += ["| variant | config | max/min of medians | s per measurement | samples | medians (ms) |", "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['variant']} | {s['config']} | {s['max_over_min']:.4f} | {s['seconds_median']:.2f} | "
                     f"{s['samples_median']:.0f} | {' '.join(f'{m:.4f}' for m in s['medians_ms'])} |")
        if "target_medians_ms" in s:
            lines.append(f"| paired, raw end to end | {s['config']} | {s['target_max_over_min']:.4f} | | | "
                         f"{' '.join(f'{m:.4f}' for m in s['target_medians_ms'])} |")
    for variant in variants:
        worst = max(s["max_over_min"] for s in summary if s["variant"] == variant)
        secs = statistics.mean(s["seconds_median"] for s in summary if s["variant"] == variant)
        lines.append(f"\n{variant}: worst max/min {worst:.4f}, mean {secs:.2f} s per measurement")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
