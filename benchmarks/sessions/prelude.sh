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
