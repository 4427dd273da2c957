#!/usr/bin/env bash
# GPU session 2, call 3, on an H200 (the last of the session's device time): the repeatability run
# with the CUTLASS backend (six mlp6 configurations, five processes, default and burst protocols),
# then the CUTLASS GPU tests that call 2 had no time for.
set -u
R=/tmp/res; mkdir -p $R
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $R/steps.txt; }
left() { echo $(( ${BUDGET:-380} - ($(date +%s) - T0) )); }
save() { tar czf $OUT/res.tgz -C /tmp res 2>/dev/null; }
( while true; do sleep 20; save; done ) &
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $R/pip.log 2>&1 || { stamp "pip failed"; save; exit 1; }
tar xJf .kct/kc.tar.xz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc
stamp "ready"
timeout 230 python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc --variants default,burst --out $R/repeatability_cutlass > $R/repeatability.txt 2>&1
stamp "repeatability rc=$?"; save
timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py -k "end_to_end or int4_output or Conformance or conformance" > $R/gpu_tests_cutlass_rest.txt 2>&1
stamp "cutlass gpu tests (rest) rc=$?"
stamp "done"; save
