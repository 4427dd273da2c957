"""Where CUTLASS and PyTorch (cuBLAS) disagree on which mlp6 configurations are Pareto-optimal.

Takes a study measured with ``--backend torch`` and a recording measured with the CUTLASS backend on
the same kind of GPU. For the configurations the study measured (only those: no latency is
invented), the latency-vs-capacity Pareto front under each library, and the configurations on one
front but not the other. Capacity is exact (Σ k × bits).

    python benchmarks/kernels/compare_fronts.py --storage sqlite:///x.db --study mlp6-torch-h200 \\
        --recording mpsearch/data/recordings/h200 --out benchmarks/results/h200_torch_vs_cutlass_front
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import moocore
import numpy as np

from mpsearch.backends.replay import load_recording
from mpsearch.network import preset
from mpsearch.space import SearchSpace, capacity


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--recording", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import optuna

    study = optuna.load_study(study_name=args.study, storage=args.storage)
    rec = load_recording(args.recording)
    network = preset("mlp6")
    space = SearchSpace(network, ("fp16", "fp8_e4m3", "int8"))
    fp = network.fingerprint()
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if trial.state.name != "COMPLETE" or "repeat_of" in attrs or attrs.get("latency_source") != "measured":
            continue
        key = attrs["config"]
        recorded = rec.networks.get((fp, key))
        if recorded is None:
            continue
        config = space.parse_config(key)
        rows.append({"config": key, "capacity": capacity(network, config), "torch_ms": trial.values[0],
                     "cutlass_ms": recorded.median_ms})
    pts = {lib: np.array([[r[f"{lib}_ms"], r["capacity"]] for r in rows]) for lib in ("torch", "cutlass")}
    on = {lib: moocore.is_nondominated(p, maximise=[False, True]) for lib, p in pts.items()}
    for i, r in enumerate(rows):
        r["pareto_torch"], r["pareto_cutlass"] = bool(on["torch"][i]), bool(on["cutlass"][i])
    rows.sort(key=lambda r: -r["capacity"])
    result = {"study": args.study, "recording": rec.name, "device_recording": rec.device,
              "torch_device": study.trials[0].user_attrs.get("latency_device") if study.trials else None,
              "common_configurations": len(rows), "rows": rows,
              "only_torch": [r["config"] for r in rows if r["pareto_torch"] and not r["pareto_cutlass"]],
              "only_cutlass": [r["config"] for r in rows if r["pareto_cutlass"] and not r["pareto_torch"]]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| config | capacity | PyTorch ms | CUTLASS ms | PyTorch / CUTLASS | Pareto (PyTorch) | Pareto (CUTLASS) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['capacity']:,} | {r['torch_ms']:.4f} | {r['cutlass_ms']:.4f} | "
                     f"{r['torch_ms'] / r['cutlass_ms']:.3f} | {'yes' if r['pareto_torch'] else ''} | "
                     f"{'yes' if r['pareto_cutlass'] else ''} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"on the PyTorch front only: {result['only_torch']}\non the CUTLASS front only: {result['only_cutlass']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
