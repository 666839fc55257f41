#!/usr/bin/env bash
# Configures and builds ridgeline into build/ (CUDA targets when nvcc is found; arch 90 default).
#   scripts/build.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${RIDGELINE_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
