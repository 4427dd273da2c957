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
cold_start
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py \
  -k "consecutive or reference or adopted or end_to_end" > $R/gpu_tests.txt 2>&1
stamp "gpu tests rc=$? $(tail -1 $R/gpu_tests.txt)"; save
cli_study
# Variant names as they were then (repeatability.py has since renamed them): default = paired on the
# process's own scale (now own_scale), alone = timed alone (now default).
timeout $(( $(left) - 15 )) python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc \
  --variants default,study,alone --processes 5 --out $R/rep/repeatability_product > $R/repeatability.log 2>&1
stamp "repeatability rc=$?"
tar cJf $OUT/kc.tar.xz .kc 2>/dev/null
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
