#!/usr/bin/env bash
# GPU session 6, call 2, on an H200, with call 1's kernel cache (nothing to compile). Call 1 found
# that a configuration timed against a reference runs at the clock the pair's power sets, not at its
# own: all-int8 read 2.17-2.33 ms paired and 1.81-2.00 ms alone. So timing alone stays the default
# (--timing sustained) and pairing is --timing paired. This call checks that split:
# 1. the CUTLASS GPU tests of timing and pairing;
# 2. a paired study through the CLI (search, then resume, which takes the stored regime): its stored
#    scale and every trial's ratio and scale;
# 3. repeatability over 5 processes: alone (default), paired with each process's own scale, and
#    paired on process 0's scale (one study's trials over resumes and workers).
# Stage-1 tuning only (MPSEARCH_LOCAL_SEARCH=0), as in the recording.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_LOCAL_SEARCH=0
tar xJf .kct/kc.tar.xz
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready $(ls .kc | wc -l) cache files"
timeout 200 python3 -m pytest -q -p no:cacheprovider -rA tests/gpu/test_cutlass_gpu.py \
  -k "consecutive_paired or timed_against_itself or adopted_scale or end_to_end or warm_rerun" > $R/gpu_tests.txt 2>&1
stamp "gpu tests rc=$? $(tail -1 $R/gpu_tests.txt)"; save
mkdir -p $R/study && cd $R/study
timeout 120 python3 -m mpsearch search mlp6 --backend cutlass --timing paired --trials 12 --seed 0 --no-progress > search.txt 2>&1
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
print(json.dumps({"regime": spec["backend"].get("regime"), "latency_scale": spec["backend"].get("latency_scale"),
                  "trials": rows}, indent=1))
PY
stamp "dump rc=$?"; cd - > /dev/null; save
timeout $(( $(left) - 15 )) python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc \
  --variants default,own_scale,study --processes 5 --out $R/rep/repeatability_product > $R/repeatability.log 2>&1
stamp "repeatability rc=$?"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
