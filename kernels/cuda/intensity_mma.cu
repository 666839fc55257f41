// Tensor-core intensity kernels: wgmma.mma_async (sm_90a only; this file is built with
// -arch=sm_90a, see kernels/CMakeLists.txt) at a chosen FLOP per DRAM byte. The arithmetic and the
// FLOP/byte accounting are specified in intensity_plan.hpp; launch_intensity (intensity.cu)
// validates and calls launch_intensity_mma here.
//
// One block = one warpgroup (128 threads). B (N x K, K contiguous) sits in shared memory without
// swizzle; A comes from registers (the wgmma A fragment), so the streamed data can be folded into
// it: the wgmma reads what was loaded. Accumulators are fp32 registers (N / 2 per thread). The
// layouts and the wgmma wrappers are in wgmma.cuh.
//
// Per chunk every thread issues its 8 streaming loads, folds them into x, and, on an MMA chunk,
// waits for its previous wgmma group (A is about to change under it), folds x into A and issues
// mma_per_chunk wgmmas as one committed group, which runs while the next chunk loads. Variants:
// N = 8 (4 accumulators; 8 blocks per SM, as many loads in flight as the read kernel: the
// memory-bound end), N = 256 (128 accumulators, 167 registers: 3 blocks per SM whose groups
// overlap: the compute-bound end), N = 64 between. Napkin: m64n256k16 bf16 is 2^19 FLOP, 128 cycles of one
// SM's tensor cores at ~990 TFLOP/s dense; one per 16 KiB chunk is 32 FLOP/byte.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>

#include "check.hpp"
#include "intensity.hpp"
#include "wgmma.cuh"

namespace ridgeline::cuda::detail {
namespace {

template <class Op, int N>
__global__ void __launch_bounds__(k_mma_threads, N == 256 ? 3 : (N == 64 ? 6 : 8))
    mma_kernel(const int4* __restrict__ src, std::uint64_t n_chunks, std::uint32_t chunks_per_mma,
               std::uint32_t mma_per_chunk, const std::uint32_t* __restrict__ a0,
               const int4* __restrict__ b, bool write_tile, float* __restrict__ out,
               std::uint32_t* __restrict__ fold) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ __align__(128) int4 b_smem[2 * N];  // [N / 8][2][8] core matrices of 16 bytes
  const int t = static_cast<int>(threadIdx.x);
  stage_b<N>(b_smem, b, t);
  const std::uint64_t desc = b_descriptor(b_smem);
  std::uint32_t a[4];
  load_a_fragment(a0, t, a);
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  std::uint32_t x = 0;
  const std::uint32_t mma_mask = chunks_per_mma - 1;
  constexpr std::uint64_t vectors_per_chunk = k_intensity_chunk_bytes / 16;
  for (std::uint64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const int4* base = src + c * vectors_per_chunk + t;
    int4 v[k_mma_loads];
#pragma unroll
    for (int u = 0; u < k_mma_loads; ++u) v[u] = __ldcs(base + u * k_mma_threads);
#pragma unroll
    for (int u = 0; u < k_mma_loads; ++u) {
      x ^= static_cast<std::uint32_t>(v[u].x ^ v[u].y ^ v[u].z ^ v[u].w);
    }
    if ((static_cast<std::uint32_t>(c + 1) & mma_mask) != 0) continue;
    wgmma_wait_all();  // the previous group still reads a[]
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      asm volatile("" : "+r"(a[r])::"memory");  // not before the wait
      a[r] ^= x & Op::mantissa;
    }
    x = 0;
    wgmma_fence();
    pin(d);
    for (std::uint32_t m = 0; m < mma_per_chunk; ++m) wgmma<Op, N>(d, a, desc);
    wgmma_commit();
    pin(d);
  }
  wgmma_wait_all();
  pin(d);
  fold[blockIdx.x * k_mma_threads + t] = x;
  if (write_tile) {
    store_tile<N>(d, out + static_cast<std::size_t>(blockIdx.x) * k_mma_m * N, t);
  } else {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < N / 2; ++i) s += d[i];
    out[blockIdx.x * k_mma_threads + t] = s;
  }
#else
  __trap();  // wgmma needs sm_90a; launch_intensity refuses other devices
#endif
}

template <class Op, int N>
void launch(const intensity_plan& p, const void* src, const void* a, const void* b, float* out,
            std::uint32_t* fold, cudaStream_t s) {
  mma_kernel<Op, N><<<p.grid, k_mma_threads, 0, s>>>(
      static_cast<const int4*>(src), chunks(p), p.chunks_per_mma, p.mma_per_chunk,
      static_cast<const std::uint32_t*>(a), static_cast<const int4*>(b), p.store_tile, out, fold);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

template <class Op, int N>
int blocks_per_sm() {
  int blocks = 0;
  RIDGELINE_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, mma_kernel<Op, N>, k_mma_threads, 0));
  return blocks;
}

}  // namespace

void launch_intensity_mma(const intensity_plan& p, const void* src, const void* a, const void* b,
                          float* out, std::uint32_t* fold, cudaStream_t s) {
  const bool bf16 = p.kernel == intensity_kernel::mma_bf16;
  switch (p.mma_n) {
    case 8:
      return bf16 ? launch<mma_bf16, 8>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 8>(p, src, a, b, out, fold, s);
    case 64:
      return bf16 ? launch<mma_bf16, 64>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 64>(p, src, a, b, out, fold, s);
    case 256:
      return bf16 ? launch<mma_bf16, 256>(p, src, a, b, out, fold, s)
                  : launch<mma_e4m3, 256>(p, src, a, b, out, fold, s);
    default:
      throw std::invalid_argument("launch_intensity_mma: mma_n must be 8, 64 or 256");
  }
}

int intensity_mma_blocks_per_sm(intensity_kernel k, int mma_n) {
  const bool bf16 = k == intensity_kernel::mma_bf16;
  switch (mma_n) {
    case 8:
      return bf16 ? blocks_per_sm<mma_bf16, 8>() : blocks_per_sm<mma_e4m3, 8>();
    case 64:
      return bf16 ? blocks_per_sm<mma_bf16, 64>() : blocks_per_sm<mma_e4m3, 64>();
    case 256:
      return bf16 ? blocks_per_sm<mma_bf16, 256>() : blocks_per_sm<mma_e4m3, 256>();
    default:
      throw std::invalid_argument("intensity_mma_blocks_per_sm: mma_n must be 8, 64 or 256");
  }
}

}  // namespace ridgeline::cuda::detail
