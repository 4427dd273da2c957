#!/usr/bin/env bash
# GPU session 3, call 1, on an H200: the kernels of the default menu and int4 (compiled beforehand on
# a CPU machine, carried in .kct/; whatever is missing is compiled here), the per-op rows of the new
# recording (stage-1 tuning), the repeatability of latencies timed against a reference (five
# processes), then end-to-end passes against the reference until the call's budget. Results and the
# kernel cache (with its tuning records) go to $OUT.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_CACHE_DIR=$PWD/.kcache MPSEARCH_LOCAL_SEARCH=0
REF=fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3
REC=$R/h200
[ -f .kcache/compiled_cache.release.db ] || tar xJf .kct/kc.tar.xz
[ -d .rec/h200 ] && [ ! -d $REC ] && cp -r .rec/h200 $REC
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv > $R/gpu.txt 2>&1
stamp "ready"
timeout 200 python3 benchmarks/kernels/build_cache.py --cache-dir .kcache --groups default,int4 --jobs 16 > $R/compile.log 2>&1
stamp "compile rc=$? $(grep -c ' ok' $R/compile.log) compiled here"; save
timeout 200 python3 benchmarks/record.py ops --menus default --out $REC --deadline-s 180 > $R/ops.log 2>&1
stamp "ops rc=$? $(tail -1 $R/ops.log)"; save
timeout 170 python3 benchmarks/timing/repeatability.py --backend cutlass --variants paired --processes 5 --out $R/repeatability_paired > $R/repeatability.txt 2>&1
stamp "repeatability rc=$?"; save
python3 benchmarks/record.py networks --menus default --reference $REF --passes 3 --deadline-s $(( $(left) - 45 )) --out $REC > $R/networks.log 2>&1
stamp "networks rc=$? $(grep -c . $REC/paired.csv) paired rows"
nvidia-smi --query-gpu=temperature.gpu,power.draw,clocks.sm --format=csv,noheader >> $R/gpu.txt 2>&1
rm -rf .kcache/build; tar cJf $OUT/kc.tar.xz .kcache
stamp "done"; save
