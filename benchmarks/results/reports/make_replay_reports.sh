#!/usr/bin/env bash
# Rebuild the reports of a network from a recording (default: mlp6 and the H100 recording in
# studies/data/h100/): the exhaustive front of every configuration over {fp16, fp8, int8},
# 60-measurement searches with four samplers, each compared with it, and, when MENU2 is set, the
# exhaustive front of a second menu overlaid on the first. Needs no GPU: the latencies are replayed.
#
#   benchmarks/results/reports/make_replay_reports.sh            # -> benchmarks/results/reports/mlp6-h100/
#   NET=llama8b-block-prefill MENU2= benchmarks/results/reports/make_replay_reports.sh
#   BACKEND=roofline OUT=/tmp/dry benchmarks/results/reports/make_replay_reports.sh   # a dry run, modelled
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
net=${NET:-mlp6}
backend=${BACKEND:-replay}
tag=${TAG:-h100}
out=${OUT:-$repo/benchmarks/results/reports/$net-$tag}
trials=${TRIALS:-60}
menu=fp16,fp8,int8
menu2=${MENU2-fp16,int8,int4}  # the other menu recorded end to end for mlp6; empty: none
mpsearch=${MPSEARCH:-mpsearch}
name="$net-$tag"

mkdir -p "$out/studies"
cd "$out"  # the studies live in $out/studies/, where `mpsearch report` finds the exhaustive one
rm -f studies/*.db
"$mpsearch" enumerate "$net" --backend "$backend" --formats "$menu" --study-name "$name-exhaustive" --no-progress
for sampler in tpe nsga2 layerwise random; do
  "$mpsearch" search "$net" --backend "$backend" --formats "$menu" --sampler "$sampler" --seed 0 \
    --trials "$trials" --study-name "$name-$sampler" --no-progress
done
"$mpsearch" report "$name-exhaustive" --out exhaustive --html-js cdn
if [ -n "$menu2" ]; then
  # int4 runs emulated on Hopper: the enumeration warns, and says so.
  "$mpsearch" enumerate "$net" --backend "$backend" --formats "$menu2" --study-name "$name-int4-exhaustive" --no-progress
  "$mpsearch" report "$name-exhaustive" "$name-int4-exhaustive" --out menus --html-js cdn
fi
"$mpsearch" report "$name-tpe" "$name-nsga2" "$name-layerwise" "$name-random" \
  --compare "$name-exhaustive" --out samplers --html-js cdn
