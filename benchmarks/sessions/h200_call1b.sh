R=/tmp/res2; mkdir -p $R
[ -d /tmp/site/optuna ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
[ -f .kc/compiled_cache.release.db ] || tar xJf .kct/kcache.tar.xz
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc
ls -la .kc > $R/kc.txt
timeout 500 python3 benchmarks/kernels/bench_vs_cublas.py --cache-dir .kc --out $R/h200_kernels_vs_cublas > $R/bench.log 2>&1; echo "bench rc=$?" >> $R/bench.log
tar czf $OUT/res2.tgz -C /tmp res2; tar cJf $OUT/kcache2.tar.xz .kc/compiled_cache.release.db .kc/failed.json .kc/tuning.json
