#!/usr/bin/env bash
# GPU session 2 on an H200: the PyTorch backend's GPU tests and conformance suite, the CUTLASS kernel
# sweep against PyTorch (cuBLAS), the PyTorch backend through the CLI (search, bench, enumerate), and
# the repeatability study under the power-aware protocol. Results: $OUT/res.tgz after every step.
set -u
R=/tmp/res; mkdir -p $R
save() { tar czf $OUT/res.tgz -C /tmp res 2>/dev/null; }
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $R/steps.txt; }
left() { echo $(( 580 - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $R/pip.log 2>&1 || { stamp "pip failed"; save; exit 1; }
tar xJf .kct/kcache.tar.xz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc
nvidia-smi --query-gpu=name,pci.bus_id,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu_start.txt 2>&1
stamp "ready"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_torch_gpu.py > $R/gpu_tests_torch.txt 2>&1
stamp "torch gpu tests rc=$?"; save
timeout 300 python3 benchmarks/kernels/bench_vs_cublas.py --cache-dir .kc --out $R/h200_kernels_vs_cublas > $R/bench.log 2>&1
stamp "kernel bench rc=$?"; save
M="python3 -m mpsearch"
timeout 30 $M bench mlp6 --config fp8,fp8,fp16,int8,int8,fp8 --backend torch > $R/cli_torch_bench.txt 2>&1
stamp "cli bench rc=$?"
timeout 80 $M search mlp6 --backend torch --trials 60 --sampler layerwise --seed 0 --study-name mlp6-torch-h200 --storage sqlite:////tmp/res/mlp6-torch-h200.db --no-progress > $R/cli_torch_search.txt 2>&1
stamp "cli search rc=$?"; save
timeout 50 $M enumerate mlp6 --backend torch --formats fp16,fp8 --study-name mlp6-torch-fp16fp8 --storage sqlite:////tmp/res/mlp6-torch-fp16fp8.db --no-progress > $R/cli_torch_enumerate.txt 2>&1
stamp "cli enumerate rc=$?"; save
timeout $(left) python3 benchmarks/timing/repeatability.py --backend torch --processes 5 --variants default,long,burst --out $R/h200_repeatability_torch > $R/rep_torch.log 2>&1
stamp "torch repeatability rc=$?"; save
nvidia-smi --query-gpu=name,temperature.gpu,power.draw,clocks.sm --format=csv >> $R/gpu_start.txt 2>&1
stamp "done"; save
