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
warm_start
timeout 200 python3 -m pytest -q -p no:cacheprovider -rA tests/gpu/test_cutlass_gpu.py \
  -k "consecutive_paired or timed_against_itself or adopted_scale or end_to_end or warm_rerun" > $R/gpu_tests.txt 2>&1
stamp "gpu tests rc=$? $(tail -1 $R/gpu_tests.txt)"; save
cli_study --timing paired
timeout $(( $(left) - 15 )) python3 benchmarks/timing/repeatability.py --backend cutlass --cache-dir .kc \
  --variants default,own_scale,study --processes 5 --out $R/rep/repeatability_product > $R/repeatability.log 2>&1
stamp "repeatability rc=$?"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
