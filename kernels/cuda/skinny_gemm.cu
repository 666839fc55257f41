// Weight-streaming GEMM for decode batches (1 ... k_skinny_max_tokens tokens) on tensor cores:
// TMA copies and wgmma (bf16 -> fp32), so this file is built for sm_90a only (kernels/
// CMakeLists.txt); linear_runner uses it on compute capability 9.0 devices alone.
// y[t][o] = sum_i x[t][i] w[o][i]: the activations X [tokens][in] are the MMA's A operand (M = 64
// token rows), the weights W [out][in] its B operand (N = the CTA's BN output features).
//
// At 64 tokens a Llama-2-7B layer is bound by its weight bytes (64 FLOP per weight byte, far below
// the bf16 ridge). The kernel is built to keep HBM streaming from the first to the last cycle:
// - one CTA per SM and no split-K: each CTA owns BN output features over the whole k range, BN
//   chosen per shape so that the CTAs fill one wave (4096 outputs: 128 CTAs of 32 features;
//   12288: 128 of 96). No partial sums, no second kernel, and each output is one CTA's fixed
//   sequence of wgmmas whatever the token count (a token's row is the same alone or in a batch);
// - a producer warp streams 64-wide k tiles into a pipeline of `stages` slots (up to 200 KB of
//   shared memory): per slot one 2-D TMA copy of the BN x 64 weight tile (128-byte swizzle,
//   evict-first) and of the tokens' 64-wide activation rows (rounded up to 8 rows; the rows
//   above them hold stale data that only reaches output rows that are never stored). A consumer
//   warpgroup waits on the slot's full mbarrier, issues four m64nBNk16 wgmmas, and frees the slot
//   once they are done (one wgmma group stays in flight);
// - programmatic dependent launch: the producer requests the weight tiles of every slot before
//   griddepcontrol.wait (weights are no kernel's output), so they stream while the previous kernel
//   finishes; activations follow the wait. The next kernel may be scheduled from the start (it
//   waits for this grid's completion before it reads y), so its CTAs take each SM as soon as this
//   kernel's CTA leaves it.
// Glu: the layer is gate_up (2 x inter rows: gate rows, then up rows) and the CTA's BN features are
// BN / 2 gate rows and the matching up rows (two TMA boxes per slot); the epilogue writes
// swiglu(gate, up) with the gate and up sums rounded to bf16 first, as the GEMM + swiglu kernel
// pair would store and read them.
// Measured and not kept (docs/engine.md): the activation tile multicast over clusters of 2 CTAs
// (each copying half of it): the batch-64 decode step took 11.11 ms against 11.06 without;
// weight tiles asked of L2 4 to 16 k tiles ahead of the pipeline: 11.83 to 12.68 ms against 10.92.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

#include "check.hpp"
#include "device_utils.cuh"
#include "linear.hpp"
#include "ops_common.cuh"
#include "wgmma.cuh"

namespace ridgeline::cuda {
namespace {

constexpr int k_rows = 64;                 // token rows per CTA: the wgmma M
constexpr int k_bk = 64;                   // k per slot: one 128-byte swizzle row of bf16
constexpr int k_consumers = 128;           // one warpgroup
constexpr int k_threads = k_consumers + 32;  // + the producer warp
constexpr int k_x_bytes = k_rows * k_bk * 2;  // 8 KB of activations per slot
constexpr int k_smem_budget = 200 * 1024;  // pipeline + barriers, one CTA per SM

template <int BN>
struct tile {
  static constexpr int w_bytes = BN * k_bk * 2;
  static constexpr int slot_bytes = k_x_bytes + w_bytes;  // activations first, then weights
  static constexpr int stages = std::min(16, (k_smem_budget - 1024 - 256) / slot_bytes);
  // + 1 KB to align the slots to the swizzle's 1024-byte period, + 2 mbarriers per slot.
  static constexpr int smem_bytes = stages * slot_bytes + 1024 + 16 * stages;
  static_assert(BN % 16 == 0 && BN <= 256, "wgmma N, and BN / 2 a multiple of 8 for Glu");
  static_assert(w_bytes % 1024 == 0, "slots keep the swizzle alignment");
  static_assert(stages >= 2, "at least two slots");
};

using detail::smem_addr;

__device__ __forceinline__ void mbar_init(std::uint32_t bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(std::uint32_t bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

// Waits for the phase of parity `parity` to complete (acquire at CTA scope; with clusters, a
// cluster-scope acquire or release on every slot measured about half a microsecond per k tile).
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

__device__ __forceinline__ void mbar_arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Box of a 2-D tensor map at (k0, row0) into this CTA's shared memory at dst.
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

// grid: ceil(outputs / (Glu ? BN / 2 : BN)) CTAs. outputs: out_features, or the intermediate
// size for Glu (whose weight has 2 x outputs rows). x_rows: the tokens rounded up to 8 (the
// activation box's rows).
template <int BN, bool Glu>
__global__ void __launch_bounds__(k_threads, 1)
    skinny_kernel(const __grid_constant__ CUtensorMap w_map,
                  const __grid_constant__ CUtensorMap x_map, void* __restrict__ y, bool y_fp32,
                  int tokens, int k, int outputs, int x_rows) {
  using T = tile<BN>;
  constexpr int S = T::stages;
  constexpr int cols = Glu ? BN / 2 : BN;  // output columns per CTA
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t raw = smem_addr(smem_raw);
  const std::uint32_t s0 = (raw + 1023u) & ~1023u;
  const std::uint32_t full = s0 + S * T::slot_bytes, empty = full + 8 * S;
  const int n0 = static_cast<int>(blockIdx.x) * cols;
  const int nk = (k + k_bk - 1) / k_bk;
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  detail::pdl_trigger();  // the next kernel may be scheduled now (it waits for this grid)

  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) {
      mbar_init(full + 8 * s, 1);   // the producer's arrive + the copies' bytes
      mbar_init(empty + 8 * s, 1);  // the consumers' release
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp == k_consumers / 32) {
    // Producer: lane 0 issues every copy.
    if (lane == 0) {
      std::uint64_t w_policy, x_policy;
      asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(w_policy));
      asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(x_policy));
      const unsigned slot_bytes = static_cast<unsigned>(x_rows * k_bk * 2 + T::w_bytes);
      auto load_w = [&](int it) {
        const std::uint32_t slot = s0 + (it % S) * T::slot_bytes + k_x_bytes;
        const std::uint32_t bar = full + 8 * (it % S);
        tma_load(slot, &w_map, it * k_bk, n0, bar, w_policy);
        if constexpr (Glu) {
          tma_load(slot + (BN / 2) * k_bk * 2, &w_map, it * k_bk, outputs + n0, bar, w_policy);
        }
      };
      auto load_x = [&](int it) {
        tma_load(s0 + (it % S) * T::slot_bytes, &x_map, it * k_bk, 0, full + 8 * (it % S),
                 x_policy);
      };
      const int pre = min(S, nk);
      for (int it = 0; it < pre; ++it) {
        mbar_expect_tx(full + 8 * it, slot_bytes);
        load_w(it);
      }
      detail::pdl_wait();  // the activations are the previous kernel's output
      for (int it = 0; it < pre; ++it) load_x(it);
      for (int it = pre; it < nk; ++it) {
        const int s = it % S;
        mbar_wait(empty + 8 * s, static_cast<unsigned>(it / S + 1) & 1u);
        mbar_expect_tx(full + 8 * s, slot_bytes);
        load_w(it);
        load_x(it);
      }
    }
    __syncwarp();
  } else {
    detail::pdl_wait();  // y may still be read by a kernel before this one
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
    for (int it = 0; it < nk; ++it) {
      const int s = it % S;
      mbar_wait(full + 8 * s, static_cast<unsigned>(it / S) & 1u);
      const std::uint32_t slot = s0 + s * T::slot_bytes;
      const std::uint64_t a = sw128_desc(slot), b = sw128_desc(slot + k_x_bytes);
      detail::pin(acc);
      detail::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < k_bk / 16; ++kk) detail::wgmma_ss<BN>(acc, a + 2 * kk, b + 2 * kk);
      detail::wgmma_commit();
      detail::wgmma_wait<1>();  // the previous slot's wgmmas are done: release it
      detail::pin(acc);
      const int done = it - 1;
      if (threadIdx.x == 0 && done >= 0 && done + S < nk) mbar_arrive(empty + 8 * (done % S));
    }
    detail::wgmma_wait<0>();
    detail::pin(acc);

    // acc[i]: token 16 warp + lane / 4 (+ 8 when i % 4 >= 2), column 8 (i / 4) + 2 (lane % 4)
    // + i % 2 of the CTA's BN.
    const int g = lane >> 2, q = lane & 3;
    if constexpr (Glu) {
      auto* out = static_cast<__nv_bfloat16*>(y);
#pragma unroll
      for (int i = 0; i < BN / 4; ++i) {
        const int tok = 16 * warp + g + ((i & 3) >= 2 ? 8 : 0);
        const int col = n0 + 8 * (i >> 2) + 2 * q + (i & 1);
        if (tok < tokens && col < outputs) {
          out[static_cast<std::size_t>(tok) * outputs + col] = detail::swiglu_one(
              __float2bfloat16_rn(acc[i]), __float2bfloat16_rn(acc[i + BN / 4]));
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) {
        const int tok = 16 * warp + g + ((i & 3) >= 2 ? 8 : 0);
        const int col = n0 + 8 * (i >> 2) + 2 * q + (i & 1);
        if (tok < tokens && col < outputs) {
          const std::size_t o = static_cast<std::size_t>(tok) * outputs + col;
          if (y_fp32) static_cast<float*>(y)[o] = acc[i];
          else static_cast<__nv_bfloat16*>(y)[o] = __float2bfloat16_rn(acc[i]);
        }
      }
    }
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
  const cuuint32_t box[2] = {k_bk, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16_bits*>(p), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    throw std::runtime_error("skinny_gemm: cuTensorMapEncodeTiled failed (" + std::to_string(r) +
                             ") for " + std::to_string(rows) + " x " + std::to_string(k));
  }
  return map;
}

using kernel_fn = void (*)(CUtensorMap, CUtensorMap, void*, bool, int, int, int, int);

// One compiled tile: its kernel, BN and shared memory.
struct variant {
  kernel_fn fn;
  int bn;
  int smem;
};

template <int BN, bool Glu>
variant make_variant() {
  return {skinny_kernel<BN, Glu>, BN, tile<BN>::smem_bytes};
}

// Tile widths compiled: plain layers pick among the first five, gate_up + SwiGLU among the rest.
const variant k_plain[] = {make_variant<32, false>(), make_variant<48, false>(),
                           make_variant<64, false>(), make_variant<96, false>(),
                           make_variant<128, false>()};
const variant k_glu[] = {make_variant<64, true>(), make_variant<176, true>(),
                         make_variant<224, true>()};

}  // namespace

// The tile whose CTAs fill the fewest waves of one CTA per SM times its width (the k tiles a CTA
// streams are the same for every width), wider on ties (fewer copies of the activations). The
// device is checked here, once per shape (sm_90a code only).
const skinny_gemm_plans::entry& skinny_gemm_plans::get(int outputs, bool glu) {
  int device = 0, sms = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_tuple(device, outputs, glu);
  if (auto it = m_entries.find(key); it != m_entries.end()) return it->second;
  int major = 0, minor = 0;
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major != 9 || minor != 0) {
    throw std::invalid_argument("skinny_gemm: built for sm_90a (wgmma); this device is sm_" +
                                std::to_string(10 * major + minor));
  }
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const variant* begin = glu ? std::begin(k_glu) : std::begin(k_plain);
  const variant* end = glu ? std::end(k_glu) : std::end(k_plain);
  entry best;
  long best_cost = -1;
  for (const variant* v = begin; v != end; ++v) {
    const int cols = glu ? v->bn / 2 : v->bn;
    const int ctas = (outputs + cols - 1) / cols;
    const long cost = static_cast<long>((ctas + sms - 1) / sms) * v->bn;
    if (best_cost < 0 || cost <= best_cost) {
      best_cost = cost;
      best.variant = static_cast<int>(v - begin);
      best.ctas = ctas;
    }
  }
  const variant& chosen = begin[best.variant];
  RIDGELINE_CUDA_CHECK(
      cudaFuncSetAttribute(chosen.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, chosen.smem));
  return m_entries.emplace(key, best).first->second;
}

namespace {

const variant& variant_of(const skinny_gemm_plans::entry& e, bool glu) {
  return glu ? k_glu[e.variant] : k_plain[e.variant];
}

void check_shape(const linear_params& p, const char* what) {
  if (!p.x || !p.w || !p.y) throw std::invalid_argument(std::string(what) + ": null pointer");
  if (p.num_tokens < 1 || p.num_tokens > k_skinny_max_tokens || p.in_features < 8 ||
      p.in_features % 8 != 0 || p.out_features < 1) {
    throw std::invalid_argument(
        std::string(what) + ": needs 1..." + std::to_string(k_skinny_max_tokens) +
        " tokens and in_features a multiple of 8 (tokens=" + std::to_string(p.num_tokens) +
        " in=" + std::to_string(p.in_features) + " out=" + std::to_string(p.out_features) + ")");
  }
  if ((reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 != 0) {
    throw std::invalid_argument(std::string(what) + ": x and w must be 16-byte aligned");
  }
}

void launch(const linear_params& p, skinny_gemm_plans& plans, void* y, bool y_fp32, int outputs,
            bool glu, bool pdl, cudaStream_t s) {
  const skinny_gemm_plans::entry& pl = plans.get(outputs, glu);
  const variant& v = variant_of(pl, glu);
  const int w_box = glu ? v.bn / 2 : v.bn;
  const int x_rows = std::min(k_rows, (p.num_tokens + 7) / 8 * 8);
  const CUtensorMap w_map = tensor_map(p.w, p.out_features, p.in_features, w_box);
  const CUtensorMap x_map = tensor_map(p.x, p.num_tokens, p.in_features, x_rows);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(pl.ctas);
  cfg.blockDim = dim3(k_threads);
  cfg.dynamicSmemBytes = v.smem;
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, v.fn, w_map, x_map, y, y_fp32, p.num_tokens,
                                          p.in_features, outputs, x_rows));
}

}  // namespace

skinny_gemm_config skinny_gemm_plan(const linear_params& p, bool glu, skinny_gemm_plans& plans) {
  check_shape(p, "skinny_gemm");
  const skinny_gemm_plans::entry& pl = plans.get(glu ? p.out_features / 2 : p.out_features, glu);
  return {variant_of(pl, glu).bn, pl.ctas};
}

void skinny_gemm(const linear_params& p, skinny_gemm_plans& plans, bool pdl, cudaStream_t s) {
  check_shape(p, "skinny_gemm");
  launch(p, plans, p.y, p.y_fp32, p.out_features, false, pdl, s);
}

void skinny_gemm_swiglu(const linear_params& p, const swiglu_params& act,
                        skinny_gemm_plans& plans, bool pdl, cudaStream_t s) {
  check_shape(p, "skinny_gemm_swiglu");
  if (p.out_features % 2 != 0 || act.intermediate * 2 != p.out_features ||
      act.num_tokens != p.num_tokens || !act.out) {
    throw std::invalid_argument("skinny_gemm_swiglu: the gate_up layer must have 2 x " +
                                std::to_string(act.intermediate) + " outputs for " +
                                std::to_string(act.num_tokens) + " tokens and an output buffer");
  }
  launch(p, plans, act.out, false, act.intermediate, true, pdl, s);
}

}  // namespace ridgeline::cuda
