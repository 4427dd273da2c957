"""How clean is a recording of mlp6? Pass-to-pass agreement, additivity, and per-op sum vs end to end.

From a recording directory (``mpsearch/data/recordings/<name>/``), for every configuration of mlp6 over a menu:

- passes: the ratio of each configuration's median in pass p to pass 1 (5th/50th/95th percentile,
  largest deviation), where the recording kept several passes;
- additivity: the least-squares fit of a layer-additive model with boundary terms (one term per
  layer and format, one per pair of formats at each boundary between consecutive layers: the
  layerwise sampler's model) to the configurations' multi-pass values (the median of their passes,
  as replay serves them), and its RMS residual as a fraction of the mean latency;
- per-op sum vs end to end: the sum of the recorded per-op medians over the end-to-end value,
  mean and largest difference.

    python benchmarks/timing/recording_quality.py mpsearch/data/recordings/h200 --out benchmarks/results/h200_timing/recording_quality
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from mpsearch.backends.replay import load_recording, op_key
from mpsearch.network import preset

MENUS = {"fp16,fp8_e4m3,int8": ("fp16", "fp8_e4m3", "int8"), "fp16,int8,int4": ("fp16", "int8", "int4")}


def design(configs: list[tuple[str, ...]], menu: tuple[str, ...]) -> np.ndarray:
    """Columns: an intercept-free one-hot per (layer, format) and per (boundary, format pair)."""
    layers = len(configs[0])
    index = {f: i for i, f in enumerate(menu)}
    k = len(menu)
    x = np.zeros((len(configs), layers * k + (layers - 1) * k * k))
    for row, config in enumerate(configs):
        for i, fmt in enumerate(config):
            x[row, i * k + index[fmt]] = 1
        for i in range(layers - 1):
            x[row, layers * k + i * k * k + index[config[i]] * k + index[config[i + 1]]] = 1
    return x


def additive_rms(configs: list[tuple[str, ...]], y: np.ndarray, menu: tuple[str, ...]) -> float:
    x = design(configs, menu)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(np.sqrt(np.mean((y - x @ w) ** 2)) / y.mean())


def analyse(path: Path) -> dict:
    rec = load_recording(path)
    network = preset("mlp6")
    fp = network.fingerprint()
    frame = rec.networks_frame
    out: dict = {"recording": rec.name, "device": rec.device, "menus": {}}
    for menu_name, menu in MENUS.items():
        configs = [tuple(c) for c in itertools.product(menu, repeat=len(network.layers))]
        keys = [",".join(c) for c in configs]
        if not all((fp, k) in rec.networks for k in keys):
            continue
        mine = frame[(frame["fingerprint"] == fp) & (frame["config"].isin(keys))]
        passes = sorted(set(mine["pass"])) if "pass" in mine.columns else [1]
        pooled = np.array([rec.networks[(fp, k)].median_ms for k in keys])
        entry: dict = {"configurations": len(keys), "passes": passes,
                       "additive_rms_multi_pass": additive_rms(configs, pooled, menu)}
        if len(passes) > 1:
            by_pass = {p: dict(zip(g["config"], g["median_ms"])) for p, g in mine.groupby("pass")}
            first = by_pass[passes[0]]
            for p in passes[1:]:
                ratios = np.array([by_pass[p][k] / first[k] for k in keys if k in by_pass[p] and k in first])
                if len(ratios):
                    entry[f"pass{p}_over_pass{passes[0]}"] = {
                        "configs": int(len(ratios)), "p5": float(np.percentile(ratios, 5)),
                        "p50": float(np.median(ratios)), "p95": float(np.percentile(ratios, 95)),
                        "max_abs_deviation": float(np.max(np.abs(ratios - 1)))}
            one = np.array([first[k] for k in keys])
            entry["additive_rms_pass1_only"] = additive_rms(configs, one, menu)
        sums, gaps = [], []
        for config, key, e2e in zip(configs, keys, pooled):
            ops = network.ops(config)
            timings = [rec.ops.get(op_key(op)) for op in ops]
            if all(t is not None for t in timings):
                total = sum(t.median_ms for t in timings)
                sums.append(total)
                gaps.append((total - e2e) / e2e)
        if gaps:
            entry["per_op_sum_vs_e2e"] = {"configs": len(gaps), "mean": float(statistics.mean(gaps)),
                                          "max_abs": float(max(map(abs, gaps))), "min": float(min(gaps)),
                                          "max": float(max(gaps))}
        out["menus"][menu_name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recording")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    result = analyse(Path(args.recording))
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_suffix(".json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
