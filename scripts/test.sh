#!/usr/bin/env bash
# The test command: setup, configure, build, then every test (GPU tests skip themselves without a
# device, each with its reason), then the CPU performance gate (scripts/perf_gate.sh: the CI
# benchmarks against bench/baselines/cpu.json; RIDGELINE_PERF_GATE=0 skips it). This is what
# README.md shows and what .ci/run calls.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${RIDGELINE_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
scripts/perf_gate.sh
