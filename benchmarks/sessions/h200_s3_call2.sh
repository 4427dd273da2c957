#!/usr/bin/env bash
# GPU session 3, call 2 (a warm machine keeps call 1's files; a fresh one gets them from .kct/ and
# .rec/): the remaining end-to-end passes against the reference, networks.csv and provenance, then
# per-op rows of the int4 menu with what time is left.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_CACHE_DIR=$PWD/.kcache MPSEARCH_LOCAL_SEARCH=0
REF=fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3
REC=$R/h200
[ -f .kcache/tuning.json ] || tar xJf .kct/kc.tar.xz
[ -d .rec/h200 ] && cp -r .rec/h200/. $REC/
stamp "ready $(grep -c . $REC/paired.csv) paired rows"
python3 benchmarks/record.py networks --menus default --reference $REF --passes ${PASSES:-3} --deadline-s $(( $(left) - ${INT4_S:-120} )) --out $REC > $R/networks2.log 2>&1
stamp "networks rc=$? $(grep -c . $REC/paired.csv) paired rows"; save
python3 benchmarks/record.py finalize --out $REC > $R/finalize.log 2>&1; stamp "finalize rc=$?"
timeout $(( $(left) - 40 )) python3 benchmarks/record.py ops --menus default,int4 --out $REC --deadline-s $(( $(left) - 60 )) > $R/ops_int4.log 2>&1
stamp "int4 ops rc=$? $(tail -1 $R/ops_int4.log)"
python3 benchmarks/record.py provenance --out $REC > $R/provenance.log 2>&1; stamp "provenance rc=$?"
rm -rf .kcache/build; tar cJf $OUT/kc.tar.xz .kcache
stamp "done"; save
