"""mlp6 configurations timed by ``record.py networks`` (a networks.csv, perhaps partial) against a
recording (by default the H200 recording timed against a reference, ``benchmarks/results/h200_recording/``),
on the configurations both hold: the rank correlation of their latencies, their ratio by fc1's
format, and the RMS residual of the layer-additive fit with boundary terms (one term per layer and
format, one per pair of formats at each boundary: the layerwise sampler's model) to each
(``recording_quality.additive_rms``).

    python benchmarks/timing/compare_to_recording.py mpsearch/data/recordings/h200/networks.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys

import numpy as np
from recording_quality import additive_rms

MENU = ("fp16", "fp8_e4m3", "int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("networks_csv")
    ap.add_argument("--recording", default="benchmarks/results/h200_recording", help="the recording compared with")
    args = ap.parse_args()
    by_config: dict[str, list[float]] = {}
    for row in csv.DictReader(open(args.networks_csv)):
        by_config.setdefault(row["config"], []).append(float(row["median_ms"]))
    measured = {c: statistics.median(v) for c, v in by_config.items()}

    from scipy.stats import spearmanr

    from mpsearch.backends.replay import ReplayBackend
    from mpsearch.network import preset
    from mpsearch.space import SearchSpace

    net = preset("mlp6")
    space = SearchSpace(net, MENU)
    replay = ReplayBackend(args.recording, network=net, menu=space.menu)
    keys = sorted(measured)
    recorded = {c: replay.measure(net, space.parse_config(c)).ms for c in keys}
    a = np.array([measured[c] for c in keys])
    r = np.array([recorded[c] for c in keys])
    print(f"{len(keys)} configurations in both; rank correlation {spearmanr(a, r).statistic:.3f}")
    for fmt in MENU:
        ratios = [measured[c] / recorded[c] for c in keys if c.split(",")[0] == fmt]
        if ratios:
            q = statistics.quantiles(ratios, n=20)
            print(f"fc1 {fmt}: measured / recorded median {statistics.median(ratios):.3f} "
                  f"(5th-95th percentile {q[0]:.3f}-{q[-1]:.3f}, {len(ratios)} configurations)")
    configs = [tuple(c.split(",")) for c in keys]
    print(f"layer-additive fit with boundary terms, RMS residual: measured {additive_rms(configs, a, MENU):.2%}, "
          f"recorded {additive_rms(configs, r, MENU):.2%} (same configurations)")


if __name__ == "__main__":
    sys.exit(main())
