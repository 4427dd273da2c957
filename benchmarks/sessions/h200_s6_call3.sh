#!/usr/bin/env bash
# GPU session 6, call 3, on an H200, with call 1's kernel cache: the fast corner of the H200
# recording timed alone. Calls 1-2 found that a configuration timed against the fp16-heavy reference
# runs at the pair's clock, and that int8-fc1 configurations then read 12-21 % slower than alone.
# The recording was made that way. Here the 40 configurations of session 5 (the 30 fastest recorded
# and the 10 farthest from the additive fit) and the recording's reference, each timed alone
# (--timing sustained) in 5 shuffled passes, with the SM clock and power of each measurement beside
# networks.csv. Compared offline with the recording.
set -u
source "$(dirname "$0")/prelude.sh"
export MPSEARCH_LOCAL_SEARCH=0
warm_start
timeout $(( $(left) - 20 )) python3 benchmarks/record.py networks --menus default --cache-dir .kc --out $R/alone \
  --configs benchmarks/sessions/h200_s6_configs.txt --passes 5 --deadline-s $(( $(left) - 40 )) > $R/networks.log 2>&1
stamp "networks rc=$? $(wc -l < $R/alone/networks.csv) rows"
gpu_state
stamp "done"; save
