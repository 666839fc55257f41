// CUPTI on the GPU: range-profiler counters against work whose FLOPs and bytes are known (a bf16
// cuBLASLt GEMM, a 4 GiB device copy, FFMA and HFMA2 chains), the same per kernel (kernel replay),
// and the kernel tracer with phases.
// Only "no device" skips: when the machine refuses counters (not permitted, held by another
// profiler) the tests fail with counters_unavailable's one line, since then nothing was checked.
//   ./ridgeline_gpu_tests --gtest_filter='Cupti*'
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda/gemm_lt.hpp"
#include "cuda/memory.hpp"
#include "cupti_kernels.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/telemetry/cupti.hpp"

using namespace ridgeline;

namespace {

// Counters for `work` into `out`; false (and a failure carrying counters_unavailable's message,
// not a skip) when the machine refuses them.
bool profile(const std::function<void()>& work, metrics::counter_values& out) {
  try {
    out = metrics::profile_range(work, {});
    return true;
  } catch (const metrics::counters_unavailable& e) {
    ADD_FAILURE() << "GPU counters unavailable: " << e.what();
    return false;
  }
}

void print(const metrics::counter_values& v) {
  std::printf(
      "  passes %d, dram read %.6g B, write %.6g B, fp32 %.6g, half %.6g, tensor bf16 %.6g "
      "fp16 %.6g tf32 %.6g fp8 %.6g, intensity %.4g FLOP/B\n",
      v.passes, v.dram_read_bytes, v.dram_write_bytes, v.fp32_flops, v.half_flops,
      v.tensor_bf16_flops, v.tensor_fp16_flops, v.tensor_tf32_flops, v.tensor_fp8_flops,
      v.intensity());
}

double round_up(double x, double to) {
  return std::ceil(x / to) * to;
}

}  // namespace

// Tile-aligned bf16 GEMM: the tensor path does exactly 2*m*n*k FLOPs (2 per multiply-add), all
// counted as bf16 source / fp32 accumulate; no other tensor type, and no fp32 FFMA to speak of.
TEST(CuptiCounters, Bf16GemmTensorFlopsAre2MNK) {
  RIDGELINE_REQUIRE_GPU();
  cuda::cublaslt_handle h;
  cuda::stream s;
  constexpr std::size_t m = 4096, n = 4096, k = 4096;
  cuda::device_buffer ws(32u << 20);
  cuda::lt_gemm g(h.get(), dtype::bf16, m, n, k, ws.bytes());
  ASSERT_GT(g.algorithm_count(), 0);
  cuda::device_buffer a(g.a_bytes()), b(g.b_bytes()), d(g.d_bytes());
  RIDGELINE_CUDA_CHECK(cudaMemset(a.data(), 0x3c, a.bytes()));  // bf16 0x3c3c ~ 0.0115
  RIDGELINE_CUDA_CHECK(cudaMemset(b.data(), 0x3c, b.bytes()));
  metrics::counter_values v;
  ASSERT_TRUE(profile([&] { g.run(0, a.data(), b.data(), d.data(), ws.data(), s.get()); }, v));
  print(v);
  const double expected = 2.0 * m * n * k;
  EXPECT_NEAR(v.tensor_bf16_flops, expected, 0.02 * expected);
  EXPECT_EQ(v.tensor_fp16_flops + v.tensor_tf32_flops + v.tensor_fp8_flops, 0);
  EXPECT_LT(v.fp32_flops, 0.01 * expected);
  EXPECT_GE(v.passes, 1);
  // A, B and D are 32 MiB each: at least D's bytes are written (L2 is 50 MB, write-back).
  EXPECT_GT(v.dram_write_bytes, 0.5 * static_cast<double>(g.d_bytes()));
  EXPECT_GT(v.intensity(), 0);
}

// Odd n: the kernel computes whole tiles, and the tensor counter counts what the hardware did, so
// it lies between 2*m*n*k and 2*m*n*k with m and n padded to 256 (the largest cuBLASLt tile
// side on Hopper) and k to 64.
TEST(CuptiCounters, Bf16GemmOddShapeCountsPaddedTiles) {
  RIDGELINE_REQUIRE_GPU();
  cuda::cublaslt_handle h;
  cuda::stream s;
  constexpr std::size_t m = 4096, n = 3000, k = 5120;
  cuda::device_buffer ws(32u << 20);
  cuda::lt_gemm g(h.get(), dtype::bf16, m, n, k, ws.bytes());
  ASSERT_GT(g.algorithm_count(), 0);
  cuda::device_buffer a(g.a_bytes()), b(g.b_bytes()), d(g.d_bytes());
  RIDGELINE_CUDA_CHECK(cudaMemset(a.data(), 0x3c, a.bytes()));
  RIDGELINE_CUDA_CHECK(cudaMemset(b.data(), 0x3c, b.bytes()));
  metrics::counter_values v;
  ASSERT_TRUE(profile([&] { g.run(0, a.data(), b.data(), d.data(), ws.data(), s.get()); }, v));
  print(v);
  const double exact = 2.0 * m * n * k;
  const double padded = 2.0 * round_up(m, 256) * round_up(n, 256) * round_up(k, 64);
  std::printf("  tensor bf16 / 2mnk = %.5f (padded bound %.5f)\n", v.tensor_bf16_flops / exact,
              padded / exact);
  EXPECT_GE(v.tensor_bf16_flops, 0.98 * exact);
  EXPECT_LE(v.tensor_bf16_flops, 1.02 * padded);
}

// 4 GiB copied by an SM kernel: 4 GiB read and 4 GiB written, within 2% (what stays dirty in the
// 50 MB L2 at the end of the range is at most 1.2% of the writes).
TEST(CuptiCounters, DeviceCopyMovesEightGiBThroughDram) {
  RIDGELINE_REQUIRE_GPU();
  constexpr std::size_t bytes = std::size_t{4} << 30;
  cuda::stream s;
  cuda::device_buffer src(bytes), dst(bytes);
  RIDGELINE_CUDA_CHECK(cudaMemset(src.data(), 1, bytes));
  cuda::bandwidth_launch l;
  l.bytes = bytes;
  metrics::counter_values v;
  ASSERT_TRUE(profile([&] { cuda::launch_copy(dst.data(), src.data(), l, s.get()); }, v));
  print(v);
  const double b = static_cast<double>(bytes);
  EXPECT_NEAR(v.dram_bytes(), 2 * b, 0.02 * 2 * b);
  EXPECT_NEAR(v.dram_read_bytes, b, 0.02 * b);
  EXPECT_NEAR(v.dram_write_bytes, b, 0.02 * b);
  EXPECT_EQ(v.flops(), 0);  // integer address arithmetic only
}

// The same through the copy engine (cudaMemcpyAsync device to device): DRAM counters see every
// client of the memory, not only SMs.
TEST(CuptiCounters, MemcpyDeviceToDeviceMovesEightGiBThroughDram) {
  RIDGELINE_REQUIRE_GPU();
  constexpr std::size_t bytes = std::size_t{4} << 30;
  cuda::stream s;
  cuda::device_buffer src(bytes), dst(bytes);
  RIDGELINE_CUDA_CHECK(cudaMemset(src.data(), 1, bytes));
  metrics::counter_values v;
  ASSERT_TRUE(profile(
      [&] {
        RIDGELINE_CUDA_CHECK(
            cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, s.get()));
      },
      v));
  print(v);
  const double b = static_cast<double>(bytes);
  EXPECT_NEAR(v.dram_bytes(), 2 * b, 0.02 * 2 * b);
}

// FFMA chain: exact counts. 132*2 blocks of 256 threads, 1000 steps of 4 FFMA, then 3 FADD.
TEST(CuptiCounters, FfmaChainFp32FlopsAreExact) {
  RIDGELINE_REQUIRE_GPU();
  constexpr int blocks = 264, threads = 256, iters = 1000;
  constexpr double n = double{blocks} * threads;
  cuda::stream s;
  cuda::device_buffer out(static_cast<std::size_t>(n) * sizeof(float));
  metrics::counter_values v;
  ASSERT_TRUE(profile(
      [&] { test::launch_ffma_chain(out.data<float>(), blocks, threads, iters, s.get()); }, v));
  print(v);
  EXPECT_EQ(v.raw.at(metrics::counter_metric::ffma), 4 * iters * n);
  EXPECT_EQ(v.raw.at(metrics::counter_metric::fadd), 3 * n);
  EXPECT_EQ(v.raw.at(metrics::counter_metric::fmul), 0);
  EXPECT_EQ(v.fp32_flops, 8 * iters * n + 3 * n);
  EXPECT_EQ(v.half_flops + v.tensor_flops(), 0);
}

// HFMA2 chain: the half-precision counters count a packed HFMA2/HADD2 once per thread
// instruction, which is what counter_values::half_flops assumes (k_half_lanes = 2); counting lanes
// would double the total. The kernel issues 4 HFMA2 per step and 3 HADD2 at the end, but ptxas
// turns one of the adds into an HFMA2 (measured on an H100: hfma = 4001 n, hadd = 2 n), so the
// check is on the total of half-precision instructions and on the FLOPs derived from the split.
TEST(CuptiCounters, Hfma2ChainCountsPackedInstructionsOnce) {
  RIDGELINE_REQUIRE_GPU();
  constexpr int blocks = 264, threads = 256, iters = 1000;
  constexpr double n = double{blocks} * threads;
  cuda::stream s;
  cuda::device_buffer out(static_cast<std::size_t>(n) * 4);
  metrics::counter_values v;
  ASSERT_TRUE(
      profile([&] { test::launch_hfma2_chain(out.data(), blocks, threads, iters, s.get()); }, v));
  print(v);
  const double hfma = v.raw.at(metrics::counter_metric::hfma);
  const double hadd = v.raw.at(metrics::counter_metric::hadd);
  const double hmul = v.raw.at(metrics::counter_metric::hmul);
  EXPECT_EQ(hfma + hadd + hmul, (4.0 * iters + 3) * n)
      << "ratio to thread instructions: " << (hfma + hadd + hmul) / ((4.0 * iters + 3) * n);
  EXPECT_GE(hfma, 4.0 * iters * n);
  EXPECT_EQ(v.half_flops, 2 * (2 * hfma + hadd + hmul));
  EXPECT_EQ(v.fp32_flops, 0);
}

// Per kernel (auto range, kernel replay): two FFMA chains of different lengths and a 4 GiB copy,
// launched once. One entry per launch, in order, named after its kernel, each with its own exact
// FFMA count; the copy moves 2x its size through DRAM within 2% (4 GiB for the same reason as
// above: what stays dirty in the 50 MB L2 when the kernel ends is at most 1.2% of the writes).
TEST(CuptiKernels, ThreeKernelsInLaunchOrderWithTheirOwnCounts) {
  RIDGELINE_REQUIRE_GPU();
  constexpr int threads = 256;
  constexpr int blocks[2] = {132, 264};
  constexpr int iters[2] = {100, 300};
  constexpr std::size_t copy_bytes = std::size_t{4} << 30;
  cuda::stream s;
  cuda::device_buffer out(std::size_t{264} * threads * sizeof(float));
  cuda::device_buffer src(copy_bytes), dst(copy_bytes);
  RIDGELINE_CUDA_CHECK(cudaMemset(src.data(), 1, copy_bytes));
  cuda::bandwidth_launch l;
  l.bytes = copy_bytes;
  // Kernel replay (the work once), then user replay (the work once per pass).
  for (bool kernel_replay : {true, false}) {
    SCOPED_TRACE(kernel_replay ? "kernel replay" : "user replay");
    std::vector<metrics::kernel_counters> k;
    metrics::counter_options co;
    co.kernel_replay = kernel_replay;
    try {
      k = metrics::profile_kernels(
          [&] {
            for (int i = 0; i < 2; ++i) {
              test::launch_ffma_chain(out.data<float>(), blocks[i], threads, iters[i], s.get());
            }
            cuda::launch_copy(dst.data(), src.data(), l, s.get());
          },
          co);
    } catch (const metrics::counters_unavailable& e) {
      FAIL() << "GPU counters unavailable: " << e.what();
    }
    for (const auto& e : k) {
      std::printf("  %s\n", e.name.c_str());
      print(e.values);
    }
    ASSERT_EQ(k.size(), 3u);
    for (int i = 0; i < 2; ++i) {
      SCOPED_TRACE("kernel " + std::to_string(i) + ": " + k[i].name);
      EXPECT_NE(k[i].name.find("ffma_chain_kernel"), std::string::npos);
      EXPECT_EQ(k[i].name.find("_Z"), std::string::npos) << "not demangled";
      const double n = static_cast<double>(blocks[i]) * threads;
      EXPECT_EQ(k[i].values.raw.at(metrics::counter_metric::ffma), 4.0 * iters[i] * n);
      EXPECT_EQ(k[i].values.raw.at(metrics::counter_metric::fadd), 3 * n);
      EXPECT_GE(k[i].values.passes, 1);
    }
    EXPECT_NE(k[2].name.find("copy_kernel"), std::string::npos) << k[2].name;
    const double b = static_cast<double>(copy_bytes);
    EXPECT_NEAR(k[2].values.dram_bytes(), 2 * b, 0.02 * 2 * b);
    EXPECT_EQ(k[2].values.flops(), 0);
  }
}

// More launches than max_kernels: an error that says so and what to do, not a short list.
TEST(CuptiKernels, MoreLaunchesThanMaxKernelsIsAClearError) {
  RIDGELINE_REQUIRE_GPU();
  constexpr int n = 1000;
  cuda::stream s;
  cuda::device_buffer data(n * sizeof(float));
  RIDGELINE_CUDA_CHECK(cudaMemset(data.data(), 0, data.bytes()));
  metrics::counter_options o;
  o.max_kernels = 2;
  try {
    metrics::profile_kernels(
        [&] {
          for (int i = 0; i < 3; ++i) test::launch_add_one(data.data<float>(), n, s.get());
        },
        o);
    ADD_FAILURE() << "no exception";
  } catch (const metrics::counters_unavailable& e) {
    FAIL() << "GPU counters unavailable: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_kernels (2)"), std::string::npos) << e.what();
  }
  o.max_kernels = 0;
  EXPECT_THROW(metrics::profile_kernels([] {}, o), std::invalid_argument);
}

TEST(CuptiCounters, UnknownExtraMetricIsInvalidArgument) {
  RIDGELINE_REQUIRE_GPU();
  metrics::counter_options o;
  o.extra_metrics = {"no_such__metric.sum"};
  try {
    metrics::profile_range([] {}, o);
    ADD_FAILURE() << "no exception";
  } catch (const metrics::counters_unavailable& e) {
    FAIL() << "GPU counters unavailable: " << e.what();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no_such__metric.sum"), std::string::npos) << e.what();
  }
}

TEST(CuptiCounters, ChipNameIsKnown) {
  RIDGELINE_REQUIRE_GPU();
  std::string chip;
  try {
    chip = metrics::cupti_chip_name(0);
  } catch (const metrics::counters_unavailable& e) {
    FAIL() << "GPU counters unavailable: " << e.what();
  }
  std::printf("  chip %s\n", chip.c_str());
  EXPECT_FALSE(chip.empty());
}

// Three add_one kernels in "alpha", two scale kernels in "beta" (one inside a nested "gamma"),
// one add_one outside any phase: names, launch shapes, phases, counts and ordered timestamps.
TEST(CuptiTracer, KernelsCarryNamesShapesAndPhases) {
  RIDGELINE_REQUIRE_GPU();
  constexpr int n = 1000;  // 4 blocks of 256
  cuda::stream s;
  cuda::device_buffer data(n * sizeof(float));
  RIDGELINE_CUDA_CHECK(cudaMemset(data.data(), 0, data.bytes()));
  { metrics::scoped_phase outside("before"); }  // no trace yet: a no-op

  metrics::activity_tracer tracer;
  try {
    tracer.start();
  } catch (const metrics::counters_unavailable& e) {
    FAIL() << "CUPTI tracing unavailable: " << e.what();
  }
  EXPECT_THROW(metrics::activity_tracer().start(), std::logic_error);
  {
    metrics::scoped_phase p("alpha");
    for (int i = 0; i < 3; ++i) test::launch_add_one(data.data<float>(), n, s.get());
  }
  {
    metrics::scoped_phase p("beta");
    test::launch_scale(data.data<float>(), 2.0f, n, s.get());
    metrics::scoped_phase nested("gamma");
    test::launch_scale(data.data<float>(), 0.5f, n, s.get());
  }
  test::launch_add_one(data.data<float>(), n, s.get());
  const auto records = tracer.stop();
  EXPECT_FALSE(tracer.running());
  EXPECT_EQ(tracer.dropped_records(), 0u);

  ASSERT_EQ(records.size(), 6u);
  const char* names[] = {"add_one_kernel", "add_one_kernel", "add_one_kernel",
                         "scale_kernel",   "scale_kernel",   "add_one_kernel"};
  const char* phases[] = {"alpha", "alpha", "alpha", "beta", "gamma", ""};
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    SCOPED_TRACE("record " + std::to_string(i) + ": " + r.name + " [" + r.phase + "]");
    EXPECT_NE(r.name.find(names[i]), std::string::npos);
    EXPECT_NE(r.mangled_name.find(names[i]), std::string::npos);
    EXPECT_EQ(r.name.find("_Z"), std::string::npos) << "not demangled";
    EXPECT_EQ(r.phase, phases[i]);
    EXPECT_EQ(r.grid[0], 4);
    EXPECT_EQ(r.grid[1], 1);
    EXPECT_EQ(r.block[0], 256);
    EXPECT_EQ(r.block[1], 1);
    EXPECT_GT(r.end_ns, r.start_ns);
    EXPECT_EQ(r.stream_id, records[0].stream_id);  // one stream
    if (i > 0) {
      EXPECT_GE(r.start_ns, records[i - 1].end_ns) << "same stream: kernels do not overlap";
      EXPECT_NE(r.correlation_id, records[i - 1].correlation_id);
    }
  }
  const auto by_phase = metrics::summarize_by_phase(records);
  ASSERT_EQ(by_phase.size(), 4u);
  std::map<std::string, std::int64_t> counts;
  for (const auto& p : by_phase) counts[p.key] = p.count;
  EXPECT_EQ(counts["alpha"], 3);
  EXPECT_EQ(counts["beta"], 1);
  EXPECT_EQ(counts["gamma"], 1);
  EXPECT_EQ(counts[""], 1);

  // A second trace starts empty and sees only its own kernels.
  tracer.start();
  test::launch_scale(data.data<float>(), 1.0f, n, s.get());
  const auto second = tracer.stop();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].phase, "");
}
