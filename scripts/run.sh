#!/usr/bin/env bash
# The main job: setup, build, then measure this GPU (`ridgeline probe`). Without a GPU it says what
# still works and exits 0 after checking the build.
#   scripts/run.sh [probe args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
bin=${RIDGELINE_BUILD_DIR:-build}/cli/ridgeline
mkdir -p out
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$bin" probe -o out/gpu-profile.json "$@"
  echo "run: profile written to out/gpu-profile.json"
else
  echo "run: no NVIDIA GPU here, so nothing is measured. What works without one:"
  echo "  $bin --help                  every command"
  echo "  scripts/test.sh              all CPU tests (GPU tests skip with a reason)"
  echo "  planner/profiles/*.json      measured GPU profiles, e.g. the H100's"
  "$bin" probe -o "" --no-progress || true
fi
