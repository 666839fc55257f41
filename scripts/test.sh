#!/usr/bin/env bash
# The test command: setup, configure, build, then every test (GPU tests skip themselves without a
# device, each with its reason), the unit tests under ASan + UBSan in build-asan/, then the CPU
# performance gate (scripts/perf_gate.sh: the CI benchmarks' instruction counts against
# bench/baselines/cpu_instructions.json; RIDGELINE_PERF_GATE=0 skips it). This is what README.md
# shows and what .ci/run calls.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${RIDGELINE_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"

# The unit tests again under AddressSanitizer + UBSan (CPU only; the KV cache and scheduler
# property tests are the point). Only the unit test binary is built, at -O1 -g1 (line tables for
# the reports' stack traces), to keep CI time down: about 40 % less compile time than -O2 -g.
asan_dir=${RIDGELINE_ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$asan_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRIDGELINE_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DRIDGELINE_SANITIZE=ON >/dev/null
cmake --build "$asan_dir" -j "$(nproc)" --target ridgeline_unit_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$asan_dir" -L unit --output-on-failure -j "$(nproc)"

scripts/perf_gate.sh
