"""The fast corner of the H200 recording timed against a reference, timed alone and compared with it.

Reads a folder written by ``record.py networks`` without ``--reference`` (``alone_networks.csv``,
``alone_telemetry.jsonl``) and with it (``paired.csv``, same session, same configurations), and
that recording (``benchmarks/results/h200_recording/``, shipped until the recording timed alone
replaced it) through the replay backend. Per configuration:

- alone: the median over passes of each pass's median, the spread of the pass medians (max/min),
  and the median SM clock;
- paired, this session: the median ratio to the reference over passes, times the reference's own
  alone latency measured in this session (so paired and alone share one unit);
- recorded: what replay serves.

Then the ratios between them and the rank correlations, and where the threshold proxy's fastest
front point stands in each ranking.

    python benchmarks/timing/fast_corner_alone.py benchmarks/results/h200_session6/fast_corner
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

REFERENCE = "fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3"
THRESHOLD_POINT = "int8,int8,int8,fp8_e4m3,fp16,int8"
PAIRED_RECORDING = "benchmarks/results/h200_recording"


def ranks(values: dict[str, float]) -> dict[str, int]:
    return {k: i + 1 for i, k in enumerate(sorted(values, key=values.get))}


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    from scipy.stats import spearmanr

    keys = sorted(set(a) & set(b))
    return float(spearmanr([a[k] for k in keys], [b[k] for k in keys]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    args = ap.parse_args()
    folder = Path(args.folder)

    by_pass: dict[str, list[float]] = {}
    for row in csv.DictReader((folder / "alone_networks.csv").open()):
        by_pass.setdefault(row["config"], []).append(float(row["median_ms"]))
    clocks: dict[str, list[float]] = {}
    for line in (folder / "alone_telemetry.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "sm_mhz" in row:
            clocks.setdefault(row["config"], []).append(row["sm_mhz"])
    ratios: dict[str, list[float]] = {}
    paired_clocks: dict[str, list[float]] = {}
    for row in csv.DictReader((folder / "paired.csv").open()):
        ratios.setdefault(row["config"], []).append(float(row["ratio"]))
        if row.get("sm_mhz"):
            paired_clocks.setdefault(row["config"], []).append(float(row["sm_mhz"]))

    from mpsearch.backends.replay import ReplayBackend
    from mpsearch.network import preset
    from mpsearch.space import SearchSpace

    net = preset("mlp6")
    space = SearchSpace(net, ("fp16", "fp8_e4m3", "int8"))
    replay = ReplayBackend(PAIRED_RECORDING, network=net, menu=space.menu)

    alone = {c: statistics.median(v) for c, v in by_pass.items()}
    ref_ms = alone[REFERENCE]
    paired = {c: statistics.median(v) * ref_ms for c, v in ratios.items()}
    recorded = {c: replay.measure(net, space.parse_config(c)).ms for c in alone}

    print(f"{len(alone)} configurations; alone passes per configuration: "
          f"{min(map(len, by_pass.values()))}-{max(map(len, by_pass.values()))}; paired passes: "
          f"{min(map(len, ratios.values()))}-{max(map(len, ratios.values()))}; the reference alone: {ref_ms:.4f} ms")
    print()
    print("| configuration | alone ms (pass max/min) | SM MHz alone / paired | paired ms, this session | recorded ms | "
          "paired / alone | recorded / alone | rank alone / paired / recorded |")
    print("|---|---|---|---|---|---|---|---|")
    ra, rp, rr = ranks(alone), ranks(paired), ranks(recorded)
    for c in sorted(alone, key=alone.get):
        spread = max(by_pass[c]) / min(by_pass[c])
        ca = statistics.median(clocks.get(c, [float("nan")]))
        cp = statistics.median(paired_clocks.get(c, [float("nan")]))
        mark = " (threshold point)" if c == THRESHOLD_POINT else " (reference)" if c == REFERENCE else ""
        print(f"| {c}{mark} | {alone[c]:.4f} ({spread:.3f}) | {ca:.0f} / {cp:.0f} | {paired[c]:.4f} | {recorded[c]:.4f} | "
              f"{paired[c] / alone[c]:.3f} | {recorded[c] / alone[c]:.3f} | {ra[c]} / {rp[c]} / {rr[c]} |")
    print()
    spreads = sorted(max(v) / min(v) for v in by_pass.values())
    print(f"alone: pass max/min median {statistics.median(spreads):.3f}, worst {spreads[-1]:.3f}")
    others = [c for c in alone if c != REFERENCE]
    for name, values in (("paired (this session)", paired), ("recorded", recorded)):
        r = sorted(values[c] / alone[c] for c in others)
        print(f"{name} / alone over the {len(others)} corner configurations: median {statistics.median(r):.3f}, "
              f"range {r[0]:.3f}-{r[-1]:.3f}; rank correlation with alone {spearman({c: alone[c] for c in others}, {c: values[c] for c in others}):.2f}")
    print(f"rank correlation paired (this session) vs recorded: {spearman({c: paired[c] for c in others}, {c: recorded[c] for c in others}):.2f}")
    print(f"the threshold point {THRESHOLD_POINT}: rank {ra[THRESHOLD_POINT]} alone, {rp[THRESHOLD_POINT]} paired, "
          f"{rr[THRESHOLD_POINT]} recorded, of {len(alone)}")


if __name__ == "__main__":
    sys.exit(main())
