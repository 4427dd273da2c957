#!/usr/bin/env bash
# One study measured by 2 workers, one per GPU, with the CUTLASS backend, in one command:
#
#   benchmarks/multi_gpu/run.sh benchmarks/results/multi_gpu_h100x2
#
# It creates the study on a journal file inside OUTPUT_DIR (several processes on one host; no
# SQLite), runs `mpsearch search --workers 2 --backend cutlass` (each worker pinned to its GPU with
# CUDA_VISIBLE_DEVICES), then writes OUTPUT_DIR/summary.json and summary.md: the devices, and the
# trials each worker measured on which GPU. Settings come from the environment:
#   WORKERS (2) TRIALS (40, the study's total) NETWORK (mlp6) FORMATS (fp16,fp8,int8) SEED (0)
#   BACKEND (cutlass; the tests run it with roofline on CPU) PYTHON (python3 with mpsearch installed)
#   STUDY (multi-gpu-<UTC time>) EXTRA (more `mpsearch search` arguments, e.g. "--cache-dir DIR")
set -euo pipefail

OUT=${1:?usage: benchmarks/multi_gpu/run.sh OUTPUT_DIR}
WORKERS=${WORKERS:-2}
TRIALS=${TRIALS:-40}
NETWORK=${NETWORK:-mlp6}
FORMATS=${FORMATS:-fp16,fp8,int8}
SEED=${SEED:-0}
BACKEND=${BACKEND:-cutlass}
PYTHON=${PYTHON:-python3}
STUDY=${STUDY:-multi-gpu-$(date -u +%Y%m%dT%H%M%SZ)}
HERE=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$OUT"
STORAGE="journal:$OUT/$STUDY.log"
started=$(date +%s)
# A failed worker still leaves a study worth summarising: take the status, write the summary, exit with it.
set +e
# shellcheck disable=SC2086  # EXTRA is a list of arguments
"$PYTHON" -m mpsearch.cli search "$NETWORK" --study-name "$STUDY" --storage "$STORAGE" \
  --backend "$BACKEND" --formats "$FORMATS" --seed "$SEED" --workers "$WORKERS" --trials "$TRIALS" \
  --no-progress ${EXTRA:-} 2>&1 | tee "$OUT/search.log"
status=${PIPESTATUS[0]}
set -e
"$PYTHON" "$HERE/summary.py" --study "$STUDY" --storage "$STORAGE" --out "$OUT" --started "$started" \
  --command "mpsearch search $NETWORK --backend $BACKEND --workers $WORKERS --trials $TRIALS --formats $FORMATS --seed $SEED ${EXTRA:-}"
exit "$status"
