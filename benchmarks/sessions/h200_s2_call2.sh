#!/usr/bin/env bash
# GPU session 2, call 2, on an H200 (the kernel cache from call 1 carried in .kct/): a warm rerun's
# compile count, `mpsearch enumerate mlp6` with the CUTLASS backend timed (sustained regime, GPU
# kept loaded between trials), then the CUTLASS GPU tests.
set -u
source "$(dirname "$0")/prelude.sh"
tar xJf .kct/kc.tar.xz
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready"
timeout 100 python3 benchmarks/kernels/cold_compile.py --cache-dir .kc --out $R/warm_compile.json > $R/warm_compile.log 2>&1
stamp "warm prepare x2 rc=$?"; save
S=$(date +%s)
timeout 330 python3 -m mpsearch enumerate mlp6 --backend cutlass --cache-dir .kc --study-name mlp6-h200 --storage sqlite:////tmp/res/mlp6-h200-enumerate.db --no-progress > $R/enumerate.txt 2>&1
stamp "enumerate rc=$? wall $(( $(date +%s) - S )) s"; save
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py > $R/gpu_tests_cutlass.txt 2>&1
stamp "cutlass gpu tests rc=$?"
tar cJf $OUT/kc.tar.xz .kc
stamp "done"; save
