"""Long sample streams at the power cap, to choose the sustained protocol's sampling window from data.

Six mlp6 configurations, each in several separate processes (run one after another, as separate
runs of mpsearch would): after the protocol's usual warm-up (steady latency, clocks and power), the
configuration is sampled back to back for ``--seconds`` without stopping, every sample and a
telemetry reading after each batch kept. ``--analyze`` then replays the timing protocol's estimate
offline for sampling windows of several lengths: for each window, the medians of the processes'
first W seconds, their max/min per configuration (the repeatability target is <= 1.01), and the
time a measurement with that window costs. One device run gives the whole spread-vs-time trade-off.

    python benchmarks/timing/streams.py --backend torch --out benchmarks/results/h200_timing/streams_torch
    python benchmarks/timing/streams.py --analyze benchmarks/results/h200_timing/streams_torch.json
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

from repeatability import CONFIGS, prepared  # this folder's script: the same configurations, set up alike

WINDOWS_S = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def child(args: argparse.Namespace) -> None:
    from mpsearch.backends import config_formats
    from mpsearch.backends.timing import TimingProtocol, measure

    network, backend, configs = prepared(args)
    launches = {config.key: backend.network_launch(network, config_formats(network, config)) for config in configs}
    # Never converges (target 0): every configuration is sampled for exactly the stream's length.
    stream = TimingProtocol(target_ci=1e-12, min_sample_s=args.seconds, sample_cap_s=args.seconds, max_samples=10**6)
    k = args.index % len(configs)
    for config in configs[k:] + configs[:k]:
        t0 = time.monotonic()
        m = measure(launches[config.key], stream, backend._timer, backend._telemetry, what=config.key)
        print(json.dumps({"process": args.index, "config": config.key, "seconds": time.monotonic() - t0,
                          "warmup": m.warmup, "samples_ms": [round(s, 5) for s in m.samples],
                          "telemetry_rows": m.telemetry, "telemetry_absent": m.telemetry_absent}), flush=True)
    backend.close()


def _window(row: dict, seconds: float) -> list[float]:
    """The samples of the stream's first ``seconds`` (by the telemetry rows' clock where read, else by
    the samples' own durations)."""
    samples = row["samples_ms"]
    rows = row.get("telemetry_rows") or []
    if rows:
        t_start = rows[0]["t_s"] - sum(samples[: rows[0]["after_sample"]]) / 1000
        n = 0
        for r in rows:
            if r["t_s"] - t_start > seconds:
                break
            n = r["after_sample"]
        return samples[: max(n, 2)]
    total, n = 0.0, 0
    for n, s in enumerate(samples, 1):
        total += s / 1000
        if total >= seconds:
            break
    return samples[:n]


def analyze(path: Path) -> str:
    data = json.loads(path.read_text())
    rows = data["rows"]
    lines = [f"# Sampling window vs repeatability ({data['backend']} backend, {data.get('device', '?')})", "",
             f"{len({r['process'] for r in rows})} processes, each configuration streamed {data['seconds']} s after "
             "the warm-up. Per window: max/min over processes of the window's median, worst configuration, and the "
             "mean time one measurement would take (warm-up + window).", "",
             "| window (s) | worst max/min (median) | worst max/min (mean) | mean max/min (median) | s per measurement |",
             "|---|---|---|---|---|"]
    table = []
    warmups = statistics.mean(r["warmup"].get("seconds", 0.0) for r in rows)
    for w in WINDOWS_S:
        if w > data["seconds"]:
            continue
        ratios_med, ratios_mean = [], []
        for config in CONFIGS:
            mine = [r for r in rows if r["config"] == config]
            if len(mine) < 2:
                continue
            meds = [statistics.median(_window(r, w)) for r in mine]
            means = [statistics.fmean(_window(r, w)) for r in mine]
            ratios_med.append(max(meds) / min(meds))
            ratios_mean.append(max(means) / min(means))
        if not ratios_med:
            continue
        entry = {"window_s": w, "worst_median": max(ratios_med), "worst_mean": max(ratios_mean),
                 "mean_median": statistics.fmean(ratios_med), "seconds": warmups + w}
        table.append(entry)
        lines.append(f"| {w} | {entry['worst_median']:.4f} | {entry['worst_mean']:.4f} | {entry['mean_median']:.4f} | "
                     f"{entry['seconds']:.2f} |")
    lines += ["", "Per configuration, whole stream: median of each process (ms), SM clock median (MHz), temperature (C)", ""]
    for config in CONFIGS:
        mine = [r for r in rows if r["config"] == config]
        parts = []
        for r in sorted(mine, key=lambda r: r["process"]):
            clocks = [t["sm_mhz"] for t in r.get("telemetry_rows") or []]
            temps = [t["temp_c"] for t in r.get("telemetry_rows") or []]
            parts.append(f"{statistics.median(r['samples_ms']):.4f}"
                         + (f" @{statistics.median(clocks):.0f} MHz {min(temps)}-{max(temps)} C" if clocks else ""))
        lines.append(f"- `{config}`: " + "; ".join(parts))
    text = "\n".join(lines) + "\n"
    path.with_suffix(".md").write_text(text)
    path.with_name(path.stem + "_windows.json").write_text(json.dumps(table, indent=1) + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("cutlass", "torch"), default="torch")
    ap.add_argument("--cache-dir")
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.5)
    ap.add_argument("--out", help="output stem (.json, .md, .log)")
    ap.add_argument("--analyze", type=Path, help="an earlier run's .json: write its window table")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.analyze:
        print(analyze(args.analyze))
        return 0
    if not args.out:
        ap.error("--out is required unless --analyze is given")
    if args.child is not None:
        args.index = args.child
        child(args)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    device = "?"
    try:
        import torch

        device = torch.cuda.get_device_name(0)
    except Exception:  # the children will fail with a clear message of their own
        pass
    with out.with_suffix(".log").open("w") as log:
        for index in range(args.processes):
            cmd = [sys.executable, __file__, "--backend", args.backend, "--seconds", str(args.seconds), "--out",
                   args.out, "--child", str(index)] + (["--cache-dir", args.cache_dir] if args.cache_dir else [])
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            log.write(proc.stderr)
            mine = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            rows += mine
            # Written after every process: a session that ends early keeps what it measured.
            out.with_suffix(".json").write_text(json.dumps(
                {"backend": args.backend, "device": device, "seconds": args.seconds, "rows": rows}) + "\n")
            print(f"process {index}: rc {proc.returncode}, {len(mine)} streams in {time.monotonic() - t0:.0f} s",
                  flush=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                break
    if rows:
        print(analyze(out.with_suffix(".json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
