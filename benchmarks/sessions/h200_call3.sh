#!/usr/bin/env bash
# GPU session 3 on an H200 (the last of the session's device time): the CUTLASS recording of mlp6
# over {fp16, fp8, int8}. Per-op rows (tuning every op once), then `mpsearch enumerate` of all 729
# configurations, timed (pass 1), then the per-op sum vs end-to-end measurement, then as much of a
# second shuffled pass as time allows. Stage-2 local search off (MPSEARCH_LOCAL_SEARCH=0): its
# kernels were not compiled ahead, and compiling them here would take the time the passes need.
set -u
R=/tmp/res; mkdir -p $R/h200
save() { tar czf $OUT/res.tgz -C /tmp res 2>/dev/null; }
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $R/steps.txt; }
left() { echo $(( ${BUDGET:-500} - ($(date +%s) - T0) )); }
( while true; do sleep 30; save; done ) &
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $R/pip.log 2>&1 || { stamp "pip failed"; save; exit 1; }
tar xJf .kct/kcache.tar.xz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc MPSEARCH_LOCAL_SEARCH=0
nvidia-smi --query-gpu=name,pci.bus_id,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready"
timeout 110 python3 benchmarks/record.py ops --menus default --only mlp6 --out $R/h200 > $R/ops.log 2>&1
stamp "ops rc=$?"; save
S=$(date +%s)
timeout 260 python3 -m mpsearch enumerate mlp6 --backend cutlass --study-name mlp6-h200 --storage sqlite:////tmp/res/mlp6-h200-enumerate.db --no-progress > $R/enumerate.txt 2>&1
stamp "enumerate rc=$? wall $(( $(date +%s) - S )) s"; save
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
timeout 60 python3 benchmarks/timing/sum_vs_e2e.py --backend cutlass --configs 8 --samples 20 --out $R/h200_sum_vs_e2e > $R/sum_vs_e2e.log 2>&1
stamp "sum_vs_e2e rc=$?"; save
timeout $(left) python3 benchmarks/record.py networks --menus default --first-pass 2 --passes 2 --deadline-s $(( $(left) - 25 )) --out $R/h200 > $R/pass2.log 2>&1
stamp "pass 2 rc=$?"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
tar cJf $OUT/tuning.tar.xz .kc/tuning.json 2>/dev/null
stamp "done"; save
