// The CI gate's benchmarks (bench/ci_bench.cpp, bench/ci_engine_bench.cpp; scripts/perf_gate.sh):
// each does `work_items` units of real work per timed iteration, and the slowdown injection of the
// gate's self-check multiplies one benchmark's units:
//   RIDGELINE_CI_BENCH_SLOWDOWN=BM_engine_scheduler_step=1.2 build/bench/ridgeline_ci_bench ...
// makes every iteration of BM_engine_scheduler_step do 12 scheduler steps instead of 10: the path
// does 20 % more of its own work (not a sleep), so the gate must call it slower
// (scripts/perf_gate.sh --check-injection; docs/compare.md, "CI gate").
// The gate counts instructions, not seconds: scripts/perf_gate.sh runs each benchmark under
// callgrind with instrumentation off (--instr-atstart=no), and timed_loop switches it on for each
// timed iteration only, so set-up and warm-up are not counted. Outside valgrind the switches are a
// few no-op instructions.
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace ridgeline::bench::ci {

// Every benchmark the injection may slow down; RIDGELINE_CI_BENCH_SLOWDOWN may name only these
// (a misspelt name is an error, not a silent no-op). Keep in step with perf_gate.sh's `covered`.
inline constexpr std::array<std::string_view, 10> k_injectable = {
    "BM_metrics_result_json_encode", "BM_metrics_prometheus_text_encode",
    "BM_engine_gpu_profile_parse",   "BM_engine_kv_alloc_free",
    "BM_engine_kv_prefix_lookup",    "BM_engine_scheduler_step",
    "BM_engine_replay_mooncake",     "BM_engine_trace_parse_mooncake",
    "BM_engine_trace_parse_azure",   "BM_plan_rate_search",
};

// Reads RIDGELINE_CI_BENCH_SLOWDOWN ("NAME=FACTOR[,NAME=FACTOR...]", FACTOR in [1, 10]); throws
// std::invalid_argument naming the bad entry. Called once by main before any benchmark runs.
void read_slowdown(const char* text);

// The units of work one iteration of `benchmark` does: base x its injected factor, rounded
// (base when not injected). Adds the counter "work_items" to the state.
std::int64_t work_items(benchmark::State& state, std::string_view benchmark, std::int64_t base);

// Callgrind's instrumentation on (begin) and off (end) around one timed iteration; end also adds
// one to counted_iterations(). No-ops outside valgrind.
void begin_counted_iteration();
void end_counted_iteration();
std::int64_t counted_iterations();

// Writes counted_iterations() to the file RIDGELINE_CI_BENCH_COUNTED names, when set (the gate
// divides the instructions it counted by it). Returns false, with a message, if it cannot.
bool write_counted_iterations();

// The timed loop of every gate benchmark: `work` is one iteration (its work_items units).
template <class Work>
void timed_loop(benchmark::State& state, Work&& work) {
  for (auto _ : state) {
    begin_counted_iteration();
    work();
    end_counted_iteration();
  }
}

}  // namespace ridgeline::bench::ci
