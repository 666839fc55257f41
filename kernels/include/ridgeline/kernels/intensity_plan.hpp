// Intensity-sweep kernels (a mixbench-style measured roofline; launcher in cuda/intensity.hpp,
// CPU references in intensity_reference.hpp): the plan both sides read and how FLOPs and bytes are
// counted. No CUDA types; C++17 so that .cu files can include it.
//
// Every kernel streams `bytes` of a source buffer once, in chunks of 16 KiB (chunk c is bytes
// [16 KiB * c, 16 KiB * (c + 1)); block b handles chunks b, b + grid, ...). Bytes counted = bytes
// read from the source; outputs (one float per thread, plus for the MMA kernels one uint32 per
// thread and, in tests only, the 64 x N accumulator tile per block) are not counted.
//
// Scalar kernels (256 threads, 4 independent 16-byte loads per thread per chunk; thread t loads
// vectors u * 256 + t of the chunk, u = 0..3, each into its own pair of chains p[u], q[u]). A
// vector holds four 32-bit words w0..w3 (one fp32, or a bf16x2/fp16x2 pair each). With
// fma_per_vector = f:
//   f == 1: p = fma(p, w0 ^ (w2 & mantissa), w1 ^ (w3 & mantissa))   (w2, w3 folded into the low
//           mantissa bits: exponents and signs untouched, so never NaN/Inf)
//   f a multiple of 16: for (a, b) in ((w0, w1), (w2, w3)): f / 16 times { for k < 8:
//           c[k] = fma(c[k], a, b) } -- eight chains c[0..7] per thread share each operand pair,
//           so consecutive FMAs reuse a and b from the operand cache (three distinct registers
//           per FFMA otherwise cost a register-bank conflict on most of them: measured on an
//           H100, 57% of the FFMA rate with the form below)
//   f even otherwise: f / 2 times { p = fma(p, w0, w1); q = fma(q, w2, w3) }
// FLOPs = vectors * f * (2 for FFMA, 4 for HFMA2), so intensity = f * 2 / 16 (fp32) or f * 4 / 16.
// Output per thread: s = 0; for u: s += p[u] then q[u]; then for k: s += c[k] (fp32 adds; for
// x2 types low then high; chains a form does not use stay 0).
//
// Tensor-core kernels (one warpgroup of 128 threads per block; 8 loads per thread per chunk,
// vectors u * 128 + t). Each thread XOR-folds everything it loads into x. After chunk c with
// (c + 1) % chunks_per_mma == 0 the block issues mma_per_chunk wgmma m64nNk16 (bf16) / m64nNk32
// (e4m3) with fp32 accumulators: before them every thread sets a[r] ^= x & mantissa for its 4 A
// registers (fragment of a 64 x K A tile that starts as the `a` operand) and clears x; B (N x K,
// K contiguous) is fixed in shared memory. So D = sum over MMA groups of mma_per_chunk * A_g * B.
// FLOPs = floor(chunks / chunks_per_mma) * mma_per_chunk * 2 * 64 * N * K; bytes = chunks * 16 KiB.
// Outputs: the final x per thread (data folded after the last MMA), and per thread the sum of its
// accumulator registers in register order, or (store_tile) the whole 64 x N tile per block.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ridgeline {

enum class intensity_kernel { ffma_fp32, hfma2_bf16, hfma2_fp16, mma_bf16, mma_fp8 };

inline constexpr std::array<intensity_kernel, 5> k_all_intensity_kernels = {
    intensity_kernel::ffma_fp32, intensity_kernel::hfma2_bf16, intensity_kernel::hfma2_fp16,
    intensity_kernel::mma_bf16, intensity_kernel::mma_fp8};

std::string_view name(intensity_kernel k);
// Parses the names above; throws std::invalid_argument naming the accepted values.
intensity_kernel parse_intensity_kernel(std::string_view s);
bool is_mma(intensity_kernel k);

inline constexpr std::uint64_t k_intensity_chunk_bytes = 16384;
inline constexpr int k_scalar_threads = 256;
inline constexpr int k_scalar_loads = 4;  // 16-byte loads per thread per chunk
inline constexpr int k_mma_threads = 128;
inline constexpr int k_mma_loads = 8;
inline constexpr int k_mma_m = 64;
inline constexpr int k_mma_k_bytes = 32;  // K = 16 bf16 or 32 e4m3: 32 bytes per row either way
inline constexpr std::array<int, 3> k_mma_n_values = {8, 64, 256};

struct intensity_plan {
  intensity_kernel kernel = intensity_kernel::ffma_fp32;
  std::uint64_t bytes = k_intensity_chunk_bytes;  // streamed; a multiple of the chunk
  int grid = 1;                                   // blocks
  std::uint32_t fma_per_vector = 2;               // scalar kernels: 1 or even
  int mma_n = 256;                                // MMA kernels: 8, 64 or 256
  std::uint32_t chunks_per_mma = 1;               // a power of two
  std::uint32_t mma_per_chunk = 1;
  bool store_tile = false;  // MMA kernels: write each block's 64 x N tile (tests), else sums
};

// Checks the plan (no GPU needed); throws std::invalid_argument with the offending values.
void validate(const intensity_plan& p);
std::uint64_t chunks(const intensity_plan& p);
// FLOPs of one instruction: 2 (FFMA), 4 (HFMA2), 2 * 64 * N * K (wgmma).
std::uint64_t flops_per_instruction(const intensity_plan& p);
// Exact FLOPs one launch executes (see above) and its actual FLOP per byte read.
std::uint64_t flops(const intensity_plan& p);
double flop_per_byte(const intensity_plan& p);
// The plan for a nominal intensity (FLOP per byte); throws std::invalid_argument when the
// kernel cannot hit it exactly (intensity must be a power of two, >= 1/4 for the scalar kernels
// with f >= 1, any power of two for the MMA kernels as a ratio of MMAs to chunks).
intensity_plan make_intensity_plan(intensity_kernel k, double intensity, std::uint64_t bytes,
                                   int grid, int mma_n = 256);
// Sizes of the outputs a launch writes.
std::size_t output_floats(const intensity_plan& p);
std::size_t output_folds(const intensity_plan& p);  // 0 for the scalar kernels

}  // namespace ridgeline
