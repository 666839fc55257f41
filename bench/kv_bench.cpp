// CPU benchmarks of the host half of the engine: block allocate + free, the longest-prefix lookup
// of a 4k-token prompt, and a full replay of the Azure conversation trace through scheduler, KV
// manager and simulated executor.
//   taskset -c 0 build-cpu/bench/ridgeline_kv_bench --benchmark_repetitions=5
//       --benchmark_out=docs/results/kv_cpu.json --benchmark_out_format=json
// Targets (issue 3): >= 20 M allocate+free pairs/s, <= 5 us per 4k lookup, replay < 3 s.
#include <benchmark/benchmark.h>

#include <string>

#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

namespace {

using namespace ridgeline;

// One iteration = 64 allocations then 64 frees (items = 64 allocate+free pairs), so the free
// list is exercised beyond a single push/pop.
void BM_engine_kv_alloc_free(benchmark::State& state) {
  block_pool pool(65536);
  block_id ids[64];
  // Materialize every block once so the timed loop measures steady state.
  for (int round = 0; round < 1024; ++round) {
    for (auto& b : ids) b = *pool.allocate();
    for (auto b : ids) pool.unref(b);
  }
  for (auto _ : state) {
    for (auto& b : ids) b = *pool.allocate();
    benchmark::DoNotOptimize(ids);
    for (auto b : ids) pool.unref(b);
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.counters["target_items_per_second"] = 20e6;
}
BENCHMARK(BM_engine_kv_alloc_free);

// A 4096-token prompt whose 256 blocks (block size 16) are all cached: the lookup hashes every
// block and finds it (the longest walk). Cache holds other prompts too, so the index is not tiny.
void BM_engine_kv_prefix_lookup_4k(benchmark::State& state) {
  const std::int32_t bs = 16;
  kv_cache_config c;
  c.block_tokens = bs;
  c.num_blocks = 65536;
  kv_cache_manager kv(c);
  std::vector<token_id> prompt;
  for (int p = 0; p < 32; ++p) {
    std::vector<token_id> t(4096);
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = static_cast<token_id>((i * 2654435761u + static_cast<std::size_t>(p) * 977) % 32000);
    }
    const seq_id s = kv.create_sequence();
    kv.append(s, t);
    kv.free_sequence(s);
    if (p == 17) prompt = t;
  }
  std::int64_t matched = 0;
  for (auto _ : state) {
    const prefix_match m = kv.lookup(prompt, 4096);
    matched = m.tier1_blocks;
    benchmark::DoNotOptimize(matched);
  }
  if (matched != 256) state.SkipWithError("lookup did not match the whole prompt");
  state.SetItemsProcessed(state.iterations() * 4096);  // tokens looked up
  state.counters["target_seconds"] = 5e-6;
}
BENCHMARK(BM_engine_kv_prefix_lookup_4k);

// The whole Azure conv trace (loaded once, outside the timing) replayed with Llama-2-7B shapes
// on a datasheet H100 SXM, 16-token blocks, a 40 GiB KV budget, prefix caching on.
void BM_engine_replay_azure_conv(benchmark::State& state) {
  const std::string path =
      std::string(RIDGELINE_SOURCE_DIR) + "/data/traces/azure_llm_2023_conv.csv";
  const workload w = load_azure_trace(path);
  const auto& m = model_preset_by_name("llama-2-7b");
  // The datasheet entry on purpose (not resolve_gpu's measured profile): kv_cpu.json's figures.
  const gpu_profile g = planner::datasheet_profile(*datasheet_by_key("h100-sxm"));
  const roofline_step_time_model model(m, g);
  simulation_config c;
  c.kv =
      make_kv_cache_config(m, dtype::bf16, 16, blocks_for_budget(m, dtype::bf16, 16, 40LL << 30));
  c.scheduler.max_model_len = 0;  // replay every request, even those longer than 4k context
  std::int64_t finished = 0, steps = 0;
  for (auto _ : state) {
    const simulation_result r = simulate(w, c, model);
    finished = r.finished;
    steps = r.steps;
  }
  state.counters["requests"] = static_cast<double>(w.requests.size());
  state.counters["finished"] = static_cast<double>(finished);
  state.counters["steps"] = static_cast<double>(steps);
  state.counters["target_seconds"] = 3.0;
}
BENCHMARK(BM_engine_replay_azure_conv)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

int main(int argc, char** argv) {
  return ridgeline::bench::run_benchmarks(argc, argv, std::nullopt);
}
