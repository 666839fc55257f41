// Helpers for Google Benchmark binaries: the environment block goes into the JSON context, and GPU
// benchmarks skip with a reason when there is no device.
#pragma once

#include <benchmark/benchmark.h>

#include <optional>

namespace ridgeline::bench {

// Adds the environment block (GPU, driver, CUDA, clocks, git sha, dirty flag, host, time) to the
// benchmark context: one key per top-level field, values as JSON text.
void add_environment_context(std::optional<int> device);

// Initialises Google Benchmark, adds the environment, runs the registered benchmarks.
int run_benchmarks(int argc, char** argv, std::optional<int> device);

}  // namespace ridgeline::bench

#define RIDGELINE_BENCH_REQUIRE_GPU(state)                              \
  do {                                                                  \
    if (::ridgeline::metrics::device_count() == 0) {                    \
      (state).SkipWithError("no CUDA device");                          \
      return;                                                           \
    }                                                                   \
  } while (false)
