#!/usr/bin/env bash
# GPU session 4, call 1, on an H200 (fresh machine, empty kernel cache): the kernels of the default
# menu and int4 compiled here; the int4->int4 GEMM of mlp6's fc1 (2048x16384x32768), which failed its
# float64 check in the H200 recording, re-checked against the double rounding of its path (fp16
# epilogue, then an int4 conversion) and recorded; then the first CUTLASS `prepare` of mlp6 (stage-1
# tuning, stage-2 neighbours compiled and tuned) for as long as the call allows. The kernel cache
# with its tuning records goes to $OUT; call 2 finishes `prepare` and runs it again in a fresh process.
set -u
source "$(dirname "$0")/prelude.sh"
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready"
timeout 280 python3 benchmarks/kernels/build_cache.py --cache-dir .kc --groups default,int4 --jobs 16 > $R/compile.log 2>&1
stamp "compile rc=$? $(grep -c ' ok' $R/compile.log) ok lines"; save
cp -r mpsearch/data/recordings/h200 $R/h200_int4
timeout 120 python3 benchmarks/record.py ops --menus int4 --cache-dir .kc --out $R/h200_int4 --deadline-s 100 > $R/ops_int4.log 2>&1
stamp "int4 ops rc=$? $(tail -1 $R/ops_int4.log)"; save
timeout $(( $(left) - 30 )) python3 benchmarks/kernels/cold_compile.py --cache-dir .kc --out $R/cold_compile.json > $R/cold_compile.log 2>&1
stamp "prepare rc=$?"
rm -rf .kc/build; tar cJf $OUT/kc.tar.xz .kc
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
stamp "done"; save
