// Host logic of the instruction-peak kernels: names, FLOP counts, plan validation, the operands'
// ranges and the references on hand-computed cases (the GPU test compares the kernels with them).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "ridgeline/kernels/instruction_peak_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

TEST(InstructionPeakPlan, NamesAndGemmDtypes) {
  for (auto k : k_all_instruction_peak_kinds) {
    EXPECT_EQ(parse_instruction_peak_kind(name(k)), k);
    EXPECT_FALSE(instruction_name(k).empty());
  }
  EXPECT_EQ(name(instruction_peak_kind::fp8_e4m3), "fp8_e4m3");
  EXPECT_EQ(name(instruction_peak_kind::bf16_hfma2), "bf16_hfma2");
  EXPECT_THROW(parse_instruction_peak_kind("fp16"), std::invalid_argument);
  EXPECT_EQ(gemm_dtype(instruction_peak_kind::fp32), dtype::fp32);
  EXPECT_EQ(gemm_dtype(instruction_peak_kind::bf16), dtype::bf16);
  EXPECT_EQ(gemm_dtype(instruction_peak_kind::fp8_e4m3), dtype::fp8_e4m3);
  EXPECT_FALSE(gemm_dtype(instruction_peak_kind::bf16_hfma2).has_value());
  EXPECT_TRUE(is_mma(instruction_peak_kind::bf16));
  EXPECT_FALSE(is_mma(instruction_peak_kind::bf16_hfma2));
}

TEST(InstructionPeakPlan, FlopsAndSizes) {
  instruction_peak_plan p{instruction_peak_kind::fp32, 3, 10};
  // 3 blocks x 256 threads x 10 iterations x 8 chains x 2 FLOP.
  EXPECT_EQ(flops(p), 3u * 256 * 10 * 8 * 2);
  EXPECT_EQ(operand_words(p), 3u * 256 * 10);
  EXPECT_EQ(output_floats(p), 3u * 256);
  p.kind = instruction_peak_kind::bf16_hfma2;
  EXPECT_EQ(flops(p), 3u * 256 * 10 * 8 * 4);
  p.kind = instruction_peak_kind::bf16;
  // 3 blocks x 10 iterations x 8 wgmmas x m64n256k16 (2^19 FLOP).
  EXPECT_EQ(flops_per_instruction(p.kind), 1u << 19);
  EXPECT_EQ(flops(p), 3ULL * 10 * 8 * (1u << 19));
  EXPECT_EQ(operand_words(p), (64u + 256u) * 32 / 4);
  EXPECT_EQ(output_floats(p), 3u * 64 * 256);
  EXPECT_EQ(threads_per_block(p.kind), 128);
  p.kind = instruction_peak_kind::fp8_e4m3;
  EXPECT_EQ(flops_per_instruction(p.kind), 1u << 20);
}

TEST(InstructionPeakPlan, ValidateRejectsBadPlans) {
  EXPECT_THROW(validate(instruction_peak_plan{instruction_peak_kind::fp32, 0, 1}),
               std::invalid_argument);
  EXPECT_THROW(validate(instruction_peak_plan{instruction_peak_kind::fp32, 1, 0}),
               std::invalid_argument);
  EXPECT_THROW(validate(instruction_peak_plan{instruction_peak_kind::bf16, 1 << 20, 1u << 30}),
               std::invalid_argument);
  EXPECT_NO_THROW(validate(instruction_peak_plan{instruction_peak_kind::bf16, 396, 4000}));
}

TEST(InstructionPeakReference, OperandsKeepEveryChainFinite) {
  for (auto k : {instruction_peak_kind::fp32, instruction_peak_kind::bf16_hfma2}) {
    const instruction_peak_plan p{k, 2, 1};
    const auto w = cpu::make_instruction_peak_operands(p, 5);
    ASSERT_EQ(w.size(), operand_words(p));
    for (std::size_t i = 0; i < w.size(); i += k_peak_words) {
      // a (word 0) in [0.95, 0.996) before rounding, both halves for bf16: |a| < 1 keeps c = c * a
      // + b bounded.
      const float a = k == instruction_peak_kind::fp32
                          ? std::bit_cast<float>(w[i])
                          : cpu::bf16_to_float(static_cast<std::uint16_t>(w[i] >> 16));
      EXPECT_GE(a, 0.94f);  // 0.95 rounds to 0.949 in bf16
      EXPECT_LT(a, 1.0f);
    }
    // Deterministic per seed.
    EXPECT_EQ(cpu::make_instruction_peak_operands(p, 5), w);
    EXPECT_NE(cpu::make_instruction_peak_operands(p, 6), w);
  }
  const instruction_peak_plan mma{instruction_peak_kind::fp8_e4m3, 5, 1};
  EXPECT_EQ(cpu::make_instruction_peak_operands(mma, 5).size(), k_peak_mma_operand_bytes / 4);
}

TEST(InstructionPeakReference, ScalarChainsByHand) {
  // Thread 0: a = 0.5, b = 1, every c starts at 0: after two iterations c = 1.5 (0 -> 1 -> 1.5);
  // the output sums the eight chains: 12 (fp32), and both bf16 halves: 24. Other threads: zeros.
  instruction_peak_plan p{instruction_peak_kind::fp32, 1, 2};
  std::vector<std::uint32_t> w(operand_words(p), 0);
  w[0] = std::bit_cast<std::uint32_t>(0.5f);
  w[1] = std::bit_cast<std::uint32_t>(1.0f);
  auto out = cpu::instruction_peak_scalar(p, w);
  ASSERT_EQ(out.size(), 256u);
  EXPECT_EQ(out[0], 12.0f);
  EXPECT_EQ(out[1], 0.0f);
  p.kind = instruction_peak_kind::bf16_hfma2;
  const std::uint32_t half = cpu::float_to_bf16(0.5f), one = cpu::float_to_bf16(1.0f);
  w[0] = half | half << 16;
  w[1] = one | one << 16;
  out = cpu::instruction_peak_scalar(p, w);
  EXPECT_EQ(out[0], 24.0f);
  p.iterations = 1;  // 0 -> 1: 8 chains x 2 halves
  EXPECT_EQ(cpu::instruction_peak_scalar(p, w)[0], 16.0f);
  EXPECT_THROW(cpu::instruction_peak_scalar(p, std::span(w).first(10)), std::invalid_argument);
}

TEST(InstructionPeakReference, MmaTileIsTheProductTimesTheWgmmaCount) {
  // A all 1, B all 0.5: every output is K * 0.5 per wgmma; 2 iterations x 8 wgmmas.
  instruction_peak_plan p{instruction_peak_kind::bf16, 2, 2};
  std::vector<std::uint32_t> w(operand_words(p));
  const std::uint32_t one = cpu::float_to_bf16(1.0f), half = cpu::float_to_bf16(0.5f);
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = i < 64 * 32 / 4 ? one | one << 16 : half | half << 16;
  auto r = cpu::instruction_peak_mma(p, w);
  ASSERT_EQ(r.value.size(), 2u * 64 * 256);
  for (std::size_t i = 0; i < r.value.size(); ++i) {
    ASSERT_EQ(r.value[i], 16 * 16 * 0.5) << i;
    ASSERT_EQ(r.magnitude[i], 16 * 16 * 0.5) << i;
  }
  // e4m3, K = 32, one B column negated: its outputs flip sign, magnitudes stay.
  p.kind = instruction_peak_kind::fp8_e4m3;
  const std::uint32_t one8 = cpu::float_to_fp8_e4m3(1.0f), half8 = cpu::float_to_fp8_e4m3(0.5f);
  const std::uint32_t neg8 = cpu::float_to_fp8_e4m3(-0.5f);
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::uint32_t b = i < 64 * 32 / 4 ? one8 : half8;
    w[i] = b | b << 8 | b << 16 | b << 24;
  }
  for (int j = 0; j < 8; ++j)
    w[64 * 32 / 4 + 3 * 8 + j] = neg8 | neg8 << 8 | neg8 << 16 | neg8 << 24;
  r = cpu::instruction_peak_mma(p, w);
  EXPECT_EQ(r.value[0], 16 * 32 * 0.5);
  EXPECT_EQ(r.value[3], -16 * 32 * 0.5);
  EXPECT_EQ(r.magnitude[3], 16 * 32 * 0.5);
  EXPECT_EQ(r.value[64 * 256 + 5 * 256 + 3], -16 * 32 * 0.5);  // block 1, row 5, column 3
}

TEST(InstructionPeakReference, ScalarOutputsDependOnTheIterationCount) {
  // The premise of the GPU test's bit-for-bit comparison (same seeds and counts there): a kernel
  // that ran one iteration too few would differ from the reference on many outputs.
  for (auto kind : {instruction_peak_kind::fp32, instruction_peak_kind::bf16_hfma2}) {
    for (int grid : {1, 3, 7}) {
      for (std::uint32_t iterations : {5u, 64u, 101u, 129u}) {
        const instruction_peak_plan p{kind, grid, iterations};
        const auto w = cpu::make_instruction_peak_operands(p, 31 + grid);
        const auto ref = cpu::instruction_peak_scalar(p, w);
        const auto shorter = cpu::instruction_peak_scalar({kind, grid, iterations - 1}, w);
        std::size_t moved = 0;
        for (std::size_t i = 0; i < ref.size(); ++i) moved += ref[i] != shorter[i];
        EXPECT_GT(moved, ref.size() / 4) << name(kind) << " grid " << grid << " at " << iterations;
      }
    }
  }
}
