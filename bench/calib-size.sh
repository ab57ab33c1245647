#!/usr/bin/env bash
# What a smaller calibration costs: the default conversion (activation basis, RoRoPE, mean-rotation init) with N teacher
# samples of 256 tokens, over three calibration seeds, training-free held-out perplexity on every text given.
# Prints one line per (model, ratio, samples, seed): model ratio samples seed ppl(text1) ppl(text2) ...
# Usage: bash bench/calib-size.sh [OUT=/tmp/calib-size] [SAMPLES="8 16 32 64"] [SEEDS="1234 7 99"] [RATIOS="4 6.4"]
# Models: stories260K (llama2.c) and, when present, the trained HF GQA model of bench/train-gqa.ts (GQA_DIR, default runs/gqa-d32).
set -euo pipefail
out=${1:-/tmp/calib-size}; samples=${SAMPLES:-8 16 32 64}; seeds=${SEEDS:-1234 7 99}; ratios=${RATIOS:-4 6.4}
texts=${TEXTS:-fixtures/heldout/stories-heldout.txt fixtures/heldout/stories-calib.txt}
gqa=${GQA_DIR:-runs/gqa-d32}
mla() { node dist/src/cli/main.js "$@"; }
B=fixtures/stories260K
mkdir -p "$out"
models="stories260K"; [ -f "$gqa/config.json" ] && models="$models gqa-d32"
for m in $models; do
  if [ "$m" = stories260K ]; then src=($B/stories260K.bin --tokenizer $B/tok512.bin); else src=("$gqa"); fi
  for r in $ratios; do for n in $samples; do for s in $seeds; do
    d="$out/$m-$r-$n-$s"
    mla convert "${src[@]}" --out "$d" --kv-ratio "$r" --calib-samples "$n" --seed "$s" --overwrite >/dev/null 2>&1
    line="$m $r $n $s"
    for t in $texts; do line="$line $(mla ppl "$d" --text "$t" --json 2>/dev/null | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).perplexity.toFixed(3)))")"; done
    echo "$line"; rm -rf "$d"
  done; done; done
done
