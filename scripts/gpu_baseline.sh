#!/usr/bin/env bash
# GPU baselines for runs on a GPU machine (docs/compare.md): the probe (ridgeline.gpu_profile/v1)
# and the kernel benchmarks (Google Benchmark JSON, CUDA-event time), kept per GPU model under
# bench/baselines/gpu/<gpu>/ and compared with `ridgeline compare` (which refuses a different GPU,
# driver, clocks or build type).
#   scripts/gpu_baseline.sh --update    measure this GPU and write its baseline (then commit it)
#   scripts/gpu_baseline.sh             measure and compare with this GPU's baseline; exit 1 on a
#                                       regression, 0 with a note when no baseline exists yet
# Needs a CUDA build (scripts/build.sh on a machine with nvcc) and a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RIDGELINE_BUILD_DIR:-build}
update=0
[ "${1:-}" = --update ] && update=1
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_baseline: no NVIDIA GPU here; nothing to do"
  exit 0
fi
[ -x "$build/bench/ridgeline_kernels_bench" ] || { echo "gpu_baseline: no CUDA build in $build" >&2; exit 2; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')
dir=bench/baselines/gpu/$gpu
out=out/gpu-baseline
mkdir -p "$out"
"$build/cli/ridgeline" probe --no-progress -o "$out/probe.json" >/dev/null
"$build/bench/ridgeline_kernels_bench" --benchmark_repetitions=10 \
  --benchmark_out="$out/kernels.json" --benchmark_out_format=json >/dev/null
if [ "$update" = 1 ]; then
  mkdir -p "$dir"
  cp "$out/probe.json" "$out/kernels.json" "$dir/"
  echo "gpu_baseline: wrote $dir/probe.json and $dir/kernels.json; commit them"
  exit 0
fi
if [ ! -f "$dir/probe.json" ]; then
  echo "gpu_baseline: no baseline for $gpu yet (scripts/gpu_baseline.sh --update on this GPU)"
  exit 0
fi
status=0
"$build/cli/ridgeline" compare "$dir/probe.json" "$out/probe.json" --markdown "$out/probe.md" || status=$?
"$build/cli/ridgeline" compare "$dir/kernels.json" "$out/kernels.json" --markdown "$out/kernels.md" \
  || { s=$?; [ "$status" -ne 0 ] || status=$s; }
exit "$status"
