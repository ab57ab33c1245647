#!/usr/bin/env bash
# Ablations of the distillation recipe at 6.4× (README "Distillation recipe ablations"): each variant distils the same
# converted student for TOKENS tokens, then `mla compare` scores it on three held-out texts: perplexity and the mean
# KL(teacher ‖ student) per token (the distillation's objective on real text; a student can beat a weak teacher's
# perplexity by staying flatter, so perplexity alone can mislead). Every variant that trains on
# teacher samples draws SELF (not the default 8,192) of them, alike for all, to keep the sweep short.
#
# Usage: bash bench/distill-ablation.sh [OUT=runs/ablation] [VARIANT...]
#   env: TEACHER (default stories260K; or an HF model directory such as a trained GQA model), TOKENIZER (for a
#        llama2.c teacher; empty for a directory that holds its tokenizer), TOKENS (1000000), SELF (2048), SEED (1),
#        JOBS (2 runs at once), KV_RATIO (6.4), ROPE_DIM (4)
#   VARIANT: a name from the list below (default: all of them). Prints one markdown table: variant, flags, perplexity
#   on each text, their geometric mean. `calib+ce` trains on stories-calib.txt: its calib column is then not held out.
#   TRAIN_ONLY=1: train the variants and stop (score and print on a later call).
# Held-out evaluation only at the end (--eval-every 1000000): the 20 evaluations of the default cost as much as the
# training at these lengths. Runs already finished in OUT (a result.json there) are reused, so the table can be reprinted or extended.
set -euo pipefail
out=${1:-runs/ablation}
shift || true
B=fixtures/stories260K
H=fixtures/heldout
TEACHER=${TEACHER:-$B/stories260K.bin}
TOKENIZER=${TOKENIZER-$B/tok512.bin}
TOKENS=${TOKENS:-1000000}
SELF=${SELF:-2048}
SEED=${SEED:-1}
JOBS=${JOBS:-2}
KV_RATIO=${KV_RATIO:-6.4}
ROPE_DIM=${ROPE_DIM:-4}
TEXTS=("$H/stories-heldout.txt" "$H/stories-heldout2.txt" "$H/stories-calib.txt")
export MLA_THREADS=${MLA_THREADS:-1}

# name | flags. Teacher-sample variants get --self-generate $SELF unless they give their own: the seq variants draw
# SELF·256/seq samples, so every variant trains on as many distinct teacher tokens (and for as many epochs).
VARIANTS=(
  "baseline|"
  "sample-t0.7|--sample-temperature 0.7"
  "sample-t1.2|--sample-temperature 1.2"
  "sample-t1.5|--sample-temperature 1.5"
  "top-p0.9|--sample-top-p 0.9"
  "calib+ce|--data $H/stories-calib.txt --ce-weight 0.5"
  "sample-t0.85|--sample-temperature 0.85"
  "train-attention|--train attention"
  "seq128|--seq 128 --batch 32 --self-generate $((SELF * 2))"
  "seq512|--seq 512 --batch 8 --self-generate $((SELF / 2))"
  "top-p0.95|--sample-top-p 0.95"
  "kl-t2|--temperature 2"
)
want=("$@")

mla() { nice -n 10 node dist/src/cli/main.js "$@"; }
tok=(); [ -n "$TOKENIZER" ] && tok=(--tokenizer "$TOKENIZER")
mkdir -p "$out"
init="$out/init"
[ -f "$init/config.json" ] || mla convert "$TEACHER" "${tok[@]}" --out "$init" --kv-ratio "$KV_RATIO" --rope-dim "$ROPE_DIM" --overwrite >/dev/null 2>&1
ppl() { mla ppl "$1" "${tok[@]}" --text "$2" --json 2>/dev/null | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).perplexity.toFixed(3)))"; }
# "PPL KL" of a student against the teacher on one text
pplkl() { mla compare "$TEACHER" "$1" "${tok[@]}" --text "$2" --json 2>/dev/null | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s).rows[1];console.log(r.perplexity.toFixed(3)+' '+r.kl.toFixed(4))})"; }

train() { # name flags
  local name=$1 flags=$2 dir="$out/$1"
  [ -f "$dir.distill.json" ] && [ -s "$dir.distill.json" ] && return 0
  rm -rf "$dir"
  local data=(--self-generate "$SELF")
  [[ $flags == *--data* || $flags == *--self-generate* ]] && data=()
  # shellcheck disable=SC2086 # the flags are words
  mla distill --teacher "$TEACHER" "${tok[@]}" --student "$init" --out "$dir" --tokens "$TOKENS" --seed "$SEED" \
    --eval-text "${TEXTS[0]}" --eval-every 1000000 "${data[@]}" $flags --json >"$dir.distill.json.tmp" 2>"$dir.log"
  mv "$dir.distill.json.tmp" "$dir.distill.json"
}

score() { # name flags
  local name=$1 flags=$2 dir="$out/$1"
  [ -f "$dir/result.json" ] && grep -q '"kl"' "$dir/result.json" && return 0
  local p=() k=() pk
  for t in "${TEXTS[@]}"; do pk=$(pplkl "$dir" "$t"); p+=("${pk% *}"); k+=("${pk#* }"); done
  printf '{"name":"%s","flags":"%s","ppl":[%s,%s,%s],"kl":[%s,%s,%s]}\n' "$name" "$flags" "${p[0]}" "${p[1]}" "${p[2]}" "${k[0]}" "${k[1]}" "${k[2]}" >"$dir/result.json"
}

i=0
for v in "${VARIANTS[@]}"; do
  name=${v%%|*} flags=${v#*|}
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  train "$name" "$flags" &
  i=$((i + 1))
  if [ $((i % JOBS)) -eq 0 ]; then wait; fi
done
wait
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0
for v in "${VARIANTS[@]}"; do
  name=${v%%|*} flags=${v#*|}
  [ -f "$out/$name.distill.json" ] && score "$name" "$flags"
done

tp=(); for t in "${TEXTS[@]}"; do tp+=("$(ppl "$TEACHER" "$t")"); done
ip=(); ik=(); for t in "${TEXTS[@]}"; do pk=$(pplkl "$init" "$t"); ip+=("${pk% *}"); ik+=("${pk#* }"); done
# geo. mean: of the two texts held out from every variant (calib+ce trains on stories-calib.txt).
echo "| variant (seed $SEED, $TOKENS tokens) | flags | stories-heldout | stories-heldout2 | stories-calib | geo. mean heldout, heldout2 | KL to the teacher: heldout / heldout2 / calib |"
echo "|---|---|---:|---:|---:|---:|---:|"
# row NAME FLAGS PPL1 PPL2 PPL3 [KL1 KL2 KL3]
row() { node -e "const [n,f,...v]=process.argv.slice(1);const p=v.slice(0,3),k=v.slice(3);const g=Math.sqrt(p[0]*p[1]);console.log('| '+n+' | '+(f&&f!=='-'?'\`'+f+'\`':'')+' | '+p.map((x)=>(+x).toFixed(3)).join(' | ')+' | '+g.toFixed(3)+' | '+(k.length?k.map((x)=>(+x).toFixed(4)).join(' / '):'-')+' |')" "$@"; }
row teacher "" "${tp[@]}" 0 0 0
row "conversion (no training)" "" "${ip[@]}" "${ik[@]}"
for v in "${VARIANTS[@]}"; do
  name=${v%%|*}
  f="$out/$name/result.json"
  [ -f "$f" ] || continue
  node -e "const r=JSON.parse(require('fs').readFileSync(process.argv[1],'utf8'));console.log([r.name,r.flags||'-',...r.ppl,...r.kl].join('\t'))" "$f" | while IFS=$'\t' read -r n fl a b c d e g; do row "$n" "$fl" "$a" "$b" "$c" "$d" "$e" "$g"; done
done
