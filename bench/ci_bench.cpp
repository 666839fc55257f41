// CPU benchmarks of the CI performance gate (scripts/perf_gate.sh counts their instructions under
// callgrind against bench/baselines/cpu_instructions.json; timed, they compare by hand with
// `ridgeline compare --normalize-by BM_ci_known_cost`): a benchmark of known cost (the yardstick),
// result and Prometheus encoding, GPU-profile parsing; the engine and planner ones are in
// ci_engine_bench.cpp (same binary). The harness statistics (summarize, Mann-Whitney) were gate
// benchmarks once and were dropped: too small to hold to 15 % here (docs/compare.md, "CI gate").
// Run with repetitions, e.g.
//   build/bench/ridgeline_ci_bench --benchmark_repetitions=15 --benchmark_min_time=0.1
//       --benchmark_out=out/ci.json --benchmark_out_format=json
// RIDGELINE_CI_BENCH_SCALE=1.10 makes BM_ci_known_cost do 10 % more work (the compare study
// injects slowdowns this way; docs/compare.md); RIDGELINE_CI_BENCH_SLOWDOWN=BM_name=1.2 makes a
// gate benchmark do 20 % more of its work (ci_gate.hpp; the gate's self-check).
#include <benchmark/benchmark.h>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ci_gate.hpp"
#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/telemetry/measure.hpp"

namespace {

using ridgeline::bench::ci::timed_loop;
using ridgeline::bench::ci::work_items;

double g_known_cost_scale = 1.0;

// A dependent chain of integer multiply-add and xor-shift steps: no vectorisation, no closed form,
// so the time is proportional to `steps` (about 5 cycles a step: 1 Mi steps ~ 2 ms at 2.5 GHz).
std::uint64_t known_cost_kernel(std::uint64_t steps, std::uint64_t x) {
  for (std::uint64_t i = 0; i < steps; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    x ^= x >> 29;
  }
  return x;
}

void BM_ci_known_cost(benchmark::State& state) {
  const auto steps = static_cast<std::uint64_t>(std::llround(double(1 << 20) * g_known_cost_scale));
  std::uint64_t x = 42;
  for (auto _ : state) {
    x = known_cost_kernel(steps, x);
    benchmark::DoNotOptimize(x);
  }
  state.counters["steps"] = double(steps);
}
BENCHMARK(BM_ci_known_cost);

std::vector<double> lognormal_samples(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> dist(std::log(1e-3), 0.05);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// The environment block of a committed H100 result, so that the documents encoded and parsed here
// (and the instructions the gate counts) are the same on every machine.
nlohmann::json fixed_environment() {
  const std::string path =
      std::string(RIDGELINE_SOURCE_DIR) + "/docs/results/h100-sxm_prefill_4x1024.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  return nlohmann::json::parse(in).at("environment");
}

// A result document like a sweep's: environment, config and 256 rows with a measurement each.
nlohmann::json result_document() {
  using nlohmann::json;
  json rows = json::array();
  const std::vector<double> v = lognormal_samples(50, 3);
  ridgeline::bench::measurement m;
  m.seconds = v;
  m.stats = ridgeline::bench::summarize(v);
  const json measured = ridgeline::bench::to_json(m);
  for (int batch = 1; batch <= 256; ++batch) {
    rows.push_back({{"kind", "decode_step"},
                    {"batch", batch},
                    {"context", 512},
                    {"tokens_per_second", 185.0 * batch},
                    {"measurement", measured}});
  }
  return {{"schema", "ridgeline.sweep/v1"},
          {"environment", fixed_environment()},
          {"config", {{"model", "llama-2-7b"}, {"dtype", "bf16"}}},
          {"rows", rows}};
}

void BM_metrics_result_json_encode(benchmark::State& state) {
  const nlohmann::json doc = result_document();
  const std::int64_t items = work_items(state, "BM_metrics_result_json_encode", 5);
  std::size_t bytes = 0;
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      const std::string text = doc.dump(2);
      bytes += text.size();
      benchmark::DoNotOptimize(text.data());
    }
  });
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_metrics_result_json_encode);

void BM_metrics_prometheus_text_encode(benchmark::State& state) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family = prometheus::BuildHistogram()
                     .Name("ridgeline_step_duration_seconds")
                     .Help("Engine step duration by phase")
                     .Register(*registry);
  prometheus::Histogram::BucketBoundaries bounds;
  for (double b = 1e-4; b < 10; b *= 1.5) bounds.push_back(b);
  const std::vector<double> v = lognormal_samples(1000, 4);
  for (const char* phase : {"prefill", "decode", "mixed", "idle"}) {
    auto& h = family.Add({{"phase", phase}}, bounds);
    for (double x : v) h.Observe(x);
  }
  const prometheus::TextSerializer serializer;
  const std::int64_t items = work_items(state, "BM_metrics_prometheus_text_encode", 10);
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      std::ostringstream out;
      serializer.Serialize(out, registry->Collect());
      benchmark::DoNotOptimize(out.str().data());
    }
  });
}
BENCHMARK(BM_metrics_prometheus_text_encode);

void BM_engine_gpu_profile_parse(benchmark::State& state) {
  ridgeline::gpu_profile p;
  p.name = "NVIDIA H100 80GB HBM3";
  p.key = "h100-sxm";
  p.source = "measured";
  p.sm_count = 132;
  p.read_bytes_per_second = 3.1e12;
  p.datasheet_bytes_per_second = 3.35e12;
  p.peaks[ridgeline::dtype::bf16] = {780e12, 989.4e12};
  const nlohmann::json doc = result_document();
  p.environment = doc["environment"];
  p.rows = doc["rows"];
  for (auto& r : p.rows) r["kind"] = "bandwidth_candidate";  // a kind read without typed view
  const std::string text = to_json(p).dump();
  const std::int64_t items = work_items(state, "BM_engine_gpu_profile_parse", 5);
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      auto q = ridgeline::gpu_profile_from_json(nlohmann::json::parse(text));
      benchmark::DoNotOptimize(q.sm_count);
    }
  });
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * items) *
                          static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_engine_gpu_profile_parse);

}  // namespace

int main(int argc, char** argv) {
  if (const char* s = std::getenv("RIDGELINE_CI_BENCH_SCALE")) {
    char* end = nullptr;
    g_known_cost_scale = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(g_known_cost_scale > 0 && g_known_cost_scale < 100)) {
      std::fprintf(stderr,
                   "ridgeline_ci_bench: RIDGELINE_CI_BENCH_SCALE='%s' is not a factor "
                   "in (0, 100)\n",
                   s);
      return 2;
    }
  }
  try {
    ridgeline::bench::ci::read_slowdown(std::getenv("RIDGELINE_CI_BENCH_SLOWDOWN"));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "ridgeline_ci_bench: %s\n", e.what());
    return 2;
  }
  const int rc = ridgeline::bench::run_benchmarks(argc, argv, std::nullopt);
  return ridgeline::bench::ci::write_counted_iterations() ? rc : 2;
}
