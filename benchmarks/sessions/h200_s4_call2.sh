#!/usr/bin/env bash
# GPU session 4, call 2, on the same H200 (kernel cache from call 1, or carried in .kct/): the
# int4->int4 row recorded with stage-1 tuning, as the rest of the H200 recording was; then the
# CUTLASS GPU tests, int4 ones first, for the rest of the call.
set -u
source "$(dirname "$0")/prelude.sh"
[ -f .kc/compiled_cache.release.db ] || tar xJf .kct/kc.tar.xz
stamp "ready"
[ -d $R/h200_int4 ] || cp -r mpsearch/data/recordings/h200 $R/h200_int4
MPSEARCH_LOCAL_SEARCH=0 timeout 150 python3 benchmarks/record.py ops --menus int4 --cache-dir .kc --out $R/h200_int4 --deadline-s 130 > $R/ops_int4_stage1.log 2>&1
stamp "int4 ops rc=$? $(tail -1 $R/ops_int4_stage1.log)"; save
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py -k int4 > $R/gpu_tests_int4.txt 2>&1
stamp "int4 gpu tests rc=$? $(tail -1 $R/gpu_tests_int4.txt)"; save
timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py -k "not int4" > $R/gpu_tests_cutlass.txt 2>&1
stamp "cutlass gpu tests rc=$? $(tail -1 $R/gpu_tests_cutlass.txt)"
stamp "done"; save
