// Narrow-type conversions of the CPU references against values from the formats' definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/kernels/gemm_reference.hpp"
#include "ridgeline/kernels/memory_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;
using namespace ridgeline::cpu;

TEST(Numeric, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(bf16_to_float(0x3fc0), 1.5f);
}

TEST(Numeric, Fp16KnownValues) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);          // rounds to infinity
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16(-0.5f), 0xb800);
  EXPECT_EQ(fp16_to_float(0x3555), 0.333251953125f);
}

TEST(Numeric, Fp8E4m3KnownValues) {
  EXPECT_EQ(float_to_fp8_e4m3(1.0f), 0x38);
  EXPECT_EQ(float_to_fp8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(1e6f), 0x7e);  // saturates
  EXPECT_EQ(float_to_fp8_e4m3(-448.0f), 0xfe);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -9)), 0x01);  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
}

TEST(Numeric, RoundTripsEveryEncoding) {
  for (unsigned v = 0; v < 0x10000; ++v) {
    const auto b = static_cast<std::uint16_t>(v);
    const float f = bf16_to_float(b);
    if (!std::isnan(f)) {
      ASSERT_EQ(float_to_bf16(f), b) << v;
    }
    const float h = fp16_to_float(b);
    if (!std::isnan(h)) {
      ASSERT_EQ(float_to_fp16(h), b) << v;
    }
  }
  for (unsigned v = 0; v < 0x100; ++v) {
    const float f = fp8_e4m3_to_float(static_cast<std::uint8_t>(v));
    if (!std::isnan(f)) {
      ASSERT_EQ(float_to_fp8_e4m3(f), v) << v;
    }
  }
}

TEST(Numeric, Tf32KeepsTenMantissaBits) {
  const float x = 1.0f + std::ldexp(1.0f, -10) + std::ldexp(1.0f, -12);
  EXPECT_EQ(round_to_tf32(x), 1.0f + std::ldexp(1.0f, -10));
}

TEST(Dtype, ParseAndNames) {
  for (dtype t : k_all_dtypes) EXPECT_EQ(parse_dtype(name(t)), t);
  EXPECT_EQ(parse_dtype("fp8"), dtype::fp8_e4m3);
  EXPECT_THROW(parse_dtype("fp4"), std::invalid_argument);
  EXPECT_EQ(output_bytes(dtype::int8), 4u);
  EXPECT_EQ(operand_bytes(dtype::fp8_e4m3), 1u);
}

TEST(GemmReference, SmallKnownProduct) {
  // A [2 x 3], B [1 x 3]: D[0][i] = A[i] . B[0]
  const std::vector<float> a = {1, 2, 3, -1, 0, 1};
  const std::vector<float> b = {2, -1, 1};
  std::vector<double> d, abs;
  gemm_reference({2, 1, 3, a, b}, d, abs);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_DOUBLE_EQ(d[0], 3);
  EXPECT_DOUBLE_EQ(d[1], -1);
  EXPECT_DOUBLE_EQ(abs[0], 7);
  EXPECT_THROW(gemm_reference({3, 1, 3, a, b}, d, abs), std::invalid_argument);
}

TEST(MemoryReference, PatternNeverZero) {
  for (std::uint64_t i = 0; i < 100000; ++i) ASSERT_NE(write_pattern_word(i, 0), 0u);
  const std::vector<std::uint32_t> w = {1, 2, 4};
  EXPECT_EQ(xor_fold(w), 7u);
}
