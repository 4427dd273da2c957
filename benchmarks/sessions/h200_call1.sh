#!/usr/bin/env bash
# GPU session 1 on an H200 (device machine): torch backend GPU tests, the timing-protocol
# repeatability study (PyTorch backend), then the CUTLASS kernel sweep against PyTorch (cuBLAS).
# The sweep's kernels compile in the background on 12 of the 16 cores while the GPU measures.
# Everything lands in /tmp/res, tarred into $OUT/res.tgz after every step; the kernel cache comes
# back as $OUT/kcache.tar.xz.
set -u
R=/tmp/res; mkdir -p $R
save() { tar czf $OUT/res.tgz -C /tmp res 2>/dev/null; }
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $R/steps.txt; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $R/pip.log 2>&1 || { stamp "pip failed"; save; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc
stamp "wheels installed"
nvidia-smi > $R/nvidia-smi.txt 2>&1; nproc > $R/nproc.txt
python3 -m mpsearch env > $R/env.txt 2>&1
stamp "env done"; save
( timeout 460 python3 benchmarks/kernels/build_cache.py --cache-dir .kc --groups sweep --jobs 12 > $R/build_sweep.log 2>&1; echo $? > $R/build_rc ) &
timeout 150 python3 -m pytest -q -p no:cacheprovider -x tests/gpu/test_torch_gpu.py > $R/gpu_tests_torch.txt 2>&1
stamp "torch gpu tests rc=$?"; save
timeout 230 python3 benchmarks/timing/repeatability.py --backend torch --processes 5 --variants quick,default,careful,burst --out $R/h200_repeatability_torch > $R/rep_torch.log 2>&1
stamp "torch repeatability rc=$?"; save
while [ ! -f $R/build_rc ]; do sleep 2; done
stamp "sweep build rc=$(cat $R/build_rc)"; save
timeout $(( 585 - ($(date +%s) - T0) - 25 )) python3 benchmarks/kernels/bench_vs_cublas.py --cache-dir .kc --out $R/h200_kernels_vs_cublas > $R/bench.log 2>&1
stamp "kernel bench rc=$?"; save
tar cJf $OUT/kcache.tar.xz .kc/compiled_cache.release.db .kc/failed.json .kc/tuning.json 2>/dev/null
stamp "done"; save
