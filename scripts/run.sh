#!/usr/bin/env bash
# The main job: setup, build, then measure and report.
#   On a GPU machine: probe this GPU (ceilings, ridge points), the measured roofline, a short
#   decode sweep with live /metrics, the KV simulation of the bundled Mooncake trace on the
#   measured profile, a minute of the Azure trace served for real (ridgeline replay), and a
#   capacity plan.
#   Without a GPU: the KV simulation and the plan from the embedded H100 profile
#   (perfmodel/profiles/h100-sxm.json, measured), and the serving loop on the cpu executor.
# Either way it ends with one self-contained HTML report, out/report.html, and prints its path.
#   scripts/run.sh
# RIDGELINE_BUILD_DIR picks the build folder (build); RIDGELINE_METRICS_PORT the port of the live
# /metrics endpoint during the sweep (9464, the port every command's --metrics-address examples
# and dashboards/prometheus.yml use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
bin=${RIDGELINE_BUILD_DIR:-build}/cli/ridgeline
out=out
mkdir -p "$out"
results=()

gpu=perfmodel/profiles/h100-sxm.json
on_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "run: probing this GPU (ridgeline probe)"
  code=0
  "$bin" probe -o "$out/gpu-profile.json" || code=$?
  if [ $code -eq 0 ]; then
    on_gpu=1
    gpu=$out/gpu-profile.json
  elif [ $code -eq 3 ]; then
    echo "run: the GPU is not usable by this build (see above); going on without it"
  else
    exit $code
  fi
fi
results+=("$gpu")

if [ $on_gpu -eq 1 ]; then
  echo "run: measured roofline (ridgeline roofline)"
  if "$bin" roofline -o "$out/roofline.json"; then
    results+=("$out/roofline.json")
  else
    echo "run: ridgeline roofline failed (above); the report goes on without it"
  fi
  port=${RIDGELINE_METRICS_PORT:-9464}
  metrics=(--metrics-address "127.0.0.1:$port")
  echo "run: live metrics during the sweep at http://127.0.0.1:$port/metrics"
  echo "run: short decode sweep (ridgeline sweep)"
  "$bin" sweep --gpu "$gpu" --batch 1,8,64 --context 512 --phase decode "${metrics[@]}" \
    -o "$out/sweep.json"
  results+=("$out/sweep.json")
else
  echo "run: no usable NVIDIA GPU here: nothing is measured; the KV simulation (and the plan) use"
  echo "run: the embedded H100 profile ($gpu, measured on an H100 SXM)"
fi

# Two KV runs: the bundled Mooncake trace (a cluster's trace replayed on one GPU: its point is the
# hit rate against capacity, as in the Mooncake paper) and a multi-turn chat workload sized for
# one GPU, whose latency CDFs show what a small cache costs.
echo "run: KV cache simulation of the bundled Mooncake trace (ridgeline kv)"
"$bin" kv --trace data/traces/mooncake_synthetic_trace.jsonl --block-size 512 --model llama-3-70b \
  --max-model-len 0 --gpu "$gpu" --capacity unlimited,50%,20%,10%,5%,2%,1% -o "$out/kv-mooncake.json"
results+=("$out/kv-mooncake.json")
echo "run: KV cache simulation of a generated multi-turn chat workload (ridgeline kv)"
"$bin" kv --generator sessions=400,turns=uniform:2:8,think=exp:30,message=lognormal:300:0.8,output=lognormal:200:0.6,system=1024,system_prompts=4,rate=2,seed=1 \
  --model llama-3-8b --gpu "$gpu" --capacity 1GiB,2GiB,4GiB,8GiB,16GiB,32GiB -o "$out/kv-chat.json"
results+=("$out/kv-chat.json")

# Serving for real: the first minute of the Azure conversation trace through the serving loop on
# this GPU (llama-3-8b, random weights); without a GPU, the same loop on the cpu executor with the
# tiny model (it says so), on a short generated workload.
if [ $on_gpu -eq 1 ]; then
  echo "run: serving the first 60 s of the Azure conversation trace on this GPU (ridgeline replay)"
  replay=(--trace data/traces/azure_llm_2023_conv.csv --duration 60 --model llama-3-8b)
else
  echo "run: the serving loop on the cpu executor, tiny model (ridgeline replay --cpu)"
  replay=(--cpu --generator requests=60,rate=20,prompt=uniform:16:200,output=uniform:4:32,system=64,system_prompts=4)
fi
if "$bin" replay "${replay[@]}" --gpu "$gpu" -o "$out/replay.json.gz"; then
  results+=("$out/replay.json.gz")
else
  echo "run: ridgeline replay failed (above); the report goes on without it"
fi

echo "run: capacity plan (ridgeline plan)"
# Llama-3-8B on the Azure conversation trace, 2 s TTFT and 50 ms TPOT at p99, 20 requests/s.
if "$bin" plan --model llama-3-8b --gpu h100-sxm,h200,a100-80gb,l40s,l4 \
    --workload data/traces/azure_llm_2023_conv.csv --slo ttft_p99=2s,tpot_p99=50ms --qps 20 \
    --price h100-sxm=2.5,h200=3.5,a100-80gb=1.8,l40s=1.2,l4=0.8 --requests 600 \
    -o "$out/plan.json"; then
  results+=("$out/plan.json")
else
  echo "run: ridgeline plan failed (above); the report goes on without it"
fi

"$bin" report "${results[@]}" --title "ridgeline report: $(basename "$gpu" .json)" \
  -o "$out/report.html"
echo "run: report at $(cd "$out" && pwd)/report.html"
