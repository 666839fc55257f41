// Tensor-core instruction-peak kernels: wgmma.mma_async m64n256k16 bf16 and m64n256k32 e4m3 with
// fp32 accumulators, issued back to back (sm_90a only; this file is built with -arch=sm_90a, see
// kernels/CMakeLists.txt). The arithmetic is specified in instruction_peak_plan.hpp;
// launch_instruction_peak (instruction_peak.cu) validates and calls launch_instruction_peak_mma.
//
// One block = one warpgroup (128 threads). Before the loop each block stages B (256 x K) in shared
// memory and loads its A fragment (64 x K) into registers (layouts: wgmma.cuh); then it issues
// groups of k_peak_mma_group wgmmas into the same 128 accumulator registers per thread, keeping at
// most two committed groups in flight (wait_group 1 after each commit). A and B never change, so
// no group waits for another to free its operands, and wgmmas of one shape into the same
// accumulators are ordered by the hardware. 128 accumulators + 4 A registers: 3 blocks per SM
// (launch bounds), whose groups interleave on the SM's tensor cores. Nothing touches global memory
// in the loop; the 64 x 256 fp32 tile (64 KiB per block) is written once at the end. Napkin:
// m64n256k16 bf16 is 2^19 FLOP, 128 cycles of one SM's tensor cores at the dense rate (989 TFLOP/s
// = 132 SMs x 4096 FLOP per cycle x 1.83 GHz); a group of 8 is ~1000 cycles.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>

#include "check.hpp"
#include "instruction_peak.hpp"
#include "wgmma.cuh"

namespace ridgeline::cuda::detail {
namespace {

template <class Op>
__global__ void __launch_bounds__(k_mma_threads, 3)
    mma_peak_kernel(const std::uint32_t* __restrict__ operands, std::uint32_t iterations,
                    float* __restrict__ out) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int N = k_peak_mma_n;
  __shared__ __align__(128) int4 b_smem[2 * N];  // [N / 8][2][8] core matrices of 16 bytes
  const int t = static_cast<int>(threadIdx.x);
  // operands: A [64][32 bytes] then B [256][32 bytes].
  stage_b<N>(b_smem, reinterpret_cast<const int4*>(operands + k_mma_m * k_mma_k_bytes / 4), t);
  const std::uint64_t desc = b_descriptor(b_smem);
  std::uint32_t a[4];
  load_a_fragment(operands, t, a);
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  for (std::uint32_t i = 0; i < iterations; ++i) {
    wgmma_fence();
    pin(d);
#pragma unroll
    for (int m = 0; m < k_peak_mma_group; ++m) wgmma<Op, N>(d, a, desc);
    wgmma_commit();
    wgmma_wait<1>();
    pin(d);
  }
  wgmma_wait_all();
  pin(d);
  store_tile<N>(d, out + static_cast<std::size_t>(blockIdx.x) * k_mma_m * N, t);
#else
  __trap();  // wgmma needs sm_90a; launch_instruction_peak refuses other devices
#endif
}

template <class Op>
void launch(const instruction_peak_plan& p, const std::uint32_t* operands, float* out,
            cudaStream_t s) {
  mma_peak_kernel<Op><<<p.grid, k_mma_threads, 0, s>>>(operands, p.iterations, out);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

template <class Op>
int blocks_per_sm() {
  int blocks = 0;
  RIDGELINE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, mma_peak_kernel<Op>,
                                                                     k_mma_threads, 0));
  return blocks;
}

}  // namespace

void launch_instruction_peak_mma(const instruction_peak_plan& p, const std::uint32_t* operands,
                                 float* out, cudaStream_t s) {
  switch (p.kind) {
    case instruction_peak_kind::bf16:
      return launch<mma_bf16>(p, operands, out, s);
    case instruction_peak_kind::fp8_e4m3:
      return launch<mma_e4m3>(p, operands, out, s);
    default:
      throw std::invalid_argument("launch_instruction_peak_mma: not a tensor kind");
  }
}

int instruction_peak_mma_blocks_per_sm(instruction_peak_kind k) {
  switch (k) {
    case instruction_peak_kind::bf16:
      return blocks_per_sm<mma_bf16>();
    case instruction_peak_kind::fp8_e4m3:
      return blocks_per_sm<mma_e4m3>();
    default:
      throw std::invalid_argument("instruction_peak_mma_blocks_per_sm: not a tensor kind");
  }
}

}  // namespace ridgeline::cuda::detail
