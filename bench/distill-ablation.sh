#!/usr/bin/env bash
# Short distillation ablations at 4× on stories260K (1M tokens each, 2048 teacher samples): the default recipe
# against an X-EcoMLA-style init (ecomla rope, weight SVD, no mean rotation), attention-only training and a lower lr.
# Usage: bash bench/distill-ablation.sh [OUT=runs/ablation]   (prints one line per run: variant, held-out ppl)
set -euo pipefail
out=${1:-runs/ablation}
B=fixtures/stories260K
mla() { node dist/src/cli/main.js "$@"; }
mkdir -p "$out"
mla convert $B/stories260K.bin --tokenizer $B/tok512.bin --out "$out/init-default" --kv-ratio 4 --rope-dim 4 --overwrite >/dev/null 2>&1
mla convert $B/stories260K.bin --tokenizer $B/tok512.bin --out "$out/init-ecomla" --kv-ratio 4 --rope-dim 4 \
  --rope-method ecomla --basis weight --nope-init identity --overwrite >/dev/null 2>&1
run() { # name init extra-flags...
  local name=$1 init=$2; shift 2
  rm -rf "$out/$name"
  mla distill --teacher $B/stories260K.bin --tokenizer $B/tok512.bin --student "$out/$init" --out "$out/$name" \
    --tokens 1000000 --self-generate 2048 --eval-text fixtures/heldout/stories-heldout.txt --json "$@" 2>/dev/null \
    | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);console.log('$name', r.eval_ppl.toFixed(3), r.tokens)})"
}
export MLA_THREADS=1
run default init-default &
run ecomla-init init-ecomla &
wait
run attention-only init-default --train attention &
run lr-1e-3 init-default --lr 1e-3 &
wait
