// Instruction-peak kernels of `ridgeline probe` (launcher: cuda/instruction_peak.hpp; CPU
// references: instruction_peak_reference.hpp): compute-only loops that issue one instruction back
// to back with its operands in registers and shared memory. The timed loop touches no global
// memory: operands are read once before it, one result per thread (scalar) or one accumulator tile
// per block (tensor) is written after it. Their rate is the instruction throughput that a
// roofline's compute ceiling is (docs/roofline.md). No CUDA types; C++17 so .cu files include it.
//
// Scalar kinds (fp32: FFMA; bf16_hfma2: HFMA2.BF16 on bf16x2 pairs), blocks of 256 threads. Thread
// g = block * 256 + t reads k_peak_words 32-bit words at operands[g * k_peak_words]: a, b, then
// the initial c[0..7] (fp32 values, or bf16x2 pairs). It runs `iterations` times
//   for k < 8: c[k] = fma(c[k], a, b)
// (eight chains share one operand pair, so consecutive FMAs read a and b from the operand reuse
// cache), then writes out[g] = ((c[0] + c[1]) + ...) + c[7] in fp32 (for bf16x2 the low half of
// each c[k] then its high half). FLOPs = grid * 256 * iterations * 8 * (2 FFMA, 4 HFMA2).
//
// Tensor kinds (bf16: wgmma m64n256k16 bf16, fp8_e4m3: wgmma m64n256k32 e4m3; fp32 accumulators;
// sm_90a), blocks of one warpgroup (128 threads). operands = A ([64][32 bytes], row-major, K
// contiguous) then B ([256][32 bytes], row n holding column n of B, K contiguous), the same for
// every block. Each block loads A into registers and B into shared memory, issues
// iterations * k_peak_mma_group wgmmas D += A * B into one accumulator tile, and writes it:
// out[block][64][256] = (iterations * k_peak_mma_group) * (A * B), accumulated in fp32.
// FLOPs = grid * iterations * k_peak_mma_group * 2 * 64 * 256 * K (K = 16 bf16, 32 e4m3).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/kernels/intensity_plan.hpp"  // k_mma_threads, k_mma_m, k_mma_k_bytes

namespace ridgeline {

// Names are the keys of a GPU profile's instruction_peaks ("fp32", "bf16_hfma2", "bf16",
// "fp8_e4m3").
enum class instruction_peak_kind { fp32, bf16_hfma2, bf16, fp8_e4m3 };

inline constexpr std::array<instruction_peak_kind, 4> k_all_instruction_peak_kinds = {
    instruction_peak_kind::fp32, instruction_peak_kind::bf16_hfma2, instruction_peak_kind::bf16,
    instruction_peak_kind::fp8_e4m3};

std::string_view name(instruction_peak_kind k);
// Parses the names above; throws std::invalid_argument naming the accepted values.
instruction_peak_kind parse_instruction_peak_kind(std::string_view s);
// The instruction as Nsight Compute's SASS names it, with its shape: "FFMA", "HFMA2.BF16",
// "HGMMA (wgmma m64n256k16 bf16, fp32 accumulate)", "QGMMA (wgmma m64n256k32 e4m3, ...)".
std::string_view instruction_name(instruction_peak_kind k);
bool is_mma(instruction_peak_kind k);
// The GEMM dtype of the probe whose peak this instruction peak stands beside (fp32, bf16,
// fp8_e4m3); none for HFMA2, which no GEMM uses.
std::optional<dtype> gemm_dtype(instruction_peak_kind k);

inline constexpr int k_peak_scalar_threads = 256;
inline constexpr int k_peak_chains = 8;
inline constexpr int k_peak_words = 2 + k_peak_chains;  // a, b, c[0..7]
inline constexpr int k_peak_mma_n = 256;
inline constexpr int k_peak_mma_group = 8;  // wgmmas per committed group
inline constexpr std::size_t k_peak_mma_operand_bytes =
    static_cast<std::size_t>(k_mma_m + k_peak_mma_n) * k_mma_k_bytes;

struct instruction_peak_plan {
  instruction_peak_kind kind = instruction_peak_kind::fp32;
  int grid = 1;                  // blocks
  std::uint32_t iterations = 1;  // loop trips per thread (scalar) or per warpgroup (tensor)
};

// Checks the plan (no GPU needed); throws std::invalid_argument with the offending values.
void validate(const instruction_peak_plan& p);
// FLOPs of one instruction: 2 (FFMA), 4 (HFMA2), 2 * 64 * 256 * K (wgmma).
std::uint64_t flops_per_instruction(instruction_peak_kind k);
// Exact FLOPs of one launch.
std::uint64_t flops(const instruction_peak_plan& p);
// Threads per block of the kind's kernel.
int threads_per_block(instruction_peak_kind k);
// Sizes of the operand buffer (32-bit words) and of the output (floats) of one launch.
std::size_t operand_words(const instruction_peak_plan& p);
std::size_t output_floats(const instruction_peak_plan& p);

}  // namespace ridgeline
