// Naive CPU references of the instruction-peak kernels (what they compute:
// instruction_peak_plan.hpp), and the operands both sides read. The scalar kinds are redone bit
// for bit (std::fma in fp32; HFMA2.BF16 as one exact product and sum rounded once to nearest even
// in bf16, cpu::fma_bf16), the tensor kinds as exact matrix products in double.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ridgeline/kernels/instruction_peak_plan.hpp"

namespace ridgeline::cpu {

// [operand_words(p)] seeded operands in the layout of instruction_peak_plan.hpp. Scalar kinds:
// a in [0.95, 0.996) and b, c[k] in [-1, 1), so every chain c = c * a + b stays finite and moves
// toward b / (1 - a) (for bf16 each half drawn so and rounded to bf16: a stays below 1). Tensor
// kinds: A and B uniform in [-1, 1), rounded to bf16 or e4m3.
std::vector<std::uint32_t> make_instruction_peak_operands(const instruction_peak_plan& p,
                                                          std::uint32_t seed);

// Scalar kinds: the [grid * 256] per-thread outputs, bit-exact.
std::vector<float> instruction_peak_scalar(const instruction_peak_plan& p,
                                           std::span<const std::uint32_t> operands);

struct instruction_peak_mma_result {
  std::vector<double> value;      // [grid][64][256]: (iterations * group) * (A * B)
  std::vector<double> magnitude;  // the same over |a * b| (scale for the tolerance)
};
// Tensor kinds.
instruction_peak_mma_result instruction_peak_mma(const instruction_peak_plan& p,
                                                 std::span<const std::uint32_t> operands);

}  // namespace ridgeline::cpu
