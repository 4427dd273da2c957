"""Print a study's timing record as JSON: the regime and latency scale its spec stores, and per trial
the configuration, values, ratio to the reference, scale and SM clock (session-6 GPU calls; factored
out of their scripts after they ran).

    python benchmarks/sessions/dump_study.py NAME STORAGE_URL > trials.json
"""

import json
import sys

import optuna

name, storage = sys.argv[1], sys.argv[2]
study = optuna.load_study(study_name=name, storage=storage)
spec = study.user_attrs["mpsearch_spec"]
rows = []
for t in study.trials:
    extra = t.user_attrs.get("latency_extra") or {}
    p = extra.get("paired") or {}
    rows.append({"number": t.number, "state": t.state.name, "config": t.user_attrs.get("config"),
                 "values": t.values, "ratio": p.get("ratio"), "scale_ms": (p.get("scale") or {}).get("ms"),
                 "target_median_ms": p.get("target_median_ms"), "reference_median_ms": p.get("reference_median_ms"),
                 "sm_mhz": ((extra.get("timing") or {}).get("telemetry") or {}).get("sm_mhz")})
print(json.dumps({"regime": spec["backend"].get("regime"), "latency_scale": spec["backend"].get("latency_scale"),
                  "trials": rows}, indent=1))
