// Weight-streaming GEMM for decode batches (2 ... 128 tokens) on tensor cores, mma.sync m16n8k16
// bf16 -> fp32. y[t][o] = sum_i x[t][i] w[o][i]: the weights W [out][in] are the MMA's A operand
// (rows = output features), the activations X [tokens][in] its B operand.
//
// Loads straight from global memory into fragment registers, no shared memory: because a dot
// product may sum its k terms in any order, the k index inside each 64-wide block is permuted so
// that every thread's fragment elements are 32 contiguous bytes of one row. Thread (g = lane / 4,
// t = lane % 4) holds W[row0 + g][kb + 16t .. 16t + 15] and W[row0 + g + 8][...] (two 16-byte
// loads each), and the same k window of X for token g of each 8-token tile; k-step s of the block
// uses elements 4s .. 4s + 3 of that window: logical k (2t, 2t+1) -> physical 16t + 4s + (0, 1),
// logical k (2t + 8, 2t + 9) -> 16t + 4s + (2, 3), identically for A and B. The 4 threads of a
// group cover a row's 128 contiguous bytes, so every weight load is a full 128-byte line.
//
// A warp owns 16 output features and a k range (split-K over the grid so that ~16 warps per SM
// stream weights); partial sums go to an fp32 workspace [splits][tokens][out] and a second kernel
// adds them in a fixed order (deterministic) and converts. Napkin, Llama-2-7B block at 64 tokens:
// 405 MB of weights (~130 us at 3.1 TB/s), 52 GFLOP (~90 us at 600 TFLOP/s of mma.sync).
#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "linear.hpp"

namespace ridgeline::cuda {
namespace {

constexpr int k_warps = 4;  // per block, each its own 16 output features

__device__ __forceinline__ void mma_bf16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint4 ld_stream(const uint4* p) { return __ldcs(p); }

// NT 8-token tiles. w, x: 16-byte aligned; k (in_features) a multiple of 64 for the main loop
// (the launcher checks); blocks of 64 beyond k_end are not touched.
template <int NT>
__global__ void __launch_bounds__(k_warps * 32)
    skinny_kernel(const bf16_bits* __restrict__ x, const bf16_bits* __restrict__ w,
                  float* __restrict__ partial, int tokens, int k, int m, int k_blocks_per_split) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = (blockIdx.x * k_warps + warp) * 16;
  const int split = blockIdx.y;
  const int kb_begin = split * k_blocks_per_split;
  const int kb_end = min(kb_begin + k_blocks_per_split, k / 64);
  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  if (row0 < m) {
    // Rows past m (m not a multiple of 16) read row m - 1 and are not stored.
    const int r_lo = min(row0 + g, m - 1), r_hi = min(row0 + g + 8, m - 1);
    const uint4* w_lo = reinterpret_cast<const uint4*>(w + static_cast<std::size_t>(r_lo) * k) + 2 * t;
    const uint4* w_hi = reinterpret_cast<const uint4*>(w + static_cast<std::size_t>(r_hi) * k) + 2 * t;
    // Token rows past `tokens` read token 0 (their results are discarded).
    const uint4* x_row[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int tok = j * 8 + g < tokens ? j * 8 + g : 0;
      x_row[j] = reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(tok) * k) + 2 * t;
    }
    // Double-buffered weights: block kb + 1 is in flight while kb is multiplied.
    uint4 wa[2][4];
    int kb = kb_begin;
    if (kb < kb_end) {
      wa[0][0] = ld_stream(w_lo + kb * 8);
      wa[0][1] = ld_stream(w_lo + kb * 8 + 1);
      wa[0][2] = ld_stream(w_hi + kb * 8);
      wa[0][3] = ld_stream(w_hi + kb * 8 + 1);
    }
    int cur = 0;
    for (; kb < kb_end; ++kb) {
      if (kb + 1 < kb_end) {
        wa[cur ^ 1][0] = ld_stream(w_lo + (kb + 1) * 8);
        wa[cur ^ 1][1] = ld_stream(w_lo + (kb + 1) * 8 + 1);
        wa[cur ^ 1][2] = ld_stream(w_hi + (kb + 1) * 8);
        wa[cur ^ 1][3] = ld_stream(w_hi + (kb + 1) * 8 + 1);
      }
      const unsigned* lo = reinterpret_cast<const unsigned*>(&wa[cur][0]);  // 8 regs, row g
      const unsigned* hi = reinterpret_cast<const unsigned*>(&wa[cur][2]);  // 8 regs, row g + 8
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        uint4 xb[2];
        xb[0] = __ldg(x_row[j] + kb * 8);
        xb[1] = __ldg(x_row[j] + kb * 8 + 1);
        const unsigned* xr = reinterpret_cast<const unsigned*>(xb);
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          mma_bf16(acc[j], lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1], xr[2 * s],
                   xr[2 * s + 1]);
        }
      }
      cur ^= 1;
    }
  }
  if (row0 >= m) return;
  // c0, c1: row g, tokens 8j + 2t, + 1; c2, c3: row g + 8, same tokens.
  float* out = partial + static_cast<std::size_t>(split) * tokens * m;
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int tok = j * 8 + 2 * t + (e & 1);
      const int row = row0 + g + (e >= 2 ? 8 : 0);
      if (tok < tokens && row < m) out[static_cast<std::size_t>(tok) * m + row] = acc[j][e];
    }
  }
}

// y[t][o] = sum over splits of partial[s][t][o], in split order.
__global__ void reduce_kernel(const float* __restrict__ partial, void* __restrict__ y, bool y_fp32,
                              int splits, std::size_t n) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int p = 0; p < splits; ++p) s += partial[static_cast<std::size_t>(p) * n + i];
    if (y_fp32) static_cast<float*>(y)[i] = s;
    else static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16_rn(s);
  }
}

template <int NT>
void launch(const linear_params& p, float* partial, int splits, int kbps, cudaStream_t s) {
  const dim3 grid((p.out_features + 16 * k_warps - 1) / (16 * k_warps), splits);
  skinny_kernel<NT><<<grid, k_warps * 32, 0, s>>>(p.x, p.w, partial, p.num_tokens,
                                                   p.in_features, p.out_features, kbps);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace

int skinny_gemm_splits(const linear_params& p, int sm_count) {
  const int m_tiles = (p.out_features + 15) / 16;
  const int k_blocks = p.in_features / 64;
  // About 16 streaming warps per SM.
  const int want = std::max(1, (16 * sm_count + m_tiles - 1) / m_tiles);
  return std::min({want, k_blocks, 32});
}

std::size_t skinny_gemm_workspace_bytes(const linear_params& p, int splits) {
  return static_cast<std::size_t>(splits) * p.num_tokens * p.out_features * sizeof(float);
}

void skinny_gemm(const linear_params& p, float* workspace, std::size_t workspace_bytes, int splits,
                 cudaStream_t s) {
  if (!p.x || !p.w || !p.y || !workspace) throw std::invalid_argument("skinny_gemm: null pointer");
  if (p.num_tokens < 1 || p.num_tokens > k_skinny_max_tokens || p.in_features % 64 != 0 ||
      p.out_features < 1 || splits < 1) {
    throw std::invalid_argument("skinny_gemm: needs 1..." + std::to_string(k_skinny_max_tokens) +
                                " tokens and in_features a multiple of 64 (tokens=" +
                                std::to_string(p.num_tokens) + " in=" +
                                std::to_string(p.in_features) + " out=" +
                                std::to_string(p.out_features) + ")");
  }
  if ((reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 != 0) {
    throw std::invalid_argument("skinny_gemm: x and w must be 16-byte aligned");
  }
  if (skinny_gemm_workspace_bytes(p, splits) > workspace_bytes) {
    throw std::invalid_argument("skinny_gemm: workspace too small");
  }
  const int k_blocks = p.in_features / 64;
  splits = std::min(splits, k_blocks);
  const int kbps = (k_blocks + splits - 1) / splits;
  splits = (k_blocks + kbps - 1) / kbps;
  const int nt = (p.num_tokens + 7) / 8;
  if (nt <= 1) launch<1>(p, workspace, splits, kbps, s);
  else if (nt <= 2) launch<2>(p, workspace, splits, kbps, s);
  else if (nt <= 4) launch<4>(p, workspace, splits, kbps, s);
  else if (nt <= 8) launch<8>(p, workspace, splits, kbps, s);
  else launch<16>(p, workspace, splits, kbps, s);
  const std::size_t n = static_cast<std::size_t>(p.num_tokens) * p.out_features;
  const int grid = static_cast<int>(std::min<std::size_t>((n + 255) / 256, 1024));
  reduce_kernel<<<grid, 256, 0, s>>>(workspace, p.y, p.y_fp32, splits, n);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
