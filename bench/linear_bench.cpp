// The engine's linear layers at Llama-2-7B shapes for decode batches, GEMV path against
// cuBLASLt, cold (weights rotated: every layer of a 32-layer stack in turn, 13 GB, far above L2):
//   build/bench/ridgeline_linear_bench --benchmark_format=json
// Counters: bytes/s of weights and % of the profile's measured read bandwidth (given by
// RIDGELINE_READ_BW in bytes/s, or the H100 figure by default).
#include <benchmark/benchmark.h>

#include <cstdlib>
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

double read_ceiling() {
  const char* e = std::getenv("RIDGELINE_READ_BW");
  return e ? std::atof(e) : 3.13e12;  // perfmodel/profiles/h100-sxm.json, read plateau
}

// One block's four linear layers, cycling over `copies` distinct weight sets so nothing is reused
// from L2 between iterations.
void BM_kernels_linear_block(benchmark::State& state) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  // path: 0 GEMV (4 loads in flight per lane), 1 GEMV (8), 2 GEMV (4) with programmatic
  // dependent launch (the engine's), 3 cuBLASLt, 4 tensor-core skinny GEMM (with PDL), 5
  // automatic (with PDL, as the engine runs it), 6 GEMV (8) with programmatic dependent launch,
  // 7 skinny GEMM with SwiGLU fused into gate_up (with PDL), 8 cuBLASLt gate_up + swiglu kernel.
  const int path = static_cast<int>(state.range(1));
  const int layer_only = static_cast<int>(state.range(2));  // -1: all four layers
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
  using P = cuda::linear_path;
  const bool gemv_only = path <= 2 || path == 6;
  cuda::linear_options lo;
  lo.force = gemv_only                  ? P::gemv
             : path == 3 || path == 8   ? P::cublas
             : path == 4 || path == 7   ? P::skinny
                                        : P::automatic;
  cuda::linear_runner runner(lo);
  // range(3): the GEMV's k splits (0 = the launcher's choice); the GEMV paths call cuda::gemv
  // directly with their unroll and splits.
  const int splits = static_cast<int>(state.range(3));
  // Programmatic dependent launch: the GEMV (paths 2, 6), skinny GEMM (4, 7), automatic (5, as the
  // engine runs it) and the swiglu kernel after cuBLASLt's gate_up (8).
  const bool pdl = path == 2 || path == 6 || path == 4 || path == 5 || path == 7 || path == 8;
  const cuda::gemv_options gemv{path == 1 || path == 6 ? 8 : 4, splits, pdl};
  const bool fused = path == 7 || path == 8;
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
BENCHMARK(BM_kernels_linear_block)
    ->ArgNames({"tokens", "path", "layer", "ksplit"})
    ->ArgsProduct({{1}, {0}, {-1, 0, 1, 2, 3}, {0, 1, 2, 4}})
    ->ArgsProduct({{1}, {2, 3, 4, 6}, {-1}, {0}})
    ->ArgsProduct({{1}, {1}, {-1, 0, 1, 2, 3}, {0}})
    ->ArgsProduct({{2, 4, 8, 16, 32, 64, 128}, {3, 5}, {-1}, {0}})
    ->ArgsProduct({{2, 8, 16, 32, 64}, {4}, {-1}, {0}})
    ->ArgsProduct({{64}, {3, 5}, {0, 1, 2, 3}, {0}})
    ->ArgsProduct({{64}, {4}, {0, 1, 2, 3}, {0}})
    ->ArgsProduct({{16, 32, 64}, {7, 8}, {-1, 2}, {0}})
    ->ArgsProduct({{256}, {3}, {-1}, {0}})
    ->UseManualTime();

}  // namespace

int main(int argc, char** argv) { return ridgeline::bench::run_benchmarks(argc, argv, 0); }
