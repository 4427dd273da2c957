"""Write a SYNTHETIC recording (networks.csv + ops.csv in the mpsearch/data/recordings/<device>/ format) for
developing the search-quality benchmark before the real H100 recording exists.

Nothing here is a measurement. Per-op costs are built from CUTLASS per-layer timings of the
seed network measured on an H100 before the recording (2026-11-26, below) (scaled by FLOPs for other shapes), an epilogue cost for the output format,
and each network's end-to-end latency is the sum of its ops times a deterministic non-additive factor
in [1 - noise, 1 + noise], noise 0.05 by default (sum-of-layers vs whole-network ratios of 0.95-1.16 were measured on that H100). Results made
from it must be labelled synthetic and are never committed as results.

    python benchmarks/search_quality/synthetic.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mpsearch.formats import get_format
from mpsearch.network import preset
from mpsearch.space import SearchSpace

# CUTLASS per-layer latencies (ms) measured on an H100, 2026-11-26, layers fc1..fc6 of mlp6 (m=2048).
_MLP6_MS = {
    "fp16": (3.224, 0.898, 0.302, 0.110, 0.051, 0.401),
    "int8": (2.171, 0.598, 0.183, 0.072, 0.038, 0.273),
    "fp8_e4m3": (1.839, 0.473, 0.136, 0.050, 0.031, 0.201),
    "int4": (57.3, 14.5, 3.62, 0.94, 0.48, 3.74),
}
_HBM_BYTES_PER_S = 3.0e12  # measured device-to-device copy on that H100
_LAUNCH_MS = 0.004
_MENUS = (("fp16", "fp8_e4m3", "int8"), ("fp16", "int8", "int4"))


def _jitter(key: str, spread: float) -> float:
    """A deterministic factor in [1 - spread, 1 + spread] per key (the same file every time)."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / float(1 << 48)
    return 1.0 + spread * (2.0 * h - 1.0)


def _rate(fmt: str) -> float:
    """Effective FLOP/s of the first mlp6 layer in ``fmt`` (the largest GEMM of the table)."""
    return 2 * 2048 * 16384 * 32768 / (_MLP6_MS[fmt][0] * 1e-3)


def gemm_ms(m: int, n: int, k: int, fmt: str, out_fmt: str) -> float:
    mlp6 = {(2048, l.n, l.k): i for i, l in enumerate(preset("mlp6").layers)}
    if (m, n, k) in mlp6:
        base = _MLP6_MS[fmt][mlp6[(m, n, k)]]
    else:
        base = max(2 * m * n * k / _rate(fmt) * 1e3, _LAUNCH_MS)
    # The table's kernels wrote fp16 (fp16, fp8) or int32 (int8, int4); writing another format
    # changes the epilogue's traffic, and an integer output needs a requantising epilogue.
    wrote = 4 if get_format(fmt).kind == "int" else 2
    extra = m * n * (get_format(out_fmt).storage_bytes - wrote) / _HBM_BYTES_PER_S * 1e3
    extra += 0.002 if get_format(out_fmt).kind == "int" else 0.0
    return max(base + extra, _LAUNCH_MS) * _jitter(f"gemm{m},{n},{k},{fmt},{out_fmt}", 0.02)


def convert_ms(m: int, k: int, out_fmt: str) -> float:
    bytes_moved = m * k * (2 + get_format(out_fmt).storage_bytes)
    return (_LAUNCH_MS + bytes_moved / _HBM_BYTES_PER_S * 1e3) * _jitter(f"convert{m},{k},{out_fmt}", 0.02)


def op_ms(op) -> float:
    if op.kind == "gemm":
        return gemm_ms(op.m, op.n, op.k, op.fmt, op.out_fmt)
    return convert_ms(op.m, op.k, op.out_fmt)


def write(out: Path, network_noise: float = 0.05) -> None:
    out.mkdir(parents=True, exist_ok=True)
    net = preset("mlp6")
    rows, ops = [], {}
    seen = set()
    for menu in _MENUS:
        for config in SearchSpace(net, menu).all_configs():
            if config.key in seen:
                continue
            seen.add(config.key)
            net_ops = net.ops(config.formats)
            total = sum(op_ms(o) for o in net_ops) * _jitter("net" + config.key, network_noise)
            rows.append({"network": net.name, "fingerprint": net.fingerprint(), "config": config.key,
                         "median_ms": total, "p10_ms": total * 0.99, "p90_ms": total * 1.01, "n_samples": 1,
                         "samples_ms": f"{total:.6f}"})
            for o in net_ops:
                ops[(o.kind, o.m, o.n, o.k, o.fmt, o.out_fmt)] = op_ms(o)
    llama = preset("llama8b-10blocks-prefill")
    for layer in llama.layers:
        for fmt in ("fp16", "fp8_e4m3", "int8", "int4"):
            cfg = ["fp16"] * len(llama.layers)
            cfg[llama.layer_names.index(layer.name)] = fmt
            for o in llama.ops(cfg):
                if o.layer == layer.name:
                    ops[(o.kind, o.m, o.n, o.k, o.fmt, o.out_fmt)] = op_ms(o)
    pd.DataFrame(rows).to_csv(out / "networks.csv", index=False)
    pd.DataFrame([{"kind": k[0], "m": k[1], "n": k[2], "k": k[3], "fmt": k[4], "out_fmt": k[5], "median_ms": v,
                   "p10_ms": v * 0.99, "p90_ms": v * 1.01, "n_samples": 1, "samples_ms": f"{v:.6f}",
                   "kernel": "SYNTHETIC", "check_rel_err": np.nan} for k, v in ops.items()]).to_csv(out / "ops.csv", index=False)
    (out / "SYNTHETIC").write_text("synthetic data from benchmarks/search_quality/synthetic.py: not a measurement\n")
    (out / "provenance.json").write_text(json.dumps({
        "device": "SYNTHETIC H100 stand-in (not a measurement)", "arch": 90, "date": "synthetic",
        "notes": f"benchmarks/search_quality/synthetic.py, end-to-end non-additive factor +-{network_noise}"}))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: synthetic.py OUT_DIR [NETWORK_NOISE (default 0.05: end-to-end = sum of ops x [0.95, 1.05])]")
    write(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) == 3 else 0.05)
