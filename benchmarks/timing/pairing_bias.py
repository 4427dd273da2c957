"""Timed alone or against a reference: what each gives for the six repeatability configurations of
mlp6, from the rows of ``repeatability.py`` runs (several calls pooled).

For each configuration and way of timing: the median over processes, max/min over all processes and
within each call (a call's "paired, one scale" processes share one scale: one study; two calls are
two studies), and the median SM clock during the measurements; then paired / alone. ``--rename OLD=NEW`` maps a variant
name of an older run onto today's (the first session-6 call named the variants differently).

    python benchmarks/timing/pairing_bias.py benchmarks/results/h200_session6/call1/repeatability_product.rows.json \\
        benchmarks/results/h200_session6/call2/repeatability_product.rows.json --rename call1:alone=default \\
        --rename call1:default=own_scale
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from repeatability import CONFIGS

WAYS = ("default", "study", "own_scale")
LABEL = {"default": "alone (--timing sustained)", "study": "paired, one scale", "own_scale": "paired, own scale"}


def load(paths: list[str], renames: list[str]) -> list[dict]:
    rows = []
    for i, path in enumerate(paths, 1):
        mapping = {}
        for item in renames:
            call, _, pair = item.partition(":")
            old, _, new = pair.partition("=")
            if call == f"call{i}":
                mapping[old] = new
        for row in json.loads(Path(path).read_text()):
            rows.append({**row, "variant": mapping.get(row["variant"], row["variant"]), "call": i})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="+")
    ap.add_argument("--rename", action="append", default=[], help="callN:OLD=NEW")
    args = ap.parse_args()
    rows = load(args.rows, args.rename)
    print("| configuration | timing | processes | median ms | max/min, all | max/min within each call | median SM MHz |")
    print("|---|---|---|---|---|---|---|")
    ratios = {}
    for config in CONFIGS:
        medians = {}
        for way in WAYS:
            mine = [r for r in rows if r["config"] == config and r["variant"] == way]
            if not mine:
                continue
            ms = [r["ms"] for r in mine]
            clocks = [r["telemetry"]["sm_mhz"]["median"] for r in mine if "sm_mhz" in r.get("telemetry", {})]
            medians[way] = statistics.median(ms)
            calls = sorted({r["call"] for r in mine})
            within = [max(r["ms"] for r in mine if r["call"] == c) / min(r["ms"] for r in mine if r["call"] == c)
                      for c in calls]
            print(f"| {config} | {LABEL[way]} | {len(mine)} | {medians[way]:.4f} | {max(ms) / min(ms):.4f} | "
                  f"{' / '.join(f'{w:.4f}' for w in within)} | {statistics.median(clocks):.0f} |")
        if "default" in medians and "study" in medians:
            ratios[config] = medians["study"] / medians["default"]
    print()
    for config, ratio in ratios.items():
        print(f"paired (one scale) / alone, {config}: {ratio:.3f}")


if __name__ == "__main__":
    main()
