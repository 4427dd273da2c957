"""Writes tests/data/replay_tiny/: a SYNTHETIC recording for the replay tests (no GPU measured it).

Per-op latencies are the H100 roofline times × 3 with a seeded ±10% jitter, so they are plausible but
clearly not data. End-to-end rows are the sum of their ops × 1.07, so a test can tell the two apart.
Covered: tiny-mlp3 and tiny-block2 over {fp16, fp8_e4m3, int8}, every op; five end-to-end configs of
tiny-mlp3. Regenerate with: python tests/data/make_replay_fixture.py
"""

import csv
import json
import random
from pathlib import Path

from mpsearch.backends.replay import NETWORKS_COLUMNS, OPS_COLUMNS, op_key, possible_ops
from mpsearch.backends.roofline import RooflineBackend, op_time_ms
from mpsearch.network import load_network
from mpsearch.space import SearchSpace

HERE = Path(__file__).parent
OUT = HERE / "replay_tiny"
MENU = ("fp16", "fp8_e4m3", "int8")
E2E = ["fp16,fp16,fp16", "int8,int8,int8", "fp8_e4m3,fp8_e4m3,fp8_e4m3", "fp16,int8,fp8_e4m3", "int8,fp16,fp16"]


def row_timing(median: float) -> list[str]:
    # five samples spread ±2% around the median, so the median column is the samples' median
    samples = [round(median * (1 + d), 6) for d in (-0.02, -0.01, 0.0, 0.01, 0.02)]
    return [f"{median:.6g}", f"{samples[0]:.6g}", f"{samples[-1]:.6g}", "5", " ".join(f"{s:.6g}" for s in samples)]


def main() -> None:
    rng = random.Random(20261126)
    h100 = RooflineBackend("h100").spec
    OUT.mkdir(exist_ok=True)
    nets = [load_network(HERE / "tiny_mlp3.toml"), load_network(HERE / "tiny_block2.toml")]
    ops_rows, medians = [], {}
    for net in nets:
        for key, op in possible_ops(SearchSpace(net, MENU)).items():
            if key in medians:
                continue
            medians[key] = round(3 * op_time_ms(op, h100) * rng.uniform(0.9, 1.1), 6)
            kernel = "synthetic" if op.kind == "gemm" else "synthetic-convert"
            ops_rows.append([*map(str, key[:6]), *row_timing(medians[key]), kernel, "0" if op.kind == "convert" else "1e-4"])
    net_rows = []
    mlp = nets[0]
    for config in E2E:
        total = sum(medians[op_key(op)] for op in mlp.ops(config.split(",")))
        net_rows.append([mlp.name, mlp.fingerprint(), config, *row_timing(round(total * 1.07, 6))])
    for name, header, rows in (("ops.csv", OPS_COLUMNS, ops_rows), ("networks.csv", NETWORKS_COLUMNS, net_rows)):
        with open(OUT / name, "w", newline="") as f:
            # csv quotes the comma-joined config column, as any CSV writer does
            csv.writer(f, lineterminator="\n").writerows([header, *rows])
    provenance = {
        "device": "SYNTHETIC H100 (test fixture, not a measurement)", "arch": 90, "driver": "none",
        "cuda": "none", "cutlass": "none", "torch": "none", "mpsearch": "0.1.0", "date": "2026-11-26",
        "timing": {"warmup": 0, "repeats": 5, "l2": "none"},
        "notes": "SYNTHETIC: roofline x3 with seeded jitter, written by tests/data/make_replay_fixture.py",
    }
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")


if __name__ == "__main__":
    main()
