// Weight-streaming GEMM for decode batches (1 ... k_skinny_max_tokens tokens) on tensor cores,
// mma.sync m16n8k16 bf16 -> fp32. y[t][o] = sum_i x[t][i] w[o][i]: the weights W [out][in] are the
// MMA's A operand (rows = output features), the activations X [tokens][in] its B operand.
//
// At 64 tokens a Llama-2-7B layer is still bound by its weight bytes (64 FLOP per weight byte, far
// below the bf16 ridge), so the kernel is built to keep HBM busy:
// - a CTA owns 128 output features and a k range; four warps of 32 features each;
// - weights and activations go through shared memory in a 4-stage cp.async pipeline of 64-wide k
//   tiles (16 KB of weights per stage, 48 KB in flight per CTA, two CTAs per SM), the weights with
//   an L2 evict-first hint since each byte is read once;
// - rows are 128 bytes, stored with the 16-byte chunk index XORed with (row mod 8), so the
//   ldmatrix reads of 8 rows at one chunk hit 8 different bank groups;
// - with programmatic dependent launch the weight tiles of the first stages are requested before
//   griddepcontrol.wait (they do not depend on the previous kernel), the activations after;
// - split-K over a thread-block cluster (1 x splits): each CTA leaves its fp32 tile in its shared
//   memory and the cluster adds the tiles through distributed shared memory, in rank order, each
//   CTA a slice of the outputs. No workspace, no second kernel, and the sums are deterministic.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "linear.hpp"

namespace ridgeline::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int k_bn = 128;      // output features per CTA
constexpr int k_threads = 128; // four warps of 32 features
constexpr int k_acc_pitch = k_bn + 4;  // floats per token row of the fp32 tile (bank spread)

// NT: 8-token tiles (2, 4 or 8); BK: k per pipeline stage (64: 128-byte rows, or 128);
// S: pipeline stages.
template <int NT, int BK, int S>
struct tile_shape {
  static constexpr int tokens = NT * 8;
  static constexpr int w_bytes = k_bn * BK * 2;
  static constexpr int x_bytes = tokens * BK * 2;
  static constexpr int stage_bytes = w_bytes + x_bytes;
  static constexpr int smem_bytes = S * stage_bytes;
  static_assert(tokens * k_acc_pitch * 4 <= smem_bytes, "the fp32 tile reuses the pipeline");
};

// Byte offset of 16-byte chunk c of row r in a swizzled [rows][BK] bf16 tile.
template <int BK>
__device__ __forceinline__ std::uint32_t swz(int r, int c) {
  return static_cast<std::uint32_t>(r * BK * 2 + ((c ^ (r & 7)) << 4));
}

__device__ __forceinline__ void cp_async16(std::uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(full ? 16 : 0));
}

__device__ __forceinline__ void cp_async16_evict_first(std::uint32_t dst, const void* src,
                                                       bool full, std::uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(dst),
               "l"(src), "r"(full ? 16 : 0), "l"(policy));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 128 weight rows x BK k of k tile kt into the stage at s_w. Rows past m and k past k read as
// zeros (k is a multiple of 8, so a 16-byte chunk is either all in or all out).
template <int BK>
__device__ __forceinline__ void load_w(std::uint32_t s_w, const bf16_bits* __restrict__ w,
                                       int n0, int m, int k, int kt, std::uint64_t policy) {
  constexpr int cpr = BK / 8;  // chunks per row
#pragma unroll
  for (int i = 0; i < k_bn * cpr / k_threads; ++i) {
    const int idx = static_cast<int>(threadIdx.x) + i * k_threads;
    const int r = idx / cpr, c = idx % cpr;
    const int gk = kt * BK + c * 8;
    const bool in = n0 + r < m && gk < k;
    const bf16_bits* src = in ? w + static_cast<std::size_t>(n0 + r) * k + gk : w;
    cp_async16_evict_first(s_w + swz<BK>(r, c), src, in, policy);
  }
}

template <int NT, int BK>
__device__ __forceinline__ void load_x(std::uint32_t s_x, const bf16_bits* __restrict__ x,
                                       int tokens, int k, int kt) {
  constexpr int cpr = BK / 8;
#pragma unroll
  for (int i = 0; i < NT * 8 * cpr / k_threads; ++i) {
    const int idx = static_cast<int>(threadIdx.x) + i * k_threads;
    const int r = idx / cpr, c = idx % cpr;
    const int gk = kt * BK + c * 8;
    const bool in = r < tokens && gk < k;
    const bf16_bits* src = in ? x + static_cast<std::size_t>(r) * k + gk : x;
    cp_async16(s_x + swz<BK>(r, c), src, in);
  }
}

// grid (ceil(m / 128), splits), cluster (1, splits): CTA (n, s) multiplies k tiles
// [s * kt_per_split, (s + 1) * kt_per_split) of features [128 n, 128 n + 128).
template <int NT, int BK, int S>
__global__ void __launch_bounds__(k_threads, 2)
    skinny_kernel(const bf16_bits* __restrict__ x, const bf16_bits* __restrict__ w,
                  void* __restrict__ y, bool y_fp32, int tokens, int k, int m, int kt_per_split) {
  using shape = tile_shape<NT, BK, S>;
  constexpr int k_stages = S;
  extern __shared__ __align__(128) unsigned char smem[];
  cg::cluster_group cluster = cg::this_cluster();
  const int splits = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int n0 = static_cast<int>(blockIdx.x) * k_bn;
  const int k_tiles = (k + BK - 1) / BK;
  const int kt0 = rank * kt_per_split;
  const int nk = max(0, min(kt_per_split, k_tiles - kt0));
  const std::uint32_t s0 = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));

  // Weights first (independent of the previous kernel), then the activations it writes.
#pragma unroll
  for (int st = 0; st < k_stages - 1; ++st) {
    if (st < nk) load_w<BK>(s0 + st * shape::stage_bytes, w, n0, m, k, kt0 + st, policy);
  }
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#pragma unroll
  for (int st = 0; st < k_stages - 1; ++st) {
    if (st < nk) {
      load_x<NT, BK>(s0 + st * shape::stage_bytes + shape::w_bytes, x, tokens, k, kt0 + st);
    }
    cp_async_commit();
  }

  float acc[2][NT][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

  for (int it = 0; it < nk; ++it) {
    cp_async_wait<k_stages - 2>();
    __syncthreads();  // stage `it` is visible to all warps; stage it - 1 is free to refill
    const int next = it + k_stages - 1;
    if (next < nk) {
      const std::uint32_t sn = s0 + (next % k_stages) * shape::stage_bytes;
      load_w<BK>(sn, w, n0, m, k, kt0 + next, policy);
      load_x<NT, BK>(sn + shape::w_bytes, x, tokens, k, kt0 + next);
    }
    cp_async_commit();
    const std::uint32_t sw = s0 + (it % k_stages) * shape::stage_bytes;
    const std::uint32_t sx = sw + shape::w_bytes;
    // Fragments of k step kk + 1 are read while the MMAs of step kk run (the asm statements keep
    // their order, so the overlap has to be written out).
    std::uint32_t a[2][2][4], b[2][NT / 2][4];
    auto load_frags = [&](int kk, std::uint32_t (&fa)[2][4], std::uint32_t (&fb)[NT / 2][4]) {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        ldmatrix_x4(fa[mi], sw + swz<BK>(warp * 32 + mi * 16 + (lane & 15), kk * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int jp = 0; jp < NT / 2; ++jp) {
        ldmatrix_x4(fb[jp], sx + swz<BK>(jp * 16 + (lane & 7) + ((lane >> 4) << 3),
                                         kk * 2 + ((lane >> 3) & 1)));
      }
    };
    load_frags(0, a[0], b[0]);
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      if (kk + 1 < BK / 16) load_frags(kk + 1, a[(kk + 1) & 1], b[(kk + 1) & 1]);
#pragma unroll
      for (int jp = 0; jp < NT / 2; ++jp) {
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_bf16(acc[mi][2 * jp], a[kk & 1][mi], b[kk & 1][jp][0], b[kk & 1][jp][1]);
          mma_bf16(acc[mi][2 * jp + 1], a[kk & 1][mi], b[kk & 1][jp][2], b[kk & 1][jp][3]);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the pipeline: its memory becomes the fp32 tile
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  // acc[mi][j][e]: feature warp*32 + mi*16 + g (+8 for e >= 2), token 8j + 2t + (e & 1).
  float* tile = reinterpret_cast<float*>(smem);
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int f = warp * 32 + mi * 16 + g + (e >= 2 ? 8 : 0);
        const int tok = j * 8 + 2 * t + (e & 1);
        tile[tok * k_acc_pitch + f] = acc[mi][j][e];
      }
  cluster.sync();
  // Each rank sums a slice of the [tokens][128] outputs over the cluster's tiles, rank 0 first.
  const int outputs = tokens * k_bn;
  for (int idx = rank * k_threads + static_cast<int>(threadIdx.x); idx < outputs;
       idx += splits * k_threads) {
    const int tok = idx / k_bn, f = idx % k_bn;
    if (n0 + f >= m) continue;
    float v = 0.0f;
    for (int q = 0; q < splits; ++q) v += cluster.map_shared_rank(tile, q)[tok * k_acc_pitch + f];
    const std::size_t o = static_cast<std::size_t>(tok) * m + n0 + f;
    if (y_fp32) static_cast<float*>(y)[o] = v;
    else static_cast<__nv_bfloat16*>(y)[o] = __float2bfloat16_rn(v);
  }
  cluster.sync();  // no CTA leaves while another still reads its tile
}

template <int NT, int BK, int S>
void launch(const linear_params& p, int splits, bool pdl, cudaStream_t s) {
  constexpr int smem = tile_shape<NT, BK, S>::smem_bytes;
  static const cudaError_t configured = cudaFuncSetAttribute(
      skinny_kernel<NT, BK, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  RIDGELINE_CUDA_CHECK(configured);
  const int k_tiles = (p.in_features + BK - 1) / BK;
  splits = std::min(splits, k_tiles);
  const int kt_per_split = (k_tiles + splits - 1) / splits;
  splits = (k_tiles + kt_per_split - 1) / kt_per_split;  // no empty split
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3((p.out_features + k_bn - 1) / k_bn, splits);
  cfg.blockDim = dim3(k_threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = static_cast<unsigned>(splits);
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 2 : 1;
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, skinny_kernel<NT, BK, S>, p.x, p.w, p.y,
                                          p.y_fp32, p.num_tokens, p.in_features, p.out_features,
                                          kt_per_split));
}

}  // namespace

int skinny_gemm_splits(const linear_params& p, int sm_count) {
  // Two CTAs per SM. Estimated time in k tiles per CTA slot: full waves of CTAs times the k tiles
  // each one streams; the fewest splits among the best (each split adds a tile to reduce).
  const int n_tiles = (p.out_features + k_bn - 1) / k_bn;
  const int k_tiles = (p.in_features + 63) / 64;
  const int slots = 2 * std::max(1, sm_count);
  int best = 1;
  long best_cost = -1;
  for (int sp = 1; sp <= std::min(k_skinny_max_splits, k_tiles); ++sp) {
    const long waves = (static_cast<long>(n_tiles) * sp + slots - 1) / slots;
    const long cost = waves * ((k_tiles + sp - 1) / sp);
    if (best_cost < 0 || cost < best_cost) best = sp, best_cost = cost;
  }
  return best;
}

void skinny_gemm(const linear_params& p, int splits, bool pdl, cudaStream_t s) {
  if (!p.x || !p.w || !p.y) throw std::invalid_argument("skinny_gemm: null pointer");
  if (p.num_tokens < 1 || p.num_tokens > k_skinny_max_tokens || p.in_features < 8 ||
      p.in_features % 8 != 0 || p.out_features < 1 || splits < 1 ||
      splits > k_skinny_max_splits) {
    throw std::invalid_argument(
        "skinny_gemm: needs 1..." + std::to_string(k_skinny_max_tokens) +
        " tokens, in_features a multiple of 8 and 1..." + std::to_string(k_skinny_max_splits) +
        " splits (tokens=" + std::to_string(p.num_tokens) + " in=" +
        std::to_string(p.in_features) + " out=" + std::to_string(p.out_features) +
        " splits=" + std::to_string(splits) + ")");
  }
  if ((reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 != 0) {
    throw std::invalid_argument("skinny_gemm: x and w must be 16-byte aligned");
  }
  // 64-wide k stages, 4 deep, two CTAs per SM. Measured on an H200 at 64 tokens, 128-wide stages
  // (4 or 3 deep, one CTA per SM) and 64-wide ones 6 deep were no faster
  // (bench/linear_bench.cpp, docs/engine.md).
  if (p.num_tokens <= 16) launch<2, 64, 4>(p, splits, pdl, s);
  else if (p.num_tokens <= 32) launch<4, 64, 4>(p, splits, pdl, s);
  else launch<8, 64, 4>(p, splits, pdl, s);
}

}  // namespace ridgeline::cuda
