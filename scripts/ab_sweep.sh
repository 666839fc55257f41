#!/usr/bin/env bash
# A/B of two ridgeline builds on one GPU: the decode sweep at context 512 (batch 1, 64, 128) and the
# prefill 4 x 1024 step, repeated REPS times with the two builds interleaved (A, B, A, B, ...), so
# clock and thermal drift fall on both sides alike. Every run's JSON and log land in OUT_DIR
# (a_<rep>_decode.json, b_<rep>_prefill.json, ...); `ridgeline compare`-style verdicts come from the
# medians of the per-run medians (docs/architecture.md, "Checking a refactor on the GPU").
#   scripts/ab_sweep.sh OLD_RIDGELINE NEW_RIDGELINE OUT_DIR [REPS=5] [PROFILE] [FIRST_REP=1]
# AB_BUDGET_SECONDS=N: start no new repetition (pair of sides) that would end after N seconds,
# judged by the slowest repetition so far (for runs that must fit a time limit).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: scripts/ab_sweep.sh OLD_BIN NEW_BIN OUT_DIR [REPS] [PROFILE]" >&2; exit 2; }
old=$1 new=$2 out=$3 reps=${4:-5}
profile=${5:-$(dirname "$0")/../perfmodel/profiles/h100-sxm.json}
first=${6:-1}
budget=${AB_BUDGET_SECONDS:-0}
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "ab_sweep: $b is not an executable" >&2; exit 2; }
done
nvidia-smi -L >/dev/null 2>&1 || { echo "ab_sweep: no NVIDIA GPU here" >&2; exit 2; }
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$out/gpu_before.csv"
start=$SECONDS slowest=0
for rep in $(seq "$first" $((first + reps - 1))); do
  if [ "$budget" -gt 0 ] && [ $((SECONDS - start + slowest)) -gt "$budget" ]; then
    echo "ab_sweep: stopping before rep $rep (time budget of ${budget}s)"
    break
  fi
  rep_start=$SECONDS
  for side in a b; do
    bin=$old
    [ "$side" = b ] && bin=$new
    "$bin" sweep --model llama-2-7b --batch 1,64,128 --context 512 --phase decode \
      --gpu "$profile" -o "$out/${side}_${rep}_decode.json" >"$out/${side}_${rep}_decode.log" 2>&1
    "$bin" sweep --model llama-2-7b --batch 4 --context 1024 --phase prefill \
      --gpu "$profile" -o "$out/${side}_${rep}_prefill.json" >"$out/${side}_${rep}_prefill.log" 2>&1
    echo "ab_sweep: rep $rep side $side done at $((SECONDS - start))s"
  done
  [ $((SECONDS - rep_start)) -gt "$slowest" ] && slowest=$((SECONDS - rep_start))
done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$out/gpu_after.csv"
