#!/usr/bin/env bash
# Continue the shipped H200 recording of mlp6, timed alone (mpsearch/data/recordings/h200/networks.csv;
# its NVML readings are in benchmarks/results/h200_alone_recording/), on an H200: up to PASSES passes
# over the 729 configurations of the default menu, each pass in its own shuffled order, skipping the
# (configuration, pass) rows already recorded. Carry .whl and .kct (a kernel cache, or none: the
# default menu is then compiled first, about 200-230 s on 16 cores). The grown folder comes back in
# $OUT/res.tgz (res/alone_rec/): copy its networks.csv over the recording's, and its
# networks_telemetry.jsonl over the one in benchmarks/results/h200_alone_recording/. About 0.36 s per
# configuration once the kernels are tuned.
#   PASSES=5 BUDGET=570 bash benchmarks/sessions/alone_recording_continue.sh
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_LOCAL_SEARCH=0
if [ -f .kct/kc.tar.xz ]; then warm_start; else cold_start; fi
mkdir -p $R/alone_rec && cp mpsearch/data/recordings/h200/networks.csv \
  benchmarks/results/h200_alone_recording/networks_telemetry.jsonl $R/alone_rec/
timeout $(( $(left) - 15 )) python3 benchmarks/record.py networks --menus default --cache-dir .kc --out $R/alone_rec \
  --passes ${PASSES:-5} --deadline-s $(( $(left) - 30 )) > $R/alone_rec.log 2>&1
stamp "alone recording rc=$? $(( $(wc -l < $R/alone_rec/networks.csv) - 1 )) rows"
[ -f .kct/kc.tar.xz ] || tar cJf $OUT/kc.tar.xz .kc 2>/dev/null
gpu_state
stamp "done"; save
