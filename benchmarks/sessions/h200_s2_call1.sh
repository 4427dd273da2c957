#!/usr/bin/env bash
# GPU session 2, call 1, on an H200: the cold compile of the default menu on 16 cores (stage 1 while
# the GPU streams long PyTorch samples for the timing-window study; then stage 2 and tuning alone),
# a warm rerun's compile count, and the CUTLASS GPU tests. Results and the kernel cache go to $OUT.
set -u
source "$(dirname "$0")/prelude.sh"
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
nproc >> $R/gpu.txt
stamp "ready"
S=$(date +%s)
( python3 benchmarks/kernels/build_cache.py --cache-dir .kc --groups default --jobs 16 > $R/stage1_compile.log 2>&1
  echo "rc=$? wall $(( $(date +%s) - S )) s" >> $R/stage1_compile.log ) &
CP=$!
timeout 230 python3 benchmarks/timing/streams.py --backend torch --processes 5 --seconds 2.5 --out $R/streams_torch > $R/streams_torch.txt 2>&1
stamp "torch streams rc=$?"; save
wait $CP; stamp "stage 1 compile: $(tail -1 $R/stage1_compile.log)"; save
timeout $(( $(left) - 60 )) python3 benchmarks/kernels/cold_compile.py --cache-dir .kc --out $R/cold_compile.json > $R/cold_compile.log 2>&1
stamp "cold compile stage 2 + warm rerun rc=$?"; save
tar cJf $OUT/kc.tar.xz .kc; stamp "cache saved $(du -sh $OUT/kc.tar.xz)"
timeout $(( $(left) - 10 )) python3 -m pytest -q -p no:cacheprovider tests/gpu/test_cutlass_gpu.py > $R/gpu_tests_cutlass.txt 2>&1
stamp "cutlass gpu tests rc=$?"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
tar cJf $OUT/kc.tar.xz .kc
stamp "done"; save
