// The engine's linear layers at Llama-2-7B shapes for decode batches, GEMV path against
// cuBLASLt, cold (weights rotated: every layer of a 32-layer stack in turn, 13 GB, far above L2):
//   build/bench/ridgeline_linear_bench --benchmark_format=json
// Counters: bytes/s of weights and % of the profile's measured read bandwidth (given by
// RIDGELINE_READ_BW in bytes/s, or the H100 figure by default).
// BM_kernels_quant_linear_block: the same block with quantized weights (kernels/cuda/quant_gemv.cu)
// per format and token count, with the bf16 path (the engine's automatic choice) timed in the same
// iterations, so the speedup comes from one run (docs/kernels.md):
//   build/bench/ridgeline_linear_bench --benchmark_filter='BM_kernels_quant_linear_block/'
// BM_kernels_quant_linear_crossover: the same block through the engine's linear runner
// (linear_runner::run_quant) with each path forced (linear_options::quant_force): the quantized
// GEMV in 64-token slices against dequantize-to-bf16 + the bf16 GEMM, at 64 ... 512 tokens, both
// timed cold in every iteration; where the dequantize path starts winning is the crossover that
// k_quant_sliced_max_tokens (kernels/cuda/linear.hpp) should sit below (docs/kernels.md):
//   build/bench/ridgeline_linear_bench --benchmark_filter='BM_kernels_quant_linear_crossover/'
#include <algorithm>
#include <cmath>
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/linear.hpp"
#include "cuda/memory.hpp"
#include "cuda/quant_gemv.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant_packed.hpp"
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
// --- Quantized weights (quant_gemv.cu) against bf16, one run ------------------------------------

// Formats as the engine would load them (quant_pack.hpp's kinds); GGUF Q4_0 and Q8_0 are repacked
// to int4 / int8 groups of 32 with fp32 scales (and zero point 8 for Q4_0).
struct quant_case {
  const char* name;
  packed_quant_kind kind;
  int group_size;
};
constexpr quant_case k_quant_cases[] = {
    {"int4_g128", packed_quant_kind::int4_group, 128},
    {"q4_0", packed_quant_kind::int4_group, 32},
    {"q8_0", packed_quant_kind::int8_group, 32},
    {"int8_channel", packed_quant_kind::int8_channel, 0},
    {"fp8_channel", packed_quant_kind::fp8_channel, 0},
};
const quant_case& quant_case_named(std::string_view n) {
  for (const auto& q : k_quant_cases) {
    if (n == q.name) return q;
  }
  throw std::logic_error("linear_bench: no quantized format named " + std::string(n));
}

// One packed layer on the device, random codes and scales (performance depends on the shapes).
struct quant_layer {
  packed_quant_view view;
  cuda::device_buffer data, scales, zeros;
};
quant_layer make_quant_layer(const quant_case& q, const layer_shape& L, std::uint64_t seed,
                             cudaStream_t s) {
  quant_layer l;
  l.view.kind = q.kind;
  l.view.rows = L.out;
  l.view.cols = L.in;
  l.view.group_size = q.group_size;
  l.data = cuda::device_buffer(l.view.data_bytes());
  l.scales = cuda::device_buffer(l.view.scale_count() * 4);
  // int8 fill: every byte but 0x80; for fp8 a few codes are NaN patterns, which the kernel
  // decodes to +-480 (finite), so the outputs stay finite.
  cuda::fill_uniform(l.data.data(), dtype::int8, l.data.bytes(), seed, 1.0f, s);
  cuda::fill_uniform(l.scales.data(), dtype::fp32, l.view.scale_count(), seed + 1, 0.01f, s);
  if (l.view.zero_bytes() > 0) {
    l.zeros = cuda::device_buffer(l.view.zero_bytes());
    cuda::fill_uniform(l.zeros.data(), dtype::int8, l.zeros.bytes(), seed + 2, 1.0f, s);
  }
  l.view.data = l.data.data<std::uint8_t>();
  l.view.scales = l.scales.data<float>();
  l.view.zeros = l.view.zero_bytes() > 0 ? l.zeros.data<std::uint8_t>() : nullptr;
  return l;
}

// The timed region, one owner for both paths: a read-only pass over twice the L2 (so the L2 holds
// no weights and no dirty lines, and the GPU is busy while the host enqueues the timed launches),
// then CUDA events around `work`. Seconds between the events.
class cold_timer {
 public:
  cold_timer() : m_flush(std::size_t(2) * l2_bytes()), m_sink(4) {}
  template <class Work>
  double time(cudaStream_t s, Work&& work) {
    cuda::bandwidth_launch b;
    b.bytes = m_flush.bytes();
    b.hint = cuda::cache_hint::normal;
    cuda::launch_read(m_flush.data(), m_sink.data<std::uint32_t>(), b, s);
    m_timer.start(s);
    work();
    m_timer.stop(s);
    return m_timer.seconds();
  }

 private:
  static std::size_t l2_bytes() {
    int device = 0, l2 = 0;
    RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
    RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    return static_cast<std::size_t>(l2 > 0 ? l2 : 64 << 20);
  }
  cuda::device_buffer m_flush, m_sink;
  cuda::event_timer m_timer;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One Llama-2-7B block's four linears (or one: layer >= 0) with quantized weights, against the
// bf16 path (linear_runner's automatic choice with PDL: GEMV at 1 token, skinny GEMM from 2) on
// the same shapes, each iteration timing both (cold, weights rotated over 8 copies). The reported
// time is the quantized block's; counters: bytes moved (packed weights + scales + zeros +
// activations; the outputs, tokens x rows x 2 bytes, are not counted), % of the read ceiling,
// the floor (bytes / ceiling), and the bf16 block's median time and the speedup (median / median).
// range: {tokens, stages (0: default), CTAs per SM (0: default)}.
void BM_kernels_quant_linear_block(benchmark::State& state, const quant_case& q, int layer_only) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  cuda::quant_gemv_options o;
  o.stages = static_cast<int>(state.range(1));
  o.ctas_per_sm = static_cast<int>(state.range(2));
  constexpr int copies = 8;
  cuda::stream s;
  std::vector<quant_layer> qw;
  std::vector<cuda::device_buffer> bw;
  std::size_t quant_bytes = 0, bf16_bytes = 0;
  for (int c = 0; c < copies; ++c) {
    for (int l = 0; l < 4; ++l) {
      const layer_shape& L = k_layers[l];
      qw.push_back(make_quant_layer(q, L, std::uint64_t(100 * c + 10 * l), s.get()));
      bw.emplace_back(std::size_t(L.out) * L.in * 2);
      cuda::fill_uniform(bw.back().data(), dtype::bf16, std::size_t(L.out) * L.in, c * 7 + L.out,
                         0.05f, s.get());
      if (c == 0 && (layer_only < 0 || l == layer_only)) {
        const std::size_t x_bytes = std::size_t(tokens) * L.in * 2;
        quant_bytes += qw.back().view.bytes() + x_bytes;
        bf16_bytes += bw.back().bytes() + x_bytes;
      }
    }
  }
  cuda::device_buffer x(std::size_t(tokens) * 11008 * 2), y(std::size_t(tokens) * 22016 * 2);
  cuda::fill_uniform(x.data(), dtype::bf16, std::size_t(tokens) * 11008, 1, 1.0f, s.get());
  cuda::quant_gemv_plans plans;
  cuda::linear_runner runner;
  // Programmatic dependent launch between the layers, as the engine runs them; the first layer
  // launches normally, so nothing of the timed work starts before the start event.
  const int first = layer_only >= 0 ? layer_only : 0;
  auto run_quant = [&](int c) {
    for (int l = 0; l < 4; ++l) {
      if (layer_only >= 0 && l != layer_only) continue;
      quant_linear_params p;
      p.x = x.data<bf16_bits>();
      p.w = qw[std::size_t(c) * 4 + l].view;
      p.y = y.data();
      p.num_tokens = tokens;
      cuda::quant_gemv_options lo = o;
      lo.pdl = l != first;
      cuda::quant_gemv(p, plans, s.get(), lo);
    }
  };
  auto run_bf16 = [&](int c) {
    for (int l = 0; l < 4; ++l) {
      if (layer_only >= 0 && l != layer_only) continue;
      const linear_params p{x.data<bf16_bits>(), bw[std::size_t(c) * 4 + l].data<bf16_bits>(),
                            y.data(), false, tokens, k_layers[l].in, k_layers[l].out};
      runner.run(p, s.get(), l != first);
    }
  };
  try {
    // Warm-up (plans, clocks). A crude check of the quantized path before timing it (the GPU
    // tests compare it with the reference): the last layer's outputs are finite.
    for (int c = 0; c < copies; ++c) run_bf16(c);
    for (int c = 0; c < copies; ++c) run_quant(c);
    s.synchronize();
    const int last = layer_only >= 0 ? layer_only : 3;
    std::vector<bf16_bits> out(std::size_t(tokens) * k_layers[last].out);
    RIDGELINE_CUDA_CHECK(cudaMemcpy(out.data(), y.data(), out.size() * 2, cudaMemcpyDeviceToHost));
    for (const bf16_bits v : out) {
      if (!std::isfinite(cpu::bf16_to_float(v))) {
        state.SkipWithError("quantized path wrote a non-finite output");
        return;
      }
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  cold_timer timer;
  std::vector<double> quant_s, bf16_s;
  int c = 0;
  for (auto _ : state) {
    const double tq = timer.time(s.get(), [&] { run_quant(c); });
    state.SetIterationTime(tq);
    quant_s.push_back(tq);
    bf16_s.push_back(timer.time(s.get(), [&] { run_bf16((c + copies / 2) % copies); }));
    c = (c + 1) % copies;
  }
  const double ceiling = read_ceiling();
  const double tq = median(quant_s), tb = median(bf16_s);
  state.SetBytesProcessed(
      static_cast<std::int64_t>(static_cast<double>(state.iterations()) * double(quant_bytes)));
  state.counters["bytes_moved"] = double(quant_bytes);
  state.counters["median_us"] = tq * 1e6;
  state.counters["floor_us"] = double(quant_bytes) / ceiling * 1e6;
  state.counters["pct_of_read_bw"] = tq > 0 ? 100.0 * double(quant_bytes) / tq / ceiling : 0;
  state.counters["bf16_median_us"] = tb * 1e6;
  state.counters["bf16_pct_of_read_bw"] = tb > 0 ? 100.0 * double(bf16_bytes) / tb / ceiling : 0;
  state.counters["speedup_vs_bf16"] = tq > 0 ? tb / tq : 0;
}

// One Llama-2-7B block's four linears through linear_runner::run_quant, as the engine runs them,
// with each path forced: `gemv` (quant_gemv on 64-token slices) and `dequant` (the layer
// dequantized into bf16 scratch, then the runner's bf16 path: cuBLASLt at these token counts).
// Every iteration times both, cold (an L2 flush before each, weights rotated over 8 copies), so
// their ratio comes from one run. The iteration time is the path the engine takes at this token
// count (gemv up to k_quant_sliced_max_tokens, dequant above); counters: both medians, their
// ratio dequant_over_gemv (< 1: dequantize + GEMM is faster), the path the engine takes, and the
// largest difference between the two paths' outputs of the last layer relative to its largest
// output (a check that both compute the same layer: a few 1e-3, bf16 rounding of the dequantized
// weights and of the outputs).
// range: {tokens}.
void BM_kernels_quant_linear_crossover(benchmark::State& state, const quant_case& q) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int tokens = static_cast<int>(state.range(0));
  constexpr int copies = 8;
  cuda::stream s;
  std::vector<quant_layer> qw;
  std::size_t largest = 0;  // elements of the largest layer: the dequantize scratch
  for (int c = 0; c < copies; ++c) {
    for (int l = 0; l < 4; ++l) {
      const layer_shape& L = k_layers[l];
      qw.push_back(make_quant_layer(q, L, std::uint64_t(100 * c + 10 * l), s.get()));
      largest = std::max(largest, std::size_t(L.out) * L.in);
    }
  }
  cuda::device_buffer x(std::size_t(tokens) * 11008 * 2), y(std::size_t(tokens) * 22016 * 2);
  cuda::device_buffer scratch(largest * 2);
  cuda::fill_uniform(x.data(), dtype::bf16, std::size_t(tokens) * 11008, 1, 1.0f, s.get());
  cuda::linear_options go, dq;
  go.quant_force = cuda::quant_linear_path::gemv;
  dq.quant_force = cuda::quant_linear_path::dequant;
  cuda::linear_runner gemv_runner(go), dequant_runner(dq), auto_runner;
  const bool engine_takes_gemv =
      auto_runner.quant_path_for(tokens) == cuda::quant_linear_path::gemv;
  // The engine's launches: programmatic dependent launch between the layers (the quantized GEMV
  // takes it, cuBLASLt launches normally); the first layer launches normally, so nothing of the
  // timed work starts before the start event.
  auto run_block = [&](cuda::linear_runner& runner, int c) {
    for (int l = 0; l < 4; ++l) {
      const linear_params p{x.data<bf16_bits>(), nullptr, y.data(), false, tokens,
                            k_layers[l].in, k_layers[l].out};
      runner.run_quant(p, qw[std::size_t(c) * 4 + l].view, scratch.data<bf16_bits>(), s.get(),
                       l != 0);
    }
  };
  const std::size_t last = std::size_t(tokens) * k_layers[3].out;
  auto last_output = [&] {
    std::vector<bf16_bits> out(last);
    s.synchronize();
    RIDGELINE_CUDA_CHECK(cudaMemcpy(out.data(), y.data(), last * 2, cudaMemcpyDeviceToHost));
    return out;
  };
  double max_rel_diff = 0;
  try {
    // Warm-up (cuBLASLt plans and their timed choice, the GEMV's launch plans, clocks), then the
    // check: both paths on copy 0, outputs finite and alike.
    for (int c = 0; c < copies; ++c) run_block(gemv_runner, c);
    for (int c = 0; c < copies; ++c) run_block(dequant_runner, c);
    run_block(gemv_runner, 0);
    const std::vector<bf16_bits> a = last_output();
    run_block(dequant_runner, 0);
    const std::vector<bf16_bits> b = last_output();
    double largest_out = 0, diff = 0;
    for (std::size_t i = 0; i < last; ++i) {
      const double va = cpu::bf16_to_float(a[i]), vb = cpu::bf16_to_float(b[i]);
      if (!std::isfinite(va) || !std::isfinite(vb)) {
        state.SkipWithError("a quantized path wrote a non-finite output");
        return;
      }
      largest_out = std::max(largest_out, std::fabs(va));
      diff = std::max(diff, std::fabs(va - vb));
    }
    max_rel_diff = largest_out > 0 ? diff / largest_out : diff;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  cold_timer timer;
  std::vector<double> gemv_s, dequant_s;
  int c = 0;
  for (auto _ : state) {
    const double tg = timer.time(s.get(), [&] { run_block(gemv_runner, c); });
    const double td =
        timer.time(s.get(), [&] { run_block(dequant_runner, (c + copies / 2) % copies); });
    gemv_s.push_back(tg);
    dequant_s.push_back(td);
    state.SetIterationTime(engine_takes_gemv ? tg : td);
    c = (c + 1) % copies;
  }
  const double tg = median(gemv_s), td = median(dequant_s);
  state.counters["gemv_median_us"] = tg * 1e6;
  state.counters["dequant_median_us"] = td * 1e6;
  state.counters["dequant_over_gemv"] = tg > 0 ? td / tg : 0;
  state.counters["engine_takes_gemv"] = engine_takes_gemv ? 1 : 0;
  state.counters["paths_max_rel_diff"] = max_rel_diff;
}

void register_quant_benchmarks() {
  const std::vector<std::int64_t> all_tokens = {1, 2, 4, 8, 16, 32, 64};
  struct quant_bench {
    const char* format;
    std::vector<int> layers;
    std::vector<std::int64_t> tokens, stages, ctas;
  };
  const quant_bench cases[] = {
      // Every format, the block, every token count, default launch.
      {"int4_g128", {-1}, all_tokens, {0}, {0}},
      {"q4_0", {-1}, all_tokens, {0}, {0}},
      {"q8_0", {-1}, all_tokens, {0}, {0}},
      {"int8_channel", {-1}, all_tokens, {0}, {0}},
      {"fp8_channel", {-1}, all_tokens, {0}, {0}},
      // Tuning at 1 token (the 80%-of-floor target): ring depth and CTAs per SM, and per layer.
      {"int4_g128", {-1}, {1, 8}, {4, 8, 16}, {1, 2}},
      {"int8_channel", {-1}, {1}, {4, 8, 16}, {1, 2}},
      {"fp8_channel", {-1}, {1}, {4, 8, 16}, {1, 2}},
      {"int4_g128", {0, 1, 2, 3}, {1, 16}, {0}, {0}},
  };
  // The crossover of the quantized paths: every format, 64 ... 512 tokens in steps of 64.
  for (const auto& q : k_quant_cases) {
    const std::string name = std::string("BM_kernels_quant_linear_crossover/format:") + q.name;
    benchmark::RegisterBenchmark(name.c_str(), BM_kernels_quant_linear_crossover, std::cref(q))
        ->ArgNames({"tokens"})
        ->DenseRange(64, 512, 64)
        ->Iterations(60)  // 0.5-3 ms each (both paths, two L2 passes): medians of 60
        ->UseManualTime();
  }
  for (const auto& c : cases) {
    const quant_case& q = quant_case_named(c.format);
    for (const int layer : c.layers) {
      const std::string name = std::string("BM_kernels_quant_linear_block/format:") + q.name +
                               "/layer:" + (layer < 0 ? "block" : k_layer_names[layer]);
      benchmark::RegisterBenchmark(name.c_str(), BM_kernels_quant_linear_block, std::cref(q),
                                   layer)
          ->ArgNames({"tokens", "stages", "ctas"})
          ->ArgsProduct({c.tokens, c.stages, c.ctas})
          ->Iterations(200)  // ~0.3 ms each (both paths and two L2 passes): medians of 200
          ->UseManualTime();
    }
  }
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
  register_quant_benchmarks();
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
