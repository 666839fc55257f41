#!/usr/bin/env bash
# The GPU measurements of docs/serving.md, each part writing its JSON and log into OUT_DIR:
#   scripts/serving_study.sh RIDGELINE_BIN OUT_DIR PART...
# Parts (llama-3-8b, bf16, random weights, one GPU):
#   sweep     ridgeline sweep: decode at batch 64, context 512 (the serving-overhead reference)
#   detcost   ridgeline sweep of llama-2-7b at batch 1 and 64, context 512, default then
#             --deterministic, one after the other (the deterministic mode's cost, docs/diverge.md)
#   overhead  replay: 64 requests of 448 prompt + 128 output tokens arriving at once, --no-overlap
#             (one step at a time: the host plans each step after the last one is back)
#   overlap   the same with the default overlap (the next decode step queued while one runs)
#   prefix    replay: TTFT of 7,680 cached + 256 new tokens (5 hits) against 5 cold requests
#   azure     replay: the first 240 s of data/traces/azure_llm_2023_conv.csv in real time
#   mooncake  replay: the first 180 s of the Mooncake synthetic trace (512-token hash blocks)
#   chat      replay: 60 s of multi-turn chat sessions (arrivals) with 8 shared system prompts
#   preempt   replay: a 600-block pool under a decode-heavy burst (preemption and eviction)
#   hosttier  replay: 60 s of chat sessions on a 1,500-block GPU pool with an 8 GiB host tier
#   memcheck  compute-sanitizer memcheck on a short replay of a tiny model with preemptions
#   memtests  compute-sanitizer memcheck on the GPU serving tests (preemption, cancel, host tier)
#             (RIDGELINE_GPU_TESTS: the test binary, default build/tests/ridgeline_gpu_tests)
# CHAT_SECONDS and HOSTTIER_SECONDS shorten those windows (60 s each by default).
set -uo pipefail
[ $# -ge 3 ] || { echo "usage: scripts/serving_study.sh RIDGELINE_BIN OUT_DIR PART..." >&2; exit 2; }
bin=$1 out=$2
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
run() {  # name, then the replay or sweep arguments
  local name=$1
  shift
  echo "serving_study: $name: $*" | tee -a "$out/commands.txt"
  local t0=$SECONDS
  "$bin" "$@" >"$out/$name.log" 2>&1
  echo "serving_study: $name: rc=$? in $((SECONDS - t0)) s" | tee -a "$out/commands.txt"
}
for part in "$@"; do
  case $part in
    sweep)
      run sweep_decode64 sweep --model llama-3-8b --batch 64 --context 512 --phase decode \
        -o "$out/sweep_decode64.json" ;;
    detcost)
      run det_default sweep --model llama-2-7b --batch 1,64 --context 512 --phase decode \
        -o "$out/det_default.json"
      run det_deterministic sweep --model llama-2-7b --batch 1,64 --context 512 --phase decode \
        --deterministic -o "$out/det_deterministic.json" ;;
    overhead)
      run overhead replay --model llama-3-8b --no-simulate --no-overlap \
        --generator requests=64,rate=1000000,prompt=fixed:448,output=fixed:128 \
        -o "$out/overhead.json.gz" ;;
    overlap)
      run overhead_overlap replay --model llama-3-8b --no-simulate \
        --generator requests=64,rate=1000000,prompt=fixed:448,output=fixed:128 \
        -o "$out/overhead_overlap.json.gz" ;;
    prefix)
      run prefix_warm replay --model llama-3-8b --no-simulate \
        --generator requests=6,arrival=gamma,cv=0.05,rate=0.5,system=7680,system_prompts=1,prompt=fixed:256,output=fixed:8 \
        -o "$out/prefix_warm.json.gz"
      run prefix_cold replay --model llama-3-8b --no-simulate \
        --generator requests=5,arrival=gamma,cv=0.05,rate=0.5,system=7680,system_prompts=1000000,prompt=fixed:256,output=fixed:8 \
        -o "$out/prefix_cold.json.gz" ;;
    azure)
      run azure replay --model llama-3-8b --trace "$here/data/traces/azure_llm_2023_conv.csv" \
        --duration 240 -o "$out/azure.json.gz" ;;
    mooncake)
      run mooncake replay --model llama-3-8b \
        --trace "$here/data/traces/mooncake_synthetic_trace.jsonl" --mooncake-block 512 \
        --duration 180 -o "$out/mooncake.json.gz" ;;
    chat)
      run chat replay --model llama-3-8b --duration "${CHAT_SECONDS:-60}" \
        --generator sessions=120,rate=1,turns=uniform:2:4,think=exp:5,message=lognormal:200:0.8,output=lognormal:120:0.5,system=1024,system_prompts=8 \
        -o "$out/chat.json.gz" ;;
    preempt)
      run preempt replay --model llama-3-8b --kv-blocks 600 \
        --generator requests=96,rate=200,prompt=uniform:200:900,output=fixed:384 \
        -o "$out/preempt.json.gz" ;;
    hosttier)
      run hosttier replay --model llama-3-8b --kv-blocks 1500 --host-memory 8GiB \
        --duration "${HOSTTIER_SECONDS:-60}" \
        --generator sessions=80,rate=1,turns=uniform:3:5,think=exp:4,message=lognormal:300:0.6,output=lognormal:100:0.5,system=2048,system_prompts=16 \
        -o "$out/hosttier.json.gz" ;;
    memcheck)
      echo "serving_study: memcheck" | tee -a "$out/commands.txt"
      compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" replay --model tiny-gpu \
        --kv-blocks 48 --no-simulate --host-memory 2MiB \
        --generator requests=24,rate=400,prompt=uniform:20:300,output=uniform:4:40,system=64,system_prompts=2 \
        -o "$out/memcheck_replay.json.gz" >"$out/memcheck.log" 2>&1
      echo "serving_study: memcheck: rc=$?" | tee -a "$out/commands.txt" ;;
    memtests)
      echo "serving_study: memtests" | tee -a "$out/commands.txt"
      compute-sanitizer --tool memcheck --error-exitcode 9 \
        "${RIDGELINE_GPU_TESTS:-$here/build/tests/ridgeline_gpu_tests}" --gtest_filter='Serving.*' \
        >"$out/memtests.log" 2>&1
      echo "serving_study: memtests: rc=$?" | tee -a "$out/commands.txt" ;;
    *) echo "serving_study: unknown part '$part'" >&2; exit 2 ;;
  esac
done
