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

constexpr int k_bn = 128;             // output features per tile: two m64 wgmma tiles
constexpr int k_bk = 64;              // k per tile: 128-byte rows, the swizzle's span
constexpr int k_consumers = 128;      // one warpgroup
constexpr int k_threads = k_consumers + 32;  // + the producer warp

// N: tokens rounded up to 16, 32 or 64 (the wgmma's N); S: pipeline stages.
template <int N, int S>
struct tile_shape {
  static constexpr int w_bytes = k_bn * k_bk * 2;
  static constexpr int x_bytes = N * k_bk * 2;
  static constexpr int stage_bytes = w_bytes + x_bytes;
  static constexpr int pipeline_bytes = S * stage_bytes;
  // + 1 KB to align the stages to the 128-byte swizzle's 1024-byte period, + 2 S mbarriers and
  // the last-arrival flag.
  static constexpr int smem_bytes = pipeline_bytes + 1024 + 16 * S + 16;
  static_assert(w_bytes % 1024 == 0 && x_bytes % 1024 == 0, "stages keep the swizzle alignment");
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

__device__ __forceinline__ void mbar_arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Barrier 1 among the consumer warpgroup's 128 threads (barrier 0 is __syncthreads').
__device__ __forceinline__ void consumers_sync() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(k_consumers) : "memory");
}

// Units are (feature tile, k tile) pairs, k fastest; CTA c owns units [begin(c), begin(c + 1)).
__device__ __forceinline__ long long unit_begin(int c, long long units, int ctas) {
  return static_cast<long long>(c) * units / ctas;
}
// The CTA whose range holds unit u.
__device__ __forceinline__ int cta_of(long long u, long long units, int ctas) {
  return static_cast<int>(((u + 1) * ctas - 1) / units);
}

struct skinny_args {
  void* y;
  float* partials;  // [cta][2][N / 4][128 threads][4]: a CTA's first and last tile, if partial
  int* counters;    // [feature tiles], zero between launches
  int tokens, m, k_tiles, n_tiles;
  bool y_fp32;
};

// Thread t's accumulators (feature tile nt) into y: acc[mi][i] is feature 128 nt + 64 mi +
// 16 warp + lane / 4 (+ 8 for i % 4 >= 2), token 8 (i / 4) + 2 (lane % 4) + i % 2.
template <int N>
__device__ __forceinline__ void store_tile(const float (&acc)[2][N / 2], int nt,
                                           const skinny_args& a, int t) {
  const int warp = t >> 5, lane = t & 31, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const int f = nt * k_bn + mi * 64 + warp * 16 + g + ((i & 3) >= 2 ? 8 : 0);
      const int tok = (i >> 2) * 8 + 2 * q + (i & 1);
      if (tok >= a.tokens || f >= a.m) continue;
      const std::size_t o = static_cast<std::size_t>(tok) * a.m + f;
      if (a.y_fp32) static_cast<float*>(a.y)[o] = acc[mi][i];
      else static_cast<__nv_bfloat16*>(a.y)[o] = __float2bfloat16_rn(acc[mi][i]);
    }
  }
}

// Persistent stream-K kernel: ctas CTAs of one producer warp (TMA) and one consumer warpgroup
// (wgmma) split the units evenly, so every SM streams the same number of weight bytes whatever
// the shape (no partial last wave). A feature tile whose k range spans several CTAs is summed by
// the last of them to finish, in CTA (= k) order: deterministic, whichever finishes last.
template <int N, int S>
__global__ void __launch_bounds__(k_threads, 1)
    skinny_kernel(const __grid_constant__ CUtensorMap w_map,
                  const __grid_constant__ CUtensorMap x_map, const skinny_args a) {
  using shape = tile_shape<N, S>;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const int ctas = static_cast<int>(gridDim.x), c = static_cast<int>(blockIdx.x);
  const int t = static_cast<int>(threadIdx.x);
  const int kt = a.k_tiles;
  const long long units = static_cast<long long>(a.n_tiles) * kt;
  const long long u0 = unit_begin(c, units, ctas);
  const int n = static_cast<int>(unit_begin(c + 1, units, ctas) - u0);
  const std::uint32_t raw = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_raw));
  const std::uint32_t s0 = (raw + 1023u) & ~1023u;
  const std::uint32_t full = s0 + shape::pipeline_bytes;  // S mbarriers: stage landed
  const std::uint32_t empty = full + 8 * S;              // S mbarriers: stage consumed
  int* flag = reinterpret_cast<int*>(smem_raw + (s0 - raw) + shape::pipeline_bytes + 16 * S);
  if (t == 0) {
    for (int st = 0; st < S; ++st) {
      mbar_init(full + 8 * st, 1);
      mbar_init(empty + 8 * st, k_consumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (t >= k_consumers) {  // the producer warp: one lane issues every copy
    if (t != k_consumers) return;
    std::uint64_t w_policy, x_policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(w_policy));
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(x_policy));
    auto w_copy = [&](int i) {
      const long long u = u0 + i;
      const std::uint32_t bar = full + 8 * (i % S);
      mbar_expect_tx(bar, shape::stage_bytes);
      tma_load(s0 + (i % S) * shape::stage_bytes, &w_map, static_cast<int>(u % kt) * k_bk,
               static_cast<int>(u / kt) * k_bn, bar, w_policy);
    };
    auto x_copy = [&](int i) {
      const long long u = u0 + i;
      tma_load(s0 + (i % S) * shape::stage_bytes + shape::w_bytes, &x_map,
               static_cast<int>(u % kt) * k_bk, 0, full + 8 * (i % S), x_policy);
    };
    // The first stages' weights do not depend on the previous kernel: requested before
    // griddepcontrol.wait, the activations (which it writes) after.
    const int pre = min(S, n);
    for (int i = 0; i < pre; ++i) w_copy(i);
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    for (int i = 0; i < pre; ++i) x_copy(i);
    for (int i = pre; i < n; ++i) {
      mbar_wait(empty + 8 * (i % S), static_cast<unsigned>((i / S) & 1) ^ 1u);
      w_copy(i);
      x_copy(i);
    }
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    return;
  }

  // The consumer warpgroup. y, the partials and the counters may still be in use by the previous
  // kernel until it completes.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  float acc[2][N / 2];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc[mi][i] = 0.0f;
  long long seg = u0;  // first unit of the tile segment being summed
  for (int i = 0; i < n; ++i) {
    const long long u = u0 + i;
    const int slot = i % S;
    mbar_wait(full + 8 * slot, static_cast<unsigned>(i / S) & 1u);
    const std::uint32_t sw = s0 + slot * shape::stage_bytes;
    const std::uint64_t a0 = sw128_desc(sw), a1 = sw128_desc(sw + 64 * k_bk * 2);
    const std::uint64_t b = sw128_desc(sw + shape::w_bytes);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) detail::pin(acc[mi]);
    detail::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < k_bk / 16; ++kk) {
      detail::wgmma_ss<N>(acc[0], a0 + 2 * kk, b + 2 * kk);
      detail::wgmma_ss<N>(acc[1], a1 + 2 * kk, b + 2 * kk);
    }
    detail::wgmma_commit();
    detail::wgmma_wait_all();
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) detail::pin(acc[mi]);
    mbar_arrive(empty + 8 * slot);
    const int k_idx = static_cast<int>(u % kt);
    if (k_idx != kt - 1 && i != n - 1) continue;
    // The segment [seg, u] of feature tile nt is summed.
    const int nt = static_cast<int>(u / kt);
    if (seg % kt == 0 && k_idx == kt - 1) {
      store_tile<N>(acc, nt, a, t);  // the whole k range in this CTA
    } else {
      // Slot 0 holds a CTA's first tile, slot 1 its last (a CTA has at most these two partial).
      auto piece = [&](int cta) {
        const int which = unit_begin(cta, units, ctas) / kt == nt ? 0 : 1;
        return reinterpret_cast<float4*>(a.partials) +
               static_cast<std::size_t>(2 * cta + which) * (N / 4) * k_consumers;
      };
      float4* mine = piece(c);
#pragma unroll
      for (int q = 0; q < N / 4; ++q) {
        const int mi = q / (N / 8), i0 = 4 * (q % (N / 8));
        __stcg(mine + q * k_consumers + t,
               make_float4(acc[mi][i0], acc[mi][i0 + 1], acc[mi][i0 + 2], acc[mi][i0 + 3]));
      }
      __threadfence();
      consumers_sync();
      const long long tile_u = static_cast<long long>(nt) * kt;
      const int first = cta_of(tile_u, units, ctas), last = cta_of(tile_u + kt - 1, units, ctas);
      if (t == 0) {
        const int arrived = atomicAdd(a.counters + nt, 1);
        const bool done = arrived == last - first;
        if (done) a.counters[nt] = 0;  // every piece is in: leave the counter at zero
        *flag = done;
      }
      consumers_sync();
      if (*flag) {
        __threadfence();
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
          for (int j = 0; j < N / 2; ++j) acc[mi][j] = 0.0f;
        for (int cta = first; cta <= last; ++cta) {
          const float4* p = piece(cta);
#pragma unroll
          for (int q = 0; q < N / 4; ++q) {
            const int mi = q / (N / 8), i0 = 4 * (q % (N / 8));
            const float4 v = __ldcg(p + q * k_consumers + t);
            acc[mi][i0] += v.x;
            acc[mi][i0 + 1] += v.y;
            acc[mi][i0 + 2] += v.z;
            acc[mi][i0 + 3] += v.w;
          }
        }
        store_tile<N>(acc, nt, a, t);
      }
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int j = 0; j < N / 2; ++j) acc[mi][j] = 0.0f;
    seg = u + 1;
  }
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

template <int N, int S>
void launch(const linear_params& p, int ctas, const skinny_workspace& ws, bool pdl,
            cudaStream_t s) {
  constexpr int smem = tile_shape<N, S>::smem_bytes;
  static const cudaError_t configured = cudaFuncSetAttribute(
      skinny_kernel<N, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  RIDGELINE_CUDA_CHECK(configured);
  const CUtensorMap w_map = tensor_map(p.w, p.out_features, p.in_features, k_bn);
  const CUtensorMap x_map = tensor_map(p.x, p.num_tokens, p.in_features, N);
  skinny_args a{};
  a.y = p.y;
  a.partials = ws.partials;
  a.counters = ws.counters;
  a.tokens = p.num_tokens;
  a.m = p.out_features;
  a.k_tiles = (p.in_features + k_bk - 1) / k_bk;
  a.n_tiles = (p.out_features + k_bn - 1) / k_bn;
  a.y_fp32 = p.y_fp32;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(ctas));
  cfg.blockDim = dim3(k_threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, skinny_kernel<N, S>, w_map, x_map, a));
}

int tokens_tile(int tokens) { return tokens <= 16 ? 16 : tokens <= 32 ? 32 : 64; }

}  // namespace

std::size_t skinny_partial_bytes(int ctas, int tokens) {
  return static_cast<std::size_t>(ctas) * 2 * k_bn * tokens_tile(tokens) * sizeof(float);
}

int skinny_counters(const linear_params& p) { return (p.out_features + k_bn - 1) / k_bn; }

void skinny_gemm(const linear_params& p, int ctas, const skinny_workspace& ws, bool pdl,
                 cudaStream_t s) {
  if (!p.x || !p.w || !p.y) throw std::invalid_argument("skinny_gemm: null pointer");
  if (p.num_tokens < 1 || p.num_tokens > k_skinny_max_tokens || p.in_features < 8 ||
      p.in_features % 8 != 0 || p.out_features < 1 || ctas < 1 || ctas > k_skinny_max_ctas) {
    throw std::invalid_argument(
        "skinny_gemm: needs 1..." + std::to_string(k_skinny_max_tokens) +
        " tokens, in_features a multiple of 8 and 1..." + std::to_string(k_skinny_max_ctas) +
        " CTAs (tokens=" + std::to_string(p.num_tokens) + " in=" +
        std::to_string(p.in_features) + " out=" + std::to_string(p.out_features) +
        " ctas=" + std::to_string(ctas) + ")");
  }
  if ((reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 != 0) {
    throw std::invalid_argument("skinny_gemm: x and w must be 16-byte aligned");
  }
  if (!ws.partials || !ws.counters || ws.partial_bytes < skinny_partial_bytes(ctas, p.num_tokens) ||
      ws.counter_count < skinny_counters(p)) {
    throw std::invalid_argument(
        "skinny_gemm: the workspace needs " +
        std::to_string(skinny_partial_bytes(ctas, p.num_tokens)) + " bytes of partials and " +
        std::to_string(skinny_counters(p)) + " zeroed counters (has " +
        std::to_string(ws.partial_bytes) + " and " + std::to_string(ws.counter_count) + ")");
  }
  int device = 0, major = 0, minor = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major != 9 || minor != 0) {
    throw std::invalid_argument("skinny_gemm: built for sm_90a (wgmma); this device is sm_" +
                                std::to_string(10 * major + minor));
  }
  // One CTA per SM with 8 stages in flight, or two with 4 each.
  int sms = 0;
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const bool deep = ctas <= sms;
  switch (tokens_tile(p.num_tokens)) {
    case 16: return deep ? launch<16, 8>(p, ctas, ws, pdl, s) : launch<16, 4>(p, ctas, ws, pdl, s);
    case 32: return deep ? launch<32, 8>(p, ctas, ws, pdl, s) : launch<32, 4>(p, ctas, ws, pdl, s);
    default: return deep ? launch<64, 8>(p, ctas, ws, pdl, s) : launch<64, 4>(p, ctas, ws, pdl, s);
  }
}

}  // namespace ridgeline::cuda
