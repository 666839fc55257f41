// Scalar instruction-peak kernels (FFMA, HFMA2.BF16) and the launcher of every instruction-peak
// kernel (see instruction_peak.hpp; the arithmetic is specified in instruction_peak_plan.hpp).
//
// Each thread runs eight independent chains c[k] = fma(c[k], a, b) that share one operand pair, so
// the SASS reads a and b from the operand reuse cache and only c from the register file (no bank
// conflicts), as the intensity kernels' shared form does. Up to 8 blocks of 256 threads per SM: 16
// warps per SM sub-partition, each with 8 independent FMAs in flight, against a 4-cycle FMA
// latency and one warp instruction issued per cycle. The loop is unrolled to 64 x 8 = 512 FMAs per
// trip, so its counter, compare and branch take 3 of 515 issue slots (0.6%). Nothing but the
// operands (read once) and one float per thread touches memory. Napkin: an H100 SXM issues
// 132 SMs x 128 lanes x 2 FLOP x 1.98 GHz = 66.9 TFLOP/s of FFMA; the probe sizes `iterations` so
// that a launch takes a few milliseconds.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "instruction_peak.hpp"
#include "intensity.hpp"  // detail::require_sm90
#include "scalar_fma.cuh"

namespace ridgeline::cuda {
namespace {

using detail::from_bits;
using detail::scalar_traits;

constexpr std::uint32_t k_peak_unroll = 64;

template <intensity_kernel K>
__global__ void __launch_bounds__(k_peak_scalar_threads)
    scalar_peak_kernel(const std::uint32_t* __restrict__ operands, std::uint32_t iterations,
                       float* __restrict__ out) {
  using tr = scalar_traits<K>;
  using T = typename tr::type;
  const std::size_t g = static_cast<std::size_t>(blockIdx.x) * k_peak_scalar_threads + threadIdx.x;
  const std::uint32_t* w = operands + g * k_peak_words;  // a, b, c[0..7]
  const T a = from_bits<T>(w[0]), b = from_bits<T>(w[1]);
  T c[k_peak_chains];
#pragma unroll
  for (int k = 0; k < k_peak_chains; ++k) c[k] = from_bits<T>(w[2 + k]);
  const std::uint32_t trips = iterations / k_peak_unroll;
  for (std::uint32_t i = 0; i < trips; ++i) {
#pragma unroll
    for (std::uint32_t j = 0; j < k_peak_unroll; ++j) {
#pragma unroll
      for (int k = 0; k < k_peak_chains; ++k) c[k] = tr::fma(c[k], a, b);
    }
  }
  for (std::uint32_t i = 0; i < iterations % k_peak_unroll; ++i) {
#pragma unroll
    for (int k = 0; k < k_peak_chains; ++k) c[k] = tr::fma(c[k], a, b);
  }
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < k_peak_chains; ++k) s = tr::add_to(s, c[k]);
  out[g] = s;
}

template <intensity_kernel K>
void launch_scalar_peak(const instruction_peak_plan& p, const std::uint32_t* operands, float* out,
                        cudaStream_t s) {
  scalar_peak_kernel<K><<<p.grid, k_peak_scalar_threads, 0, s>>>(operands, p.iterations, out);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

template <intensity_kernel K>
int scalar_blocks_per_sm() {
  int blocks = 0;
  RIDGELINE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, scalar_peak_kernel<K>,
                                                                     k_peak_scalar_threads, 0));
  return std::max(1, std::min(blocks, 8));
}

}  // namespace

void launch_instruction_peak(const instruction_peak_plan& p, const std::uint32_t* operands,
                             float* out, cudaStream_t s) {
  validate(p);
  if (!operands || !out) {
    throw std::invalid_argument("launch_instruction_peak: null operands or output");
  }
  if (reinterpret_cast<std::uintptr_t>(operands) % 16 != 0) {
    throw std::invalid_argument("launch_instruction_peak: the operands must be 16-byte aligned");
  }
  switch (p.kind) {
    case instruction_peak_kind::fp32:
      return launch_scalar_peak<intensity_kernel::ffma_fp32>(p, operands, out, s);
    case instruction_peak_kind::bf16_hfma2:
      return launch_scalar_peak<intensity_kernel::hfma2_bf16>(p, operands, out, s);
    case instruction_peak_kind::bf16:
    case instruction_peak_kind::fp8_e4m3:
      detail::require_sm90(std::string(instruction_name(p.kind)).c_str());
      return detail::launch_instruction_peak_mma(p, operands, out, s);
  }
}

int instruction_peak_blocks_per_sm(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::fp32:
      return scalar_blocks_per_sm<intensity_kernel::ffma_fp32>();
    case instruction_peak_kind::bf16_hfma2:
      return scalar_blocks_per_sm<intensity_kernel::hfma2_bf16>();
    case instruction_peak_kind::bf16:
    case instruction_peak_kind::fp8_e4m3:
      detail::require_sm90(std::string(instruction_name(k)).c_str());
      return detail::instruction_peak_mma_blocks_per_sm(k);
  }
  return 1;
}

}  // namespace ridgeline::cuda
