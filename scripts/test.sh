#!/usr/bin/env bash
# The test command: setup, configure, build, then every test (GPU tests skip themselves without a
# device, each with its reason). This is what README.md shows and what .ci/run calls.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${RIDGELINE_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
