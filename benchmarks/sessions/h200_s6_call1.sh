#!/usr/bin/env bash
# GPU session 6, call 1, on an H200 (fresh machine, empty kernel cache): network latencies in the
# product path timed against the network's reference configuration, on one scale per study.
# 1. the CUTLASS GPU tests of timing and pairing (the consecutive-measurements test failed in
#    session 4, when each configuration was timed alone);
# 2. a study through the CLI (search, then resume): its stored scale, every trial's ratio and scale;
# 3. repeatability over 5 processes: timed alone, against the reference with each process's own
#    scale, and with the scale of process 0 (what one study's trials give over resumes and workers).
# Stage-1 tuning only (MPSEARCH_LOCAL_SEARCH=0), as in the recording, to save compile time.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_LOCAL_SEARCH=0
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready"
timeout 240 python3 benchmarks/kernels/build_cache.py --cache-dir .kc --groups default --jobs 16 > $R/compile.log 2>&1
stamp "compile rc=$? $(grep -c ' ok' $R/compile.log) ok lines"; save
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py \
  -k "consecutive or reference or adopted or end_to_end" > $R/gpu_tests.txt 2>&1
stamp "gpu tests rc=$? $(tail -1 $R/gpu_tests.txt)"; save
mkdir -p $R/study && cd $R/study
timeout 120 python3 -m mpsearch search mlp6 --backend cutlass --trials 12 --seed 0 --no-progress > search.txt 2>&1
stamp "search rc=$?"
timeout 60 python3 -m mpsearch resume mlp6 --trials 4 --no-progress > resume.txt 2>&1
stamp "resume rc=$?"
python3 - > trials.json 2> trials.err <<'PY'
import json, optuna
study = optuna.load_study(study_name="mlp6", storage="sqlite:///studies/mlp6.db")
spec = study.user_attrs["mpsearch_spec"]
rows = []
for t in study.trials:
    extra = t.user_attrs.get("latency_extra") or {}
    p = extra.get("paired") or {}
    rows.append({"number": t.number, "state": t.state.name, "config": t.user_attrs.get("config"),
                 "values": t.values, "ratio": p.get("ratio"), "scale_ms": (p.get("scale") or {}).get("ms"),
                 "target_median_ms": p.get("target_median_ms"), "reference_median_ms": p.get("reference_median_ms"),
                 "sm_mhz": ((extra.get("timing") or {}).get("telemetry") or {}).get("sm_mhz")})
print(json.dumps({"latency_scale": spec["backend"].get("latency_scale"), "trials": rows}, indent=1))
PY
stamp "dump rc=$?"; cd - > /dev/null; save
timeout $(( $(left) - 15 )) python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc \
  --variants default,study,alone --processes 5 --out $R/rep/repeatability_product > $R/repeatability.log 2>&1
stamp "repeatability rc=$?"
tar cJf $OUT/kc.tar.xz .kc 2>/dev/null
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
