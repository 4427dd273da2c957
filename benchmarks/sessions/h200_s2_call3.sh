#!/usr/bin/env bash
# GPU session 2, call 3, on an H200 (the last of the session's device time): the repeatability run
# with the CUTLASS backend (six mlp6 configurations, five processes, default and burst protocols),
# then the CUTLASS GPU tests that call 2 had no time for.
set -u
source "$(dirname "$0")/prelude.sh"
tar xJf .kct/kc.tar.xz
stamp "ready"
timeout 230 python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc --variants default,burst --out $R/repeatability_cutlass > $R/repeatability.txt 2>&1
stamp "repeatability rc=$?"; save
timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py -k "end_to_end or int4_output or Conformance or conformance" > $R/gpu_tests_cutlass_rest.txt 2>&1
stamp "cutlass gpu tests (rest) rc=$?"
stamp "done"; save
