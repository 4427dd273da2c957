#!/usr/bin/env bash
# GPU session 5, call 1, on an H200 (fresh machine, empty kernel cache): does an int8-heavy chain's
# recorded latency depend on the SM clock its passes met? The 30 fastest mlp6 configurations of the
# H200 recording and the 10 others farthest from its layer-additive fit, timed again against the
# recording's reference in 5 more shuffled passes (stage-1 tuning only, as in the recording), with
# the SM clock of every pass in paired.csv. Compared offline with what the recording predicts.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_LOCAL_SEARCH=0
cold_start
timeout $(( $(left) - 20 )) python3 benchmarks/record.py networks --menus default --cache-dir .kc --out $R/rec \
  --reference fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3 --configs benchmarks/sessions/h200_s5_configs.txt \
  --first-pass 6 --passes 10 --deadline-s $(( $(left) - 40 )) > $R/networks.log 2>&1
stamp "networks rc=$? $(wc -l < $R/rec/paired.csv) rows"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
