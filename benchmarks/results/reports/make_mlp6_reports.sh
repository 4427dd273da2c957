#!/usr/bin/env bash
# Rebuild the mlp6 reports from a recording (default: the H100 one in studies/data/h100/): the
# exhaustive front of the 729 configurations of {fp16, fp8, int8}, 60-measurement searches with four
# samplers, each compared with it, and the exhaustive front of the other recorded menu
# {fp16, int8, int4} overlaid on the first. Needs no GPU: the latencies are replayed.
#
#   benchmarks/results/reports/make_mlp6_reports.sh            # -> benchmarks/results/reports/mlp6-h100/
#   BACKEND=roofline OUT=/tmp/dry benchmarks/results/reports/make_mlp6_reports.sh   # a dry run, modelled
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
backend=${BACKEND:-replay}
out=${OUT:-$repo/benchmarks/results/reports/mlp6-h100}
tag=${TAG:-h100}
trials=${TRIALS:-60}
menu=fp16,fp8,int8
mpsearch=${MPSEARCH:-mpsearch}

mkdir -p "$out/studies"
cd "$out"  # the studies live in $out/studies/, where `mpsearch report` finds the exhaustive one
rm -f studies/*.db
"$mpsearch" enumerate mlp6 --backend "$backend" --formats "$menu" --study-name "mlp6-$tag-exhaustive" --no-progress
for sampler in tpe nsga2 layerwise random; do
  "$mpsearch" search mlp6 --backend "$backend" --formats "$menu" --sampler "$sampler" --seed 0 \
    --trials "$trials" --study-name "mlp6-$tag-$sampler" --no-progress
done
# The second recorded menu, int4 instead of fp8 (int4 runs emulated on Hopper): two menus compared.
"$mpsearch" enumerate mlp6 --backend "$backend" --formats fp16,int8,int4 --study-name "mlp6-$tag-int4-exhaustive" --no-progress
"$mpsearch" report "mlp6-$tag-exhaustive" --out exhaustive --html-js cdn
"$mpsearch" report "mlp6-$tag-exhaustive" "mlp6-$tag-int4-exhaustive" --out menus --html-js cdn
"$mpsearch" report "mlp6-$tag-tpe" "mlp6-$tag-nsga2" "mlp6-$tag-layerwise" "mlp6-$tag-random" \
  --compare "mlp6-$tag-exhaustive" --out samplers --html-js cdn
