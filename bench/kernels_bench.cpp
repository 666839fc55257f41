// GPU microbenchmarks of the probe's kernels, in Google Benchmark form with manual (CUDA-event)
// time and the environment in the JSON context:
//   build/bench/ridgeline_kernels_bench --benchmark_format=json --benchmark_repetitions=10
// Bandwidth: cold, buffers of 1-4 GiB (far above L2). GEMM: hot, the algorithm cuda::gemm_chooser
// picks under the peak policy (the probe's GEMM peaks use the same; the label names it).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/gemm_chooser.hpp"
#include "cuda/gemm_lt.hpp"
#include "cuda/memory.hpp"
#include "cuda/ops.hpp"
#include "cuda/raii.hpp"
#include "cuda/random.hpp"
#include "ridgeline/bench/gbench.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/telemetry/device.hpp"

namespace {

using namespace ridgeline;

double datasheet_bandwidth() {
  auto d = metrics::query_device(0);
  const datasheet_entry* ds = d ? datasheet_for_device(d->name) : nullptr;
  return ds ? ds->dram_bytes_per_second : (d ? d->theoretical_dram_bytes_per_second() : 0);
}

void bandwidth(benchmark::State& state, int op) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const auto bytes = static_cast<std::size_t>(state.range(0)) << 20;
  cuda::stream s;
  cuda::device_buffer src(bytes), dst(bytes), sink(4);
  cuda::fill_uniform(src.data(), dtype::fp32, bytes / 4, 1, 1.0f, s.get());
  cuda::event_timer timer;
  const cuda::bandwidth_launch l{bytes, 1, cuda::cache_hint::streaming, 0, 4, false};
  auto run = [&] {
    if (op == 0) cuda::launch_read(src.data(), sink.data<std::uint32_t>(), l, s.get());
    if (op == 1) cuda::launch_write(dst.data(), 3, l, s.get());
    if (op == 2) cuda::launch_copy(dst.data(), src.data(), l, s.get());
  };
  for (int i = 0; i < 3; ++i) run();  // warm-up
  for (auto _ : state) {
    timer.start(s.get());
    run();
    timer.stop(s.get());
    state.SetIterationTime(timer.seconds());
  }
  const double moved = double(bytes) * (op == 2 ? 2 : 1);
  state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * moved));
  // Every number next to its ceiling. These kernels are the probe's: what they reach is the
  // measured read, write and copy ceiling (a percentage of itself would say nothing), so the
  // ceiling here is the datasheet's one DRAM figure for every op, as the counter's name says
  // (no label: compare pairs rows by it against the committed baselines).
  state.counters["pct_of_datasheet_bw"] = benchmark::Counter(
      100.0 * moved / datasheet_bandwidth(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_kernels_read(benchmark::State& s) { bandwidth(s, 0); }
void BM_kernels_write(benchmark::State& s) { bandwidth(s, 1); }
void BM_kernels_copy(benchmark::State& s) { bandwidth(s, 2); }
BENCHMARK(BM_kernels_read)->ArgName("mib")->Arg(1024)->Arg(4096)->UseManualTime();
BENCHMARK(BM_kernels_write)->ArgName("mib")->Arg(1024)->Arg(4096)->UseManualTime();
BENCHMARK(BM_kernels_copy)->ArgName("mib")->Arg(1024)->Arg(4096)->UseManualTime();

// One dtype per registration (named in the benchmark's name, "BM_kernels_gemm/dtype:bf16/n:8192").
void BM_kernels_gemm(benchmark::State& state, dtype t) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto chooser = cuda::shared_gemm_chooser(k_peak_gemm_policy);
  state.SetLabel(std::string(name(t)) + ", algorithm: " + describe(chooser->policy()));
  cuda::stream s;
  cuda::cublaslt_handle h;
  cuda::device_buffer ws(32u << 20);
  cuda::lt_gemm g(h.get(), t, n, n, n, ws.bytes(), chooser->candidates());
  cuda::device_buffer a(g.a_bytes()), b(g.b_bytes()), d(g.d_bytes());
  cuda::fill_uniform(a.data(), t, n * n, 1, 1.0f, s.get());
  cuda::fill_uniform(b.data(), t, n * n, 2, 1.0f, s.get());
  cuda::event_timer timer;
  const int best = chooser->choose(g, a.data(), b.data(), d.data(), ws.data(), s.get()).index;
  for (auto _ : state) {
    timer.start(s.get());
    g.run(best, a.data(), b.data(), d.data(), ws.data(), s.get());
    timer.stop(s.get());
    state.SetIterationTime(timer.seconds());
  }
  state.counters["flops"] =
      benchmark::Counter(g.flops(), benchmark::Counter::kIsIterationInvariantRate);
  auto dev = metrics::query_device(0);
  const datasheet_entry* ds = dev ? datasheet_for_device(dev->name) : nullptr;
  if (ds && ds->flops_per_second.count(t)) {
    state.counters["pct_of_datasheet_peak"] = benchmark::Counter(
        100.0 * g.flops() / ds->flops_per_second.at(t), benchmark::Counter::kIsIterationInvariantRate);
  }
}

void register_gemm_benchmarks() {
  for (const dtype t : k_all_dtypes) {
    const std::string bench_name = "BM_kernels_gemm/dtype:" + std::string(name(t));
    benchmark::RegisterBenchmark(bench_name.c_str(), BM_kernels_gemm, t)
        ->ArgName("n")
        ->Arg(8192)
        ->UseManualTime();
  }
}

// Sampling one token per row of a 128,256-entry vocabulary (llama-3's) from logits uniform in
// [-4, 4]: greedy (mode 0), temperature 1 (1), temperature 1 with top-p 0.9 (2) or top-k 50 (3).
// Hot: the rows stay in L2 between iterations, as the LM head's output does in a decode step.
void BM_kernels_sampling(benchmark::State& state) {
  RIDGELINE_BENCH_REQUIRE_GPU(state);
  const int rows = static_cast<int>(state.range(0));
  const int mode = static_cast<int>(state.range(1));
  constexpr int vocab = 128256;
  cuda::stream s;
  cuda::device_buffer logits(std::size_t(rows) * vocab * 4), d_rows(sizeof(sampling_row) * rows),
      offsets(4 * (rows + 1)), out(4 * rows);
  cuda::fill_uniform(logits.data(), dtype::fp32, std::size_t(rows) * vocab, 7, 4.0f, s.get());
  std::vector<sampling_row> host(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    sampling_row& x = host[static_cast<std::size_t>(r)];
    x.temperature = mode == 0 ? 0.0f : 1.0f;
    x.top_p = mode == 2 ? 0.9f : 1.0f;
    x.top_k = mode == 3 ? 50 : 0;
    x.seed = 1000 + static_cast<std::uint64_t>(r);
  }
  const std::vector<std::int32_t> zeros(static_cast<std::size_t>(rows) + 1, 0);
  RIDGELINE_CUDA_CHECK(cudaMemcpy(d_rows.data(), host.data(), d_rows.bytes(), cudaMemcpyHostToDevice));
  RIDGELINE_CUDA_CHECK(cudaMemcpy(offsets.data(), zeros.data(), offsets.bytes(), cudaMemcpyHostToDevice));
  sampling_params p;
  p.logits = logits.data<float>();
  p.num_rows = rows;
  p.vocab = vocab;
  p.rows = d_rows.data<sampling_row>();
  p.prev_offsets = offsets.data<std::int32_t>();
  p.out_tokens = out.data<std::int32_t>();
  cuda::event_timer timer;
  for (int i = 0; i < 3; ++i) cuda::sampling(p, s.get());  // warm-up
  for (auto _ : state) {
    timer.start(s.get());
    cuda::sampling(p, s.get());
    timer.stop(s.get());
    state.SetIterationTime(timer.seconds());
  }
  state.counters["rows"] = rows;
  static const char* const k_modes[] = {"greedy", "temperature 1", "temperature 1, top-p 0.9",
                                        "temperature 1, top-k 50"};
  state.SetLabel(k_modes[mode]);
}
BENCHMARK(BM_kernels_sampling)
    ->ArgNames({"rows", "mode"})
    ->ArgsProduct({{1, 16, 64}, {0, 1, 2, 3}})
    ->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  register_gemm_benchmarks();
  return ridgeline::bench::run_benchmarks(argc, argv, 0);
}
