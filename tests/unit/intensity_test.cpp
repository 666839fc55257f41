// Host logic of the intensity sweep: intensity -> plan arithmetic, exact FLOP and byte counts,
// plan validation, the narrow-float FMA rounding the HFMA2 references use, the scalar reference on
// a hand-computed case, and the plateau rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ridgeline/roofline/intensity_sweep.hpp"
#include "ridgeline/kernels/intensity_reference.hpp"

using namespace ridgeline;

TEST(IntensityPlan, ScalarFmaCountsFollowTheIntensity) {
  const std::uint64_t bytes = 64 * k_intensity_chunk_bytes;
  // FFMA: 2 FLOP per instruction, 16 bytes per vector: f = 8 * intensity.
  EXPECT_EQ(make_intensity_plan(intensity_kernel::ffma_fp32, 0.25, bytes, 3).fma_per_vector, 2u);
  EXPECT_EQ(make_intensity_plan(intensity_kernel::ffma_fp32, 0.125, bytes, 3).fma_per_vector, 1u);
  EXPECT_EQ(make_intensity_plan(intensity_kernel::ffma_fp32, 4096, bytes, 3).fma_per_vector,
            32768u);
  // HFMA2: 4 FLOP per instruction: f = 4 * intensity.
  EXPECT_EQ(make_intensity_plan(intensity_kernel::hfma2_bf16, 0.25, bytes, 3).fma_per_vector, 1u);
  EXPECT_EQ(make_intensity_plan(intensity_kernel::hfma2_fp16, 1, bytes, 3).fma_per_vector, 4u);
  // Exact at every default intensity once the chunks are a multiple of chunks_per_mma (at most 256:
  // m64n256k32 e4m3 at 1/4).
  for (double i : bench::default_intensities()) {
    for (auto k : k_all_intensity_kernels) {
      const auto p = make_intensity_plan(k, i, 256 * k_intensity_chunk_bytes, 3, 256);
      EXPECT_DOUBLE_EQ(flop_per_byte(p), i) << name(k) << " at " << i;
    }
  }
  EXPECT_THROW(make_intensity_plan(intensity_kernel::ffma_fp32, 0.0625, bytes, 3),
               std::invalid_argument);
  EXPECT_THROW(make_intensity_plan(intensity_kernel::ffma_fp32, 0.3, bytes, 3),
               std::invalid_argument);
  EXPECT_THROW(make_intensity_plan(intensity_kernel::hfma2_fp16, 0.125, bytes, 3),
               std::invalid_argument);
}

TEST(IntensityPlan, MmaRatiosAreExactPowersOfTwo) {
  const std::uint64_t bytes = 1024 * k_intensity_chunk_bytes;
  // m64n256k16 bf16 = 2^19 FLOP; a 16 KiB chunk at 1/4 FLOP/byte is 2^12 FLOP: 128 chunks per MMA.
  auto p = make_intensity_plan(intensity_kernel::mma_bf16, 0.25, bytes, 3, 256);
  EXPECT_EQ(p.chunks_per_mma, 128u);
  EXPECT_EQ(p.mma_per_chunk, 1u);
  EXPECT_EQ(flops_per_instruction(p), 1u << 19);
  p = make_intensity_plan(intensity_kernel::mma_bf16, 32, bytes, 3, 256);
  EXPECT_EQ(p.chunks_per_mma, 1u);
  EXPECT_EQ(p.mma_per_chunk, 1u);
  p = make_intensity_plan(intensity_kernel::mma_bf16, 4096, bytes, 3, 256);
  EXPECT_EQ(p.mma_per_chunk, 128u);
  // m64n256k32 e4m3 = 2^20 FLOP.
  p = make_intensity_plan(intensity_kernel::mma_fp8, 64, bytes, 3, 256);
  EXPECT_EQ(p.mma_per_chunk, 1u);
  EXPECT_EQ(flops_per_instruction(p), 1u << 20);
  // m64n8k16 bf16 = 2^14 FLOP: 4 chunks per MMA at 1/4.
  p = make_intensity_plan(intensity_kernel::mma_bf16, 0.25, bytes, 3, 8);
  EXPECT_EQ(p.chunks_per_mma, 4u);
  EXPECT_EQ(flops(p), 1024u / 4 * (1u << 14));
  EXPECT_EQ(p.bytes, bytes);
  // Chunks after the last MMA point are read but not multiplied: 5 chunks, one MMA.
  p.bytes = 5 * k_intensity_chunk_bytes;
  EXPECT_EQ(flops(p), 1u << 14);
  EXPECT_THROW(make_intensity_plan(intensity_kernel::mma_bf16, 1, bytes, 3, 32),
               std::invalid_argument);
}

TEST(IntensityPlan, ValidateRejectsBadPlans) {
  intensity_plan p;
  EXPECT_NO_THROW(validate(p));
  p.bytes = 0;
  EXPECT_THROW(validate(p), std::invalid_argument);
  p.bytes = k_intensity_chunk_bytes + 4;
  EXPECT_THROW(validate(p), std::invalid_argument);
  p.bytes = k_intensity_chunk_bytes;
  p.grid = 0;
  EXPECT_THROW(validate(p), std::invalid_argument);
  p.grid = 1;
  p.fma_per_vector = 3;
  EXPECT_THROW(validate(p), std::invalid_argument);
  p.kernel = intensity_kernel::mma_fp8;
  EXPECT_NO_THROW(validate(p));  // fma_per_vector is not an MMA field
  p.chunks_per_mma = 6;
  EXPECT_THROW(validate(p), std::invalid_argument);
  p.chunks_per_mma = 1;
  p.mma_n = 128;
  EXPECT_THROW(validate(p), std::invalid_argument);
  EXPECT_EQ(parse_intensity_kernel("mma_fp8"), intensity_kernel::mma_fp8);
  EXPECT_THROW(parse_intensity_kernel("fp8"), std::invalid_argument);
}

TEST(IntensityReference, NarrowFmaRoundsOnceToNearestEven) {
  const double q = std::ldexp(1.0, -7);                                 // bf16 ulp at 1
  EXPECT_EQ(cpu::fma_bf16(1, 1, std::ldexp(1.0f, -8)), 1.0f);           // tie, even stays
  EXPECT_EQ(cpu::fma_bf16(1 + q, 1, std::ldexp(1.0f, -8)), 1 + 2 * q);  // tie, odd goes up
  // (1 + q) * 2^-8 = 2^-8 + 2^-15: just above the tie, so up (two roundings would give 1).
  EXPECT_EQ(cpu::fma_bf16(1 + q, std::ldexp(1.0f, -8), 1), 1 + q);
  // fp16 subnormals: 2^-25 ties to 0, 1.5 * 2^-24 rounds to 2^-23; 2^16 overflows.
  EXPECT_EQ(cpu::fma_fp16(std::ldexp(1.0f, -24), 0.5f, 0), 0.0f);
  EXPECT_EQ(cpu::fma_fp16(3 * std::ldexp(1.0f, -24), 0.5f, 0), std::ldexp(1.0f, -23));
  EXPECT_TRUE(std::isinf(cpu::fma_fp16(256, 256, 0)));
  EXPECT_EQ(cpu::fma_fp16(-1, 0.5f, 0.25f), -0.25f);
}

TEST(IntensityReference, ScalarFp32FollowsTheChains) {
  // One block, one chunk, fma_per_vector 4: thread t's vector u holds (a, b, c, d) and runs
  // p = fma(p, a, b) and q = fma(q, c, d) twice each from 0.
  intensity_plan p;
  p.kernel = intensity_kernel::ffma_fp32;
  p.fma_per_vector = 4;
  std::vector<std::uint32_t> w(k_intensity_chunk_bytes / 4);
  auto put = [&](std::size_t i, float f) { std::memcpy(&w[i], &f, 4); };
  for (std::size_t v = 0; v < w.size() / 4; ++v) {
    put(4 * v, 0.5f), put(4 * v + 1, 1.0f), put(4 * v + 2, 0.25f), put(4 * v + 3, -2.0f);
  }
  const auto out = cpu::intensity_scalar(p, w);
  ASSERT_EQ(out.size(), 256u);
  // p: 0 -> 1 -> 1.5; q: 0 -> -2 -> -2.5; four vectors per thread: 4 * (1.5 - 2.5) = -4.
  for (float x : out) EXPECT_EQ(x, -4.0f);
  p.fma_per_vector = 1;  // p = fma(p, a ^ (c & mantissa), b ^ (d & mantissa)) once
  const auto folded = cpu::intensity_scalar(p, w);
  EXPECT_NE(folded[0], 0.0f);
}

TEST(IntensitySweep, PlateauReadsMemoryAndComputeCeilings) {
  std::vector<bench::intensity_point> pts;
  auto add = [&](double intensity, double seconds, std::uint64_t bytes) {
    bench::intensity_point p;
    p.kernel = intensity_kernel::ffma_fp32;
    p.intensity = intensity;
    p.bytes = bytes;
    p.flops = static_cast<std::uint64_t>(intensity * static_cast<double>(bytes));
    p.m.stats.median = seconds;
    pts.push_back(p);
  };
  // 3.0, 3.1, 3.05 TB/s memory-bound, then a knee, then 60 TFLOP/s flat.
  add(0.25, 1.0 / 3.0e3, 1000000000);
  add(0.5, 1.0 / 3.1e3, 1000000000);
  add(1, 1.0 / 3.05e3, 1000000000);
  add(64, 64e9 / 50e12, 1000000000);
  add(1024, 1024e8 / 60e12, 100000000);
  add(4096, 4096e8 / 59e12, 100000000);
  const auto pl = bench::plateau(pts, intensity_kernel::ffma_fp32);
  EXPECT_EQ(pl.memory_points, 3);
  EXPECT_NEAR(pl.memory_bytes_per_second, 3.05e12, 1e9);
  EXPECT_NEAR(pl.compute_flop_per_second, 60e12, 1e10);
  EXPECT_NEAR(pl.compute_flop_per_second_median, 59e12, 1e10);
  EXPECT_EQ(bench::plateau(pts, intensity_kernel::mma_fp8).memory_points, 0);
  bench::intensity_sweep_options o;
  EXPECT_NO_THROW(bench::validate_intensity_sweep_options(o));
  o.intensities = {3};
  EXPECT_THROW(bench::validate_intensity_sweep_options(o), std::invalid_argument);
  // --sustain: seconds of launches before each point, 0 ... 600.
  o = {};
  o.sustain_seconds = 0;
  EXPECT_NO_THROW(bench::validate_intensity_sweep_options(o));
  for (double bad : {-1.0, 601.0, std::nan("")}) {
    o.sustain_seconds = bad;
    EXPECT_THROW(bench::validate_intensity_sweep_options(o), std::invalid_argument) << bad;
  }
}
