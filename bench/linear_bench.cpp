// The engine's linear layers at Llama-2-7B shapes for decode batches, GEMV path against
// cuBLASLt, cold (weights rotated: every layer of a 32-layer stack in turn, 13 GB, far above L2):
//   build/bench/ridgeline_linear_bench --benchmark_format=json
// Counters: bytes/s of weights and % of the profile's measured read bandwidth (given by
// RIDGELINE_READ_BW in bytes/s, or the H100 figure by default).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/linear.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace {

using namespace ridgeline;

struct layer_shape {
  int out, in;
};
constexpr layer_shape k_layers[] = {{12288, 4096}, {4096, 4096}, {22016, 4096}, {4096, 11008}};
constexpr const char* k_layer_names[] = {"qkv", "o", "gate_up", "down"};

// How a block's layers are run; the benchmark's name carries the path's name
// ("BM_kernels_linear_block/path:skinny_pdl/layer:block/tokens:64/ksplit:0").
struct path_case {
  const char* name;
  cuda::linear_path force;
  int gemv_unroll;  // loads in flight per lane on the GEMV paths (they call cuda::gemv directly)
  bool pdl;         // programmatic dependent launch, as the engine runs its kernels
  bool fused;       // gate_up with SwiGLU: fused into the skinny GEMM, or cuBLASLt + swiglu kernel
};
using P = cuda::linear_path;
constexpr path_case k_paths[] = {
    {"gemv4", P::gemv, 4, false, false},
    {"gemv8", P::gemv, 8, false, false},
    {"gemv4_pdl", P::gemv, 4, true, false},
    {"gemv8_pdl", P::gemv, 8, true, false},
    {"cublas", P::cublas, 4, false, false},
    {"skinny_pdl", P::skinny, 4, true, false},
    {"auto_pdl", P::automatic, 4, true, false},  // the engine's automatic choice
    {"skinny_swiglu_pdl", P::skinny, 4, true, true},
    {"cublas_swiglu_pdl", P::cublas, 4, true, true},
};
const path_case& path_named(std::string_view n) {
  for (const auto& p : k_paths) {
    if (n == p.name) return p;
  }
  throw std::logic_error("linear_bench: no path named " + std::string(n));
}

double read_ceiling() {
  const char* e = std::getenv("RIDGELINE_READ_BW");
  return e ? std::atof(e) : 3.13e12;  // perfmodel/profiles/h100-sxm.json, read plateau
}

// One block's four linear layers (or one of them: layer >= 0), cycling over `copies` distinct
// weight sets so nothing is reused from L2 between iterations.
void BM_kernels_linear_block(benchmark::State& state, const path_case& path, int layer_only) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  constexpr int copies = 8;  // 8 x 405 MB
  cuda::stream s;
  std::vector<cuda::device_buffer> weights;
  std::size_t block_bytes = 0;
  for (int c = 0; c < copies; ++c) {
    for (const auto& L : k_layers) {
      weights.emplace_back(std::size_t(L.out) * L.in * 2);
      cuda::fill_uniform(weights.back().data(), dtype::bf16, std::size_t(L.out) * L.in, c * 7 + L.out, 0.05f, s.get());
      if (c == 0) block_bytes += weights.back().bytes();
    }
  }
  cuda::device_buffer x(std::size_t(tokens) * 11008 * 2), y(std::size_t(tokens) * 22016 * 2);
  cuda::fill_uniform(x.data(), dtype::bf16, std::size_t(tokens) * 11008, 1, 1.0f, s.get());
  const bool gemv_only = path.force == P::gemv;
  cuda::linear_options lo;
  lo.force = path.force;
  cuda::linear_runner runner(lo);
  // range(1): the GEMV's k splits (0 = the launcher's choice).
  const int splits = static_cast<int>(state.range(1));
  const bool pdl = path.pdl;
  const cuda::gemv_options gemv{path.gemv_unroll, splits, pdl};
  const bool fused = path.fused;
  cuda::device_buffer act(std::size_t(tokens) * 11008 * 2);
  if (layer_only >= 0) {
    block_bytes = std::size_t(k_layers[layer_only].out) * k_layers[layer_only].in * 2;
  }
  auto run_block = [&](int c) {
    for (int l = 0; l < 4; ++l) {
      if (layer_only >= 0 && l != layer_only) continue;
      const linear_params p{x.data<bf16_bits>(), weights[c * 4 + l].data<bf16_bits>(), y.data(),
                            false, tokens, k_layers[l].in, k_layers[l].out};
      if (fused && l == 2) {
        runner.run_swiglu(p, {y.data<bf16_bits>(), act.data<bf16_bits>(), tokens, 11008}, s.get(),
                          pdl);
      } else if (gemv_only) {
        cuda::gemv(p, s.get(), gemv);
      } else {
        runner.run(p, s.get(), pdl);
      }
    }
  };
  for (int c = 0; c < copies; ++c) run_block(c);  // warm-up, plans
  cuda::event_timer timer;
  int c = 0;
  for (auto _ : state) {
    timer.start(s.get());
    run_block(c);
    timer.stop(s.get());
    state.SetIterationTime(timer.seconds());
    c = (c + 1) % copies;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * double(block_bytes)));
  state.counters["pct_of_read_bw"] = benchmark::Counter(
      100.0 * double(block_bytes) / read_ceiling(), benchmark::Counter::kIsIterationInvariantRate);
}
// What is measured: {path, layers (-1: the block), tokens, GEMV k splits}.
struct linear_case {
  const char* path;
  std::vector<int> layers, tokens, splits;
};
void register_linear_benchmarks() {
  const std::vector<int> all_layers = {-1, 0, 1, 2, 3};
  const linear_case cases[] = {
      {"gemv4", all_layers, {1}, {0, 1, 2, 4}},
      {"gemv4_pdl", {-1}, {1}, {0}},
      {"cublas", {-1}, {1}, {0}},
      {"skinny_pdl", {-1}, {1}, {0}},
      {"gemv8_pdl", {-1}, {1}, {0}},
      {"gemv8", all_layers, {1}, {0}},
      {"cublas", {-1}, {2, 4, 8, 16, 32, 64, 128}, {0}},
      {"auto_pdl", {-1}, {2, 4, 8, 16, 32, 64, 128}, {0}},
      {"skinny_pdl", {-1}, {2, 8, 16, 32, 64}, {0}},
      {"cublas", {0, 1, 2, 3}, {64}, {0}},
      {"auto_pdl", {0, 1, 2, 3}, {64}, {0}},
      {"skinny_pdl", {0, 1, 2, 3}, {64}, {0}},
      {"skinny_swiglu_pdl", {-1, 2}, {16, 32, 64}, {0}},
      {"cublas_swiglu_pdl", {-1, 2}, {16, 32, 64}, {0}},
      {"cublas", {-1}, {256}, {0}},
  };
  for (const auto& c : cases) {
    const path_case& path = path_named(c.path);
    for (const int layer : c.layers) {
      const std::string bench_name = std::string("BM_kernels_linear_block/path:") + path.name +
                                     "/layer:" + (layer < 0 ? "block" : k_layer_names[layer]);
      benchmark::RegisterBenchmark(bench_name.c_str(), BM_kernels_linear_block, std::cref(path),
                                   layer)
          ->ArgNames({"tokens", "ksplit"})
          ->ArgsProduct({std::vector<std::int64_t>(c.tokens.begin(), c.tokens.end()),
                         std::vector<std::int64_t>(c.splits.begin(), c.splits.end())})
          ->UseManualTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_linear_benchmarks();
  return ridgeline::bench::run_benchmarks(argc, argv, 0);
}
