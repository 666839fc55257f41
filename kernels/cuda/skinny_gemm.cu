// Weight-streaming GEMM for decode batches (1 ... k_skinny_max_tokens tokens) on tensor cores:
// TMA copies and wgmma (bf16 -> fp32), so this file is built for sm_90a only (kernels/
// CMakeLists.txt); linear_runner uses it on compute capability 9.0 devices alone.
// y[t][o] = sum_i x[t][i] w[o][i]: the weights W [out][in] are the MMA's A operand (rows = output
// features), the activations X [tokens][in] its B operand (N = tokens rounded up to 16, 32 or 64).
//
// At 64 tokens a Llama-2-7B layer is still bound by its weight bytes (64 FLOP per weight byte, far
// below the bf16 ridge), so the kernel is built to keep HBM busy:
// - a CTA (one warpgroup) owns 128 output features (two m64 wgmma tiles) and a k range;
// - weights and activations go through shared memory in a 4-stage pipeline of 64-wide k tiles
//   (16 KB of weights per stage, 48 KB in flight per CTA, two CTAs per SM), copied by the tensor
//   memory accelerator: one thread issues a 2-D bulk copy per operand and stage, completion is
//   counted in bytes on an mbarrier, with the 128-byte swizzle the wgmma descriptors name; rows
//   and k past the matrix read as zeros;
// - with programmatic dependent launch the weight tiles of the first stages are requested before
//   griddepcontrol.wait (they do not depend on the previous kernel), the activations after;
// - split-K over a thread-block cluster (1 x splits): each CTA leaves its fp32 tile in its shared
//   memory and the cluster adds the tiles through distributed shared memory, in rank order, each
//   CTA a slice of the outputs. No workspace, no second kernel, and the sums are deterministic.
//
// Where it stands (bench/linear_bench.cpp, H200, 64 tokens, docs/engine.md): slower than cuBLASLt.
// The Llama-2-7B block takes ~156 us at the best splits per layer against cuBLASLt's ~123 us; it
// streams about 2.4 TB/s whatever was tried: mma.sync with ldmatrix (per-thread cp.async) 196 us;
// 256-feature CTAs; 6 or 8 stages; L2 promotion off, 128 or 256 bytes; k tiles walked from a
// per-CTA rotation. linear_runner therefore times it against cuBLASLt for each shape and keeps
// whichever is faster (it wins some layers at 2 tokens).
#include <cooperative_groups.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "linear.hpp"
#include "wgmma.cuh"

namespace ridgeline::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int k_bn = 128;       // output features per CTA
constexpr int k_threads = 128;  // one warpgroup: two m64 wgmma tiles
constexpr int k_acc_pitch = k_bn + 4;  // floats per token row of the fp32 tile (bank spread)

// NT: 8-token tiles (2, 4 or 8); BK: k per pipeline stage (64: 128-byte rows, or 128);
// S: pipeline stages.
template <int NT, int BK, int S>
struct tile_shape {
  static constexpr int tokens = NT * 8;
  static constexpr int w_bytes = k_bn * BK * 2;
  static constexpr int x_bytes = tokens * BK * 2;
  static constexpr int stage_bytes = w_bytes + x_bytes;
  static constexpr int pipeline_bytes = S * stage_bytes;
  // + 1 KB to align the stages to the 128-byte swizzle's 1024-byte period, + the mbarriers.
  static constexpr int smem_bytes = pipeline_bytes + 1024 + 8 * S;
  static_assert(w_bytes % 1024 == 0 && x_bytes % 1024 == 0, "stages keep the swizzle alignment");
  static_assert(tokens * k_acc_pitch * 4 <= pipeline_bytes, "the fp32 tile reuses the pipeline");
};

__device__ __forceinline__ void mbar_init(std::uint32_t bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(std::uint32_t bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_wait(std::uint32_t bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// Box (64 k x rows) of a 2-D tensor map at (k0, row0) into shared memory at dst.
__device__ __forceinline__ void tma_load(std::uint32_t dst, const CUtensorMap* map, int k0,
                                         int row0, std::uint32_t bar, std::uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(k0), "r"(row0), "r"(bar), "l"(policy)
      : "memory");
}

// Descriptor of a K-major tile with the 128-byte swizzle at shared address `addr` (1024-byte
// aligned): start address >> 4, leading byte offset unused (1), stride byte offset 1024 (eight
// 128-byte rows) >> 4, layout 1 (128B swizzle). The k-th 16-wide step of a 64-wide row starts 32
// bytes further: + 2 in the start-address field.
__device__ __forceinline__ std::uint64_t sw128_desc(std::uint32_t addr) {
  return static_cast<std::uint64_t>((addr & 0x3FFFFu) >> 4) | (std::uint64_t{1} << 16) |
         (std::uint64_t{64} << 32) | (std::uint64_t{1} << 62);
}

// grid (ceil(m / 128), splits), cluster (1, splits): CTA (n, s) multiplies k tiles
// [s * kt_per_split, (s + 1) * kt_per_split) of features [128 n, 128 n + 128).
template <int NT, int BK, int S>
__global__ void __launch_bounds__(k_threads, 2)
    skinny_kernel(const __grid_constant__ CUtensorMap w_map, const __grid_constant__ CUtensorMap x_map,
                  void* __restrict__ y, bool y_fp32, int tokens, int k, int m, int kt_per_split) {
  using shape = tile_shape<NT, BK, S>;
  constexpr int k_stages = S;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  cg::cluster_group cluster = cg::this_cluster();
  const int splits = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int n0 = static_cast<int>(blockIdx.x) * k_bn;
  const int k_tiles = (k + BK - 1) / BK;
  const int kt0 = rank * kt_per_split;
  const int nk = max(0, min(kt_per_split, k_tiles - kt0));
  const std::uint32_t raw = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_raw));
  const std::uint32_t s0 = (raw + 1023u) & ~1023u;
  unsigned char* smem = smem_raw + (s0 - raw);
  const std::uint32_t bars = s0 + shape::pipeline_bytes;  // k_stages mbarriers, 8 bytes each
  const bool issuer = threadIdx.x == 0;
  auto k_at = [&](int i) { return (kt0 + i) * BK; };
  std::uint64_t w_policy, x_policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(w_policy));
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(x_policy));
  if (issuer) {
    for (int st = 0; st < k_stages; ++st) mbar_init(bars + 8 * st, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // Weights first (independent of the previous kernel), then the activations it writes.
  if (issuer) {
    for (int st = 0; st < k_stages - 1 && st < nk; ++st) {
      mbar_expect_tx(bars + 8 * st, shape::stage_bytes);
      tma_load(s0 + st * shape::stage_bytes, &w_map, k_at(st), n0, bars + 8 * st, w_policy);
    }
  }
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  if (issuer) {
    for (int st = 0; st < k_stages - 1 && st < nk; ++st) {
      tma_load(s0 + st * shape::stage_bytes + shape::w_bytes, &x_map, k_at(st), 0,
               bars + 8 * st, x_policy);
    }
  }

  constexpr int N = NT * 8;
  float acc[2][N / 2];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc[mi][i] = 0.0f;

  for (int it = 0; it < nk; ++it) {
    __syncthreads();  // stage it - 1's wgmmas are done (waited below): its slot may be refilled
    const int next = it + k_stages - 1;
    if (issuer && next < nk) {
      const int slot = next % k_stages;
      const std::uint32_t sn = s0 + slot * shape::stage_bytes;
      mbar_expect_tx(bars + 8 * slot, shape::stage_bytes);
      tma_load(sn, &w_map, k_at(next), n0, bars + 8 * slot, w_policy);
      tma_load(sn + shape::w_bytes, &x_map, k_at(next), 0, bars + 8 * slot, x_policy);
    }
    mbar_wait(bars + 8 * (it % k_stages), static_cast<unsigned>(it / k_stages) & 1u);
    const std::uint32_t sw = s0 + (it % k_stages) * shape::stage_bytes;
    const std::uint64_t a0 = sw128_desc(sw), a1 = sw128_desc(sw + 64 * BK * 2);
    const std::uint64_t b = sw128_desc(sw + shape::w_bytes);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) detail::pin(acc[mi]);
    detail::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      detail::wgmma_ss<N>(acc[0], a0 + 2 * kk, b + 2 * kk);
      detail::wgmma_ss<N>(acc[1], a1 + 2 * kk, b + 2 * kk);
    }
    detail::wgmma_commit();
    detail::wgmma_wait_all();
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) detail::pin(acc[mi]);
  }
  __syncthreads();  // every warp is done with the pipeline (all copies landed): its memory
                    // becomes the fp32 tile
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  // acc[mi][4j + e]: feature 64 mi + 16 warp + lane / 4 (+ 8 for e >= 2), token 8j + 2 (lane % 4)
  // + (e & 1).
  float* tile = reinterpret_cast<float*>(smem);
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const int j = i >> 2, e = i & 3;
      const int f = mi * 64 + warp * 16 + g + (e >= 2 ? 8 : 0);
      const int tok = j * 8 + 2 * t + (e & 1);
      tile[tok * k_acc_pitch + f] = acc[mi][i];
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

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    RIDGELINE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                          cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || !f) {
      throw std::runtime_error("skinny_gemm: the driver has no cuTensorMapEncodeTiled");
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// [rows][k] bf16, row-major: boxes of 64 k x box_rows, 128-byte swizzle, zeros out of bounds.
CUtensorMap tensor_map(const bf16_bits* p, int rows, int k, int box_rows) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(k) * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16_bits*>(p), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    throw std::runtime_error("skinny_gemm: cuTensorMapEncodeTiled failed (" + std::to_string(r) +
                             ") for " + std::to_string(rows) + " x " + std::to_string(k));
  }
  return map;
}

template <int NT, int BK, int S>
void launch(const linear_params& p, int splits, bool pdl, cudaStream_t s) {
  static_assert(BK == 64, "the tensor maps' boxes are 64 wide (128 bytes, the swizzle's span)");
  constexpr int smem = tile_shape<NT, BK, S>::smem_bytes;
  static const cudaError_t configured = cudaFuncSetAttribute(
      skinny_kernel<NT, BK, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  RIDGELINE_CUDA_CHECK(configured);
  const int k_tiles = (p.in_features + BK - 1) / BK;
  splits = std::min(splits, k_tiles);
  const int kt_per_split = (k_tiles + splits - 1) / splits;
  splits = (k_tiles + kt_per_split - 1) / kt_per_split;  // no empty split
  const CUtensorMap w_map = tensor_map(p.w, p.out_features, p.in_features, k_bn);
  const CUtensorMap x_map = tensor_map(p.x, p.num_tokens, p.in_features, NT * 8);
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
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, skinny_kernel<NT, BK, S>, w_map, x_map, p.y,
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
  int device = 0, major = 0, minor = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major != 9 || minor != 0) {
    throw std::invalid_argument("skinny_gemm: built for sm_90a (wgmma); this device is sm_" +
                                std::to_string(10 * major + minor));
  }
  // 64-wide k stages, 4 deep, two CTAs per SM. Measured on an H200 at 64 tokens, 128-wide stages
  // (4 or 3 deep, one CTA per SM) and 64-wide ones 6 deep were no faster
  // (bench/linear_bench.cpp, docs/engine.md).
  if (p.num_tokens <= 16) launch<2, 64, 4>(p, splits, pdl, s);
  else if (p.num_tokens <= 32) launch<4, 64, 4>(p, splits, pdl, s);
  else launch<8, 64, 4>(p, splits, pdl, s);
}

}  // namespace ridgeline::cuda
