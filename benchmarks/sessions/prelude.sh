# Sourced by the session scripts (h200_s2_call*.sh): results folder, a step log with seconds since
# the start, the time left of the call's budget, a save of everything to $OUT every 20 s (a call
# cut by its limit still returns what it measured), and the wheels installed offline. Factored out of the three scripts after they ran; their steps are unchanged.
R=/tmp/res; mkdir -p $R
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $R/steps.txt; }
left() { echo $(( ${BUDGET:-570} - ($(date +%s) - T0) )); }
save() { tar czf $OUT/res.tgz -C /tmp res 2>/dev/null; }
( while true; do sleep 20; save; done ) &
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $R/pip.log 2>&1 || { stamp "pip failed"; save; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPSEARCH_CACHE_DIR=$PWD/.kc
# The GPU's name, limits and state (again at the end of a call), and the default menu's stage-1
# kernels compiled on 16 cores into .kc (factored out of the session-5 and -6 scripts after they ran).
gpu_state() { nvidia-smi --query-gpu=name,pci.bus_id,driver_version,power.limit,temperature.gpu,power.draw,clocks.sm --format=csv >> $R/gpu.txt 2>&1; }
cold_start() {
  gpu_state; stamp "ready"
  timeout 240 python3 benchmarks/kernels/build_cache.py --cache-dir .kc --groups default --jobs 16 > $R/compile.log 2>&1
  stamp "compile rc=$? $(grep -c ' ok' $R/compile.log) ok lines"; save
}
# The same with the kernel cache a previous call returned, carried in as .kct/kc.tar.xz (extracted in
# every call: a warm machine does not keep it).
warm_start() { tar xJf .kct/kc.tar.xz; gpu_state; stamp "ready $(ls .kc | wc -l) cache files"; }
# A 12-trial mlp6 study through the CLI, resumed for 4 more, and its timing record (arguments: extra
# search options): what session 6 checked of the stored latency scale.
cli_study() {
  mkdir -p $R/study && cd $R/study
  timeout 120 python3 -m mpsearch search mlp6 --backend cutlass "$@" --trials 12 --seed 0 --no-progress > search.txt 2>&1
  stamp "search rc=$?"
  timeout 60 python3 -m mpsearch resume mlp6 --trials 4 --no-progress > resume.txt 2>&1
  stamp "resume rc=$?"
  python3 $OLDPWD/benchmarks/sessions/dump_study.py mlp6 sqlite:///studies/mlp6.db > trials.json 2> trials.err
  stamp "dump rc=$?"; cd - > /dev/null; save
}

