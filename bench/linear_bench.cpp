// The engine's linear layers at Llama-2-7B shapes for decode batches, GEMV path against
// cuBLASLt, cold (weights rotated: every layer of a 32-layer stack in turn, 13 GB, far above L2),
// and the block with its RMSNorms fused into the GEMVs or not (BM_kernels_linear_norm_block):
//   build/bench/ridgeline_linear_bench --benchmark_format=json
// Counters: bytes/s of weights and % of the profile's measured read bandwidth (given by
// RIDGELINE_READ_BW in bytes/s, or the H100 figure by default).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "cuda/check.hpp"
#include "cuda/linear.hpp"
#include "cuda/ops.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/metrics/device.hpp"

namespace {

using namespace ridgeline;

struct layer_shape {
  int out, in;
};
constexpr layer_shape k_layers[] = {{12288, 4096}, {4096, 4096}, {22016, 4096}, {4096, 11008}};

double read_ceiling() {
  const char* e = std::getenv("RIDGELINE_READ_BW");
  return e ? std::atof(e) : 3.13e12;  // planner/profiles/h100-sxm.json, read plateau
}

// One block's four linear layers, cycling over `copies` distinct weight sets so nothing is reused
// from L2 between iterations.
void BM_kernels_linear_block(benchmark::State& state) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  // path: 0 GEMV (4 loads in flight per lane), 1 GEMV (8), 2 GEMV (4) with programmatic
  // dependent launch (the engine's), 3 cuBLASLt, 4 tensor-core skinny GEMM (with PDL), 5
  // automatic (with PDL, as the engine runs it), 6 GEMV (8) with programmatic dependent launch.
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
  cuda::linear_runner runner;
  using P = cuda::linear_runner::path;
  runner.set_path(path <= 2 || path == 6 ? P::gemv
                  : path == 3           ? P::cublas
                  : path == 4           ? P::skinny
                                        : P::automatic);
  // range(3): the GEMV's k splits, or the skinny GEMM's splits (0 = the launcher's choice).
  const int splits = static_cast<int>(state.range(3));
  runner.set_gemv_options({path == 1 || path == 6 ? 8 : 4, path == 4 ? 0 : splits,
                           path == 2 || path == 6 || path == 4 || path == 5});
  runner.set_skinny_splits(path == 4 ? splits : 0);
  if (layer_only >= 0) {
    block_bytes = std::size_t(k_layers[layer_only].out) * k_layers[layer_only].in * 2;
  }
  auto run_block = [&](int c) {
    for (int l = 0; l < 4; ++l) {
      if (layer_only >= 0 && l != layer_only) continue;
      runner.run({x.data<bf16_bits>(), weights[c * 4 + l].data<bf16_bits>(), y.data(), false, tokens,
                  k_layers[l].in, k_layers[l].out},
                 s.get());
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
    ->ArgsProduct({{64}, {4}, {0, 1, 2, 3}, {0, 1, 2, 3, 4, 8}})
    ->ArgsProduct({{256}, {3}, {-1}, {0}})
    ->UseManualTime();

// The block's four layers with their two RMSNorms as the engine runs them at decode: rms_norm +
// qkv GEMV, o GEMV, rms_norm + gate_up GEMV with SwiGLU, down GEMV (fused 0), or the same with
// each norm in the prologue of the GEMV after it (fused 1: gemv_norm, gemv_norm_swiglu; one
// launch less per norm), through linear_runner::run_norm as the engine calls it. The residual
// alternates between two buffers and each norm adds the last GEMV's output, as in the decoder.
// pdl 1 is the engine's setting (every kernel, the norms included, launched with programmatic
// dependent launch). Weights rotate over 8 copies (cold); before timing, one block fused and one
// unfused from the same state must give the same bits (else the case fails).
//   build/bench/ridgeline_linear_bench --benchmark_filter=norm_block
void BM_kernels_linear_norm_block(benchmark::State& state) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  const bool fused = state.range(1) != 0, pdl = state.range(2) != 0;
  constexpr int hidden = 4096, inter = 11008, copies = 8;
  cuda::stream s;
  std::vector<cuda::device_buffer> weights, norms;
  std::size_t block_bytes = 0;
  for (int c = 0; c < copies; ++c) {
    for (const auto& L : k_layers) {
      weights.emplace_back(std::size_t(L.out) * L.in * 2);
      cuda::fill_uniform(weights.back().data(), dtype::bf16, std::size_t(L.out) * L.in,
                         c * 7 + L.out, 0.05f, s.get());
      if (c == 0) block_bytes += weights.back().bytes();
    }
    for (int n = 0; n < 2; ++n) {
      norms.emplace_back(std::size_t(hidden) * 2);
      cuda::fill_uniform(norms.back().data(), dtype::bf16, hidden, 1000 + c * 2 + n, 0.1f, s.get(),
                         1.0f);
    }
  }
  const auto rows = static_cast<std::size_t>(tokens);
  cuda::device_buffer residual[2] = {cuda::device_buffer(rows * hidden * 2),
                                     cuda::device_buffer(rows * hidden * 2)};
  cuda::device_buffer out(rows * hidden * 2), xn(rows * hidden * 2), qkv(rows * 12288 * 2),
      attn(rows * hidden * 2), gate_up(rows * 2 * inter * 2), act(rows * inter * 2);
  cuda::fill_uniform(residual[0].data(), dtype::bf16, rows * hidden, 1, 1.0f, s.get());
  cuda::fill_uniform(out.data(), dtype::bf16, rows * hidden, 2, 1.0f, s.get());
  cuda::fill_uniform(attn.data(), dtype::bf16, rows * hidden, 3, 1.0f, s.get());
  cuda::linear_runner runner;
  runner.set_path(cuda::linear_runner::path::gemv);
  runner.set_gemv_options({4, 0, pdl});
  const bool pdl_before = cuda::pdl_enabled();
  cuda::pdl_enabled() = pdl;  // rms_norm's launches, as the engine sets them
  int cur = 0;                // which residual buffer holds the residual
  auto bf = [](cuda::device_buffer& b) { return b.data<bf16_bits>(); };
  auto run_block = [&](int c) {
    auto* w = &weights[std::size_t(c) * 4];
    auto* g = &norms[std::size_t(c) * 2];
    runner.run_norm({bf(out), bf(residual[cur]), bf(g[0]), bf(xn), tokens, hidden, 1e-5f,
                     bf(residual[1 - cur])},
                    {bf(xn), bf(w[0]), qkv.data(), false, tokens, hidden, 12288}, s.get());
    cur = 1 - cur;
    runner.run({bf(attn), bf(w[1]), out.data(), false, tokens, hidden, hidden}, s.get());
    runner.run_norm_swiglu({bf(out), bf(residual[cur]), bf(g[1]), bf(xn), tokens, hidden, 1e-5f,
                            bf(residual[1 - cur])},
                           {bf(xn), bf(w[2]), gate_up.data(), false, tokens, hidden, 2 * inter},
                           {bf(gate_up), bf(act), tokens, inter}, s.get());
    cur = 1 - cur;
    runner.run({bf(act), bf(w[3]), out.data(), false, tokens, inter, hidden}, s.get());
  };
  // Validation: one block each way from the same residual and layer output.
  std::vector<bf16_bits> got[2];
  cuda::device_buffer saved_res(rows * hidden * 2), saved_out(rows * hidden * 2);
  RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(saved_res.data(), residual[0].data(), saved_res.bytes(),
                                       cudaMemcpyDeviceToDevice, s.get()));
  RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(saved_out.data(), out.data(), saved_out.bytes(),
                                       cudaMemcpyDeviceToDevice, s.get()));
  for (int way = 0; way < 2; ++way) {
    RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(residual[0].data(), saved_res.data(), saved_res.bytes(),
                                         cudaMemcpyDeviceToDevice, s.get()));
    RIDGELINE_CUDA_CHECK(cudaMemcpyAsync(out.data(), saved_out.data(), saved_out.bytes(),
                                         cudaMemcpyDeviceToDevice, s.get()));
    cur = 0;
    runner.set_fuse_norm(way == 0);
    run_block(0);
    s.synchronize();
    std::vector<bf16_bits> host(2 * rows * hidden);
    RIDGELINE_CUDA_CHECK(cudaMemcpy(host.data(), out.data(), out.bytes(), cudaMemcpyDeviceToHost));
    RIDGELINE_CUDA_CHECK(cudaMemcpy(host.data() + rows * hidden, residual[cur].data(),
                                    residual[cur].bytes(), cudaMemcpyDeviceToHost));
    got[way] = std::move(host);
  }
  if (got[0] != got[1]) {
    cuda::pdl_enabled() = pdl_before;
    state.SkipWithError("fused norm + GEMV block differs from rms_norm + GEMV");
    return;
  }
  runner.set_fuse_norm(fused);
  for (int c = 0; c < copies; ++c) run_block(c);  // warm-up
  cuda::event_timer timer;
  int c = 0;
  for (auto _ : state) {
    timer.start(s.get());
    run_block(c);
    timer.stop(s.get());
    state.SetIterationTime(timer.seconds());
    c = (c + 1) % copies;
  }
  cuda::pdl_enabled() = pdl_before;
  state.SetBytesProcessed(
      static_cast<std::int64_t>(static_cast<double>(state.iterations()) * double(block_bytes)));
  state.counters["pct_of_read_bw"] = benchmark::Counter(
      100.0 * double(block_bytes) / read_ceiling(), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_kernels_linear_norm_block)
    ->ArgNames({"tokens", "fused", "pdl"})
    ->ArgsProduct({{1}, {0, 1}, {0, 1}})
    ->ArgsProduct({{2, 8}, {0, 1}, {1}})
    ->UseManualTime();

}  // namespace

int main(int argc, char** argv) { return ridgeline::bench::run_benchmarks(argc, argv, 0); }
