// Linear layers (see linear.hpp).
//
// GEMV for decode: one warp per output feature streams its weight row once with 16-byte
// evict-first loads (4 in flight per lane), multiplies by each token's activations (read through
// L1, they are shared by every warp) and reduces with shuffles. Bytes: the weights, once (a
// Llama-2-7B block's four layers: 405 MB, ~130 us at 3.1 TB/s); FLOPs: 2 per weight per token,
// at most 16 per 2 bytes, well inside what the FMA units give at that bandwidth.
//
// gemv_norm: the same GEMV with the residual add + RMSNorm before it (rms_norm.cu) recomputed in
// every block's prologue, so the decoder's two norms per layer need no launch of their own.
#include <cuda_bf16.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "check.hpp"
#include "linear.hpp"
#include "ops.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

constexpr int k_warps_per_block = 8;

__device__ __forceinline__ void unpack8(const uint4 v, float (&f)[8]) {
  const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// FromShared: x is the block's normalized rows in shared memory (gemv_norm), else global.
template <int N, bool FromShared = false>
__device__ __forceinline__ void fma_block(const uint4 wv, const uint4* __restrict__ x, int k8,
                                          int i, int tokens, float (&acc)[N]) {
  float wf[8];
  unpack8(wv, wf);
#pragma unroll
  for (int t = 0; t < N; ++t) {
    if (t < tokens) {
      float xf[8];
      const uint4* xv = x + static_cast<std::size_t>(t) * k8 + i;
      unpack8(FromShared ? *xv : __ldg(xv), xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[t] = fmaf(wf[j], xf[j], acc[t]);
    }
  }
}

// What a gemv_norm block needs to recompute rms_norm (ops.hpp, rms_norm_params) of its input rows,
// as 16-byte vectors, with the shape of rms_norm.cu's vector path whose reduction it reproduces.
struct norm_prologue {
  const detail::bf16x8* input = nullptr;     // [tokens][k8] rms_norm's input (the layer's output)
  const detail::bf16x8* residual = nullptr;  // [tokens][k8] the old residual, or null
  detail::bf16x8* residual_out = nullptr;    // [tokens][k8] the new residual (block 0 stores it)
  const detail::bf16x8* weight = nullptr;    // [k8] the norm's weight
  int vec_threads = 32, vec_per_thread = 1;  // detail::rms_norm_vec_shape_for(k8)
  float inv_hidden = 0, eps = 0;
};

// The gemv_norm prologue, run by every thread of the block after griddepcontrol.wait: xs[t][i] =
// rms_norm's out for the block's `tokens` rows, bitwise. Four steps, a barrier after each:
//  1. h = bf16(residual + input) (or input) into xs: every load of the rows independent, so all
//     are in flight at once; block 0 alone stores h as the new residual (the other blocks read the
//     old one, which must live in another buffer). The norm weight is asked into L1 for step 4.
//  2. The sums of squares as rms_norm.cu's vector kernel forms them with vec_threads threads:
//     thread v over its vectors v, v + vec_threads, ... in order, then 32 consecutive threads by
//     xor shuffles; its thread v is played here by thread v mod blockDim.x (both multiples of 32,
//     so the lanes of our warp are the lanes of its warp).
//  3. The warps' sums in order, then 1 / rms per row.
//  4. xs = bf16(h * inv_rms * weight).
// The add, the squares, rsqrt and the scaling are ops_common.cuh's helpers, as in rms_norm.cu.
// Napkin (hidden 4096, 1 token): 8 KB of input, 8 KB of residual and 8 KB of weight per block from
// L2 (L1 once an earlier block on the SM has read them), 8 KB of shared memory.
template <int N>
__device__ __forceinline__ void norm_rows(const norm_prologue& a, uint4* xs, int k8, int tokens) {
  __shared__ float warp_sums[N][32];
  __shared__ float inv_rms[N];
  auto* h_rows = reinterpret_cast<detail::bf16x8*>(xs);
  const int lane = threadIdx.x & 31;
  const bool store_residual = blockIdx.x == 0 && a.residual_out != nullptr;
  // Step 1 in batches of B vectors per thread, each batch's loads issued before any is used.
  constexpr int B = 4;
  const int n = tokens * k8;
  for (int base = threadIdx.x; base < n; base += B * blockDim.x) {
    detail::bf16x8 h[B], res[B];
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int at = base + b * blockDim.x;
      if (at < n) {
        h[b] = a.input[at];
        if (a.residual) res[b] = a.residual[at];
      }
    }
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int at = base + b * blockDim.x;
      if (at < k8) asm volatile("prefetch.L1 [%0];" ::"l"(a.weight + at));
    }
#pragma unroll
    for (int b = 0; b < B; ++b) {
      const int at = base + b * blockDim.x;
      if (at < n) {
        if (a.residual) {
#pragma unroll
          for (int k = 0; k < 8; ++k) h[b].v[k] = detail::rms_residual_add(res[b].v[k], h[b].v[k]);
          if (store_residual) a.residual_out[at] = h[b];
        }
        h_rows[at] = h[b];
      }
    }
  }
  __syncthreads();
  for (int t = 0; t < tokens; ++t) {
    const detail::bf16x8* row = h_rows + static_cast<std::size_t>(t) * k8;
    for (int v = threadIdx.x; v < a.vec_threads; v += blockDim.x) {
      float sum_sq = 0;
      for (int j = 0; j < a.vec_per_thread; ++j) {
        const int i = v + j * a.vec_threads;
        if (i < k8) {
          const detail::bf16x8 h = row[i];
          float r[8];
#pragma unroll
          for (int k = 0; k < 8; ++k) r[k] = __bfloat162float(h.v[k]);
          sum_sq = detail::rms_sum_squares(r, sum_sq);
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
      if (lane == 0) warp_sums[t][v >> 5] = sum_sq;
    }
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < tokens) {
    float total = 0;
    for (int w = 0; w < a.vec_threads / 32; ++w) total += warp_sums[threadIdx.x][w];
    inv_rms[threadIdx.x] = detail::rms_inv(total, a.inv_hidden, a.eps);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < k8; i += blockDim.x) {
    const detail::bf16x8 w = a.weight[i];
    for (int t = 0; t < tokens; ++t) {
      const std::size_t at = static_cast<std::size_t>(t) * k8 + i;
      detail::bf16x8 x = h_rows[at];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        x.v[k] = detail::rms_scale(__bfloat162float(x.v[k]), inv_rms[t], w.v[k]);
      }
      h_rows[at] = x;
    }
  }
  __syncthreads();
}

// gemv_norm's normalized rows, [tokens][k8] (dynamic shared memory).
extern __shared__ uint4 gemv_norm_rows[];

// KS warps share one output feature, each summing a 1/KS slice of its k range (short rows of
// few output features get more parallel weight streams); their partial sums meet in shared
// memory in a fixed order. With programmatic dependent launch the kernel may start while the
// kernel before it (which writes x) still runs: the first group of weight loads is issued before
// griddepcontrol.wait, which then blocks until that kernel has completed and its writes are
// visible. Without PDL the wait returns at once. Once a warp has streamed its slice it lets the
// next kernel be scheduled (that kernel waits for this grid to finish before it reads y).
// Glu: the weight has 2m rows (gate rows, then up rows, as gate_up); each warp streams gate row
// r and up row m + r together, rounds both sums to bf16 as the plain GEMV would store them and
// writes swiglu(gate, up) = bf16(silu(g) * u) (swiglu.cu's formula) to y[t][r]: the same bits as
// the GEMV followed by the swiglu kernel, without the intermediate round trip or second launch.
// Norm (gemv_norm): x is not read; each warp issues its first group of weight loads, then the
// whole block waits and computes rms_norm's rows into shared memory (norm_rows), and the GEMV
// reads x from there. Every accumulator sums the same products in the same order as without Norm.
template <int N, bool OutF32, int U, int KS, bool Glu, bool Norm>
__device__ __forceinline__ void gemv_body(const uint4* __restrict__ x, const uint4* __restrict__ w,
                                          void* __restrict__ y, int k8, int m, int tokens,
                                          const norm_prologue& np) {
  constexpr int R = Glu ? 2 : 1;  // weight rows per warp
  constexpr int rows_per_block = k_warps_per_block / KS;
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = threadIdx.x & 31;
  const int row = blockIdx.x * rows_per_block + warp / KS;
  const int slice = warp % KS;
  const int per = (k8 + KS - 1) / KS;
  const int k_begin = slice * per, k_end = min(k8, k_begin + per);
  float acc[R][N];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < N; ++t) acc[r][t] = 0.0f;
  }
  bool waited = false;
  int i_first = k_begin + lane;  // where the loop below starts
  if constexpr (Norm) {
    // The first group as the remainder below does it (predicated, all loads in flight), split by
    // the block-wide prologue between its loads and its FMAs.
    uint4 wv[R][U] = {};
    if (row < m) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4* wr = w + (static_cast<std::size_t>(row) + r * m) * k8;
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (i_first + 32 * u < k_end) wv[r][u] = __ldcs(wr + i_first + 32 * u);
        }
      }
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    waited = true;
    norm_rows<N>(np, gemv_norm_rows, k8, tokens);
    x = gemv_norm_rows;
    if (row < m) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (i_first + 32 * u < k_end) {
            fma_block<N, true>(wv[r][u], x, k8, i_first + 32 * u, tokens, acc[r]);
          }
        }
      }
    }
    i_first += 32 * U;
  }
  if (row < m) {
    const uint4* wr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wr[r] = w + (static_cast<std::size_t>(row) + r * m) * k8;
    int i = i_first;
    for (; i + 32 * (U - 1) < k_end; i += 32 * U) {
      uint4 wv[R][U];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) wv[r][u] = __ldcs(wr[r] + i + 32 * u);
      }
      if (!waited) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        waited = true;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) fma_block<N, Norm>(wv[r][u], x, k8, i + 32 * u, tokens, acc[r]);
      }
    }
    // The remainder (fewer than 32 U vectors, e.g. 88 of a 344-vector slice of the 11008-wide
    // down projection): one predicated group, its loads all in flight at once rather than one
    // dependent load per pass. Each accumulator still sums its vectors in ascending order.
    if (i < k_end) {
      uint4 wv[R][U] = {};
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (i + 32 * u < k_end) wv[r][u] = __ldcs(wr[r] + i + 32 * u);
        }
      }
      if (!waited) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        waited = true;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (i + 32 * u < k_end) fma_block<N, Norm>(wv[r][u], x, k8, i + 32 * u, tokens, acc[r]);
        }
      }
    }
    if (!waited) asm volatile("griddepcontrol.wait;" ::: "memory");
  } else if (!waited) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
  }
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < N; ++t) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], o);
    }
  }
  if constexpr (KS > 1) {
    __shared__ float part[R][k_warps_per_block][N];
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < N; ++t) part[r][warp][t] = acc[r][t];
      }
    }
    __syncthreads();
    if (slice != 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int t = 0; t < N; ++t) {
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < KS; ++k) sum += part[r][warp + k][t];
        acc[r][t] = sum;
      }
    }
  }
  if (lane == 0 && row < m) {
#pragma unroll
    for (int t = 0; t < N; ++t) {
      if (t < tokens) {
        const std::size_t at = static_cast<std::size_t>(t) * m + row;
        if constexpr (Glu) {
          static_cast<__nv_bfloat16*>(y)[at] =
              detail::swiglu_one(__float2bfloat16_rn(acc[0][t]), __float2bfloat16_rn(acc[1][t]));
        } else if constexpr (OutF32) {
          static_cast<float*>(y)[at] = acc[0][t];
        } else {
          static_cast<__nv_bfloat16*>(y)[at] = __float2bfloat16_rn(acc[0][t]);
        }
      }
    }
  }
}

template <int N, bool OutF32, int U, int KS, bool Glu = false>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ w, void* __restrict__ y,
                int k8, int m, int tokens) {
  gemv_body<N, OutF32, U, KS, Glu, false>(x, w, y, k8, m, tokens, norm_prologue{});
}

// gemv_norm (bf16 output): dynamic shared memory of tokens x k8 x 16 bytes.
template <int N, int U, int KS, bool Glu>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    gemv_norm_kernel(const norm_prologue np, const uint4* __restrict__ w, void* __restrict__ y,
                     int k8, int m, int tokens) {
  gemv_body<N, false, U, KS, Glu, true>(nullptr, w, y, k8, m, tokens, np);
}

int k_splits_for(const linear_params& p, const gemv_options& o) {
  if (o.k_splits > 0) return o.k_splits;
  // Measured on an H100 (bench/linear_bench.cpp, 1 token, Llama-2-7B block): 4 splits 147 us,
  // 2 splits 152 us, 1 split 152 us.
  (void)p;
  return 4;
}

// Glu: p.out_features = 2 m rows of gate_up; writes swiglu into act [tokens][m]. Norm: the
// gemv_norm kernel with np (p.x unused), tokens x k8 x 16 bytes of dynamic shared memory.
template <int N, bool Glu = false, bool Norm = false>
void launch_gemv(const linear_params& p, const gemv_options& o, cudaStream_t s, void* act = nullptr,
                 const norm_prologue* np = nullptr) {
  const int ks = k_splits_for(p, o);
  const int m = Glu ? p.out_features / 2 : p.out_features;
  cudaLaunchConfig_t cfg{};
  const int rows_per_block = k_warps_per_block / ks;
  cfg.gridDim = dim3((m + rows_per_block - 1) / rows_per_block);
  cfg.blockDim = dim3(k_warps_per_block * 32);
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = o.pdl ? 1 : 0;
  const auto* x = reinterpret_cast<const uint4*>(p.x);
  const auto* w = reinterpret_cast<const uint4*>(p.w);
  const int k8 = p.in_features / 8;
  void* y = Glu ? act : p.y;
  auto go = [&](auto kernel) {
    RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, x, w, y, k8, m, p.num_tokens));
  };
  auto go_norm = [&](auto kernel) {
    cfg.dynamicSmemBytes = static_cast<std::size_t>(p.num_tokens) * k8 * sizeof(uint4);
    if (cfg.dynamicSmemBytes > 48 * 1024) {  // above the default limit (gemv_norm_unsupported
                                             // checked the device's opt-in limit)
      RIDGELINE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(cfg.dynamicSmemBytes)));
    }
    RIDGELINE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, *np, w, y, k8, m, p.num_tokens));
  };
  auto by_ks = [&](auto u) {
    constexpr int U = decltype(u)::value;
    if constexpr (Norm) {
      if (ks == 4) return go_norm(gemv_norm_kernel<N, U, 4, Glu>);
      if (ks == 2) return go_norm(gemv_norm_kernel<N, U, 2, Glu>);
      return go_norm(gemv_norm_kernel<N, U, 1, Glu>);
    } else if constexpr (Glu) {
      if (ks == 4) return go(gemv_kernel<N, false, U, 4, true>);
      if (ks == 2) return go(gemv_kernel<N, false, U, 2, true>);
      return go(gemv_kernel<N, false, U, 1, true>);
    } else {
      if (ks == 4) return p.y_fp32 ? go(gemv_kernel<N, true, U, 4>) : go(gemv_kernel<N, false, U, 4>);
      if (ks == 2) return p.y_fp32 ? go(gemv_kernel<N, true, U, 2>) : go(gemv_kernel<N, false, U, 2>);
      return p.y_fp32 ? go(gemv_kernel<N, true, U, 1>) : go(gemv_kernel<N, false, U, 1>);
    }
  };
  if (o.unroll == 8) by_ks(std::integral_constant<int, 8>{});
  else by_ks(std::integral_constant<int, 4>{});
}

void check_options(const gemv_options& o, const char* who) {
  if (o.unroll != 4 && o.unroll != 8) {
    throw std::invalid_argument(std::string(who) + ": unroll must be 4 or 8");
  }
  if (o.k_splits != 0 && o.k_splits != 1 && o.k_splits != 2 && o.k_splits != 4) {
    throw std::invalid_argument(std::string(who) + ": k_splits must be 0 (auto), 1, 2 or 4");
  }
}

void validate(const linear_params& p, const char* who) {
  auto fail = [who, &p](const std::string& why) {
    throw std::invalid_argument(std::string(who) + ": " + why + " (tokens=" +
                                std::to_string(p.num_tokens) + " in=" +
                                std::to_string(p.in_features) + " out=" +
                                std::to_string(p.out_features) + ")");
  };
  if (!p.x || !p.w || !p.y) fail("null pointer");
  if (p.num_tokens <= 0 || p.in_features <= 0 || p.out_features <= 0) fail("empty shape");
  if (p.in_features % 8 != 0) fail("in_features must be a multiple of 8");
  if ((reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 != 0) {
    fail("x and w must be 16-byte aligned");
  }
}

}  // namespace

void gemv(const linear_params& p, cudaStream_t s, const gemv_options& o) {
  validate(p, "gemv");
  check_options(o, "gemv");
  if (p.num_tokens > k_gemv_max_tokens) {
    throw std::invalid_argument("gemv: at most " + std::to_string(k_gemv_max_tokens) +
                                " tokens, got " + std::to_string(p.num_tokens));
  }
  if (p.num_tokens == 1) return launch_gemv<1>(p, o, s);
  if (p.num_tokens == 2) return launch_gemv<2>(p, o, s);
  if (p.num_tokens <= 4) return launch_gemv<4>(p, o, s);
  return launch_gemv<8>(p, o, s);
}

void gemv_swiglu(const linear_params& p, const swiglu_params& act, cudaStream_t s,
                 const gemv_options& o) {
  validate(p, "gemv_swiglu");
  check_options(o, "gemv_swiglu");
  if (p.y_fp32 || p.out_features != 2 * act.intermediate || act.num_tokens != p.num_tokens ||
      !act.out) {
    throw std::invalid_argument("gemv_swiglu: needs bf16 output, out_features = 2 x intermediate "
                                "and matching tokens (out=" + std::to_string(p.out_features) +
                                " intermediate=" + std::to_string(act.intermediate) + ")");
  }
  if (p.num_tokens > k_gemv_max_tokens) {
    throw std::invalid_argument("gemv_swiglu: at most " + std::to_string(k_gemv_max_tokens) +
                                " tokens, got " + std::to_string(p.num_tokens));
  }
  if (p.num_tokens == 1) return launch_gemv<1, true>(p, o, s, act.out);
  if (p.num_tokens == 2) return launch_gemv<2, true>(p, o, s, act.out);
  if (p.num_tokens <= 4) return launch_gemv<4, true>(p, o, s, act.out);
  return launch_gemv<8, true>(p, o, s, act.out);
}

std::string gemv_norm_unsupported(const rms_norm_params& n, const linear_params& l) {
  const std::string shape =
      " (tokens=" + std::to_string(l.num_tokens) + " in=" + std::to_string(l.in_features) +
      " out=" + std::to_string(l.out_features) + " hidden=" + std::to_string(n.hidden) + ")";
  if (!l.w || !l.y || !n.input || !n.weight) return "null weight, output, input or norm weight";
  if (l.num_tokens < 1 || l.num_tokens > k_gemv_max_tokens || l.out_features <= 0) {
    return "needs 1 ... " + std::to_string(k_gemv_max_tokens) + " tokens" + shape;
  }
  if (l.y_fp32) return "needs a bf16 output";
  if (n.num_tokens != l.num_tokens || n.hidden != l.in_features) {
    return "the norm's tokens and hidden must be the linear layer's tokens and in_features" + shape;
  }
  // rms_norm.cu's vector path, whose reduction the prologue reproduces.
  if (l.in_features % 8 != 0 || l.in_features > 32768) {
    return "in_features must be a multiple of 8, at most 32768" + shape;
  }
  if (!detail::aligned16(l.w) || !detail::aligned16(n.input) || !detail::aligned16(n.weight) ||
      (n.residual && !detail::aligned16(n.residual)) ||
      (n.residual_out && !detail::aligned16(n.residual_out))) {
    return "weight, input, norm weight and residual buffers must be 16-byte aligned";
  }
  if (n.residual && (!n.residual_out || n.residual_out == n.residual)) {
    return "the new residual must go to a buffer other than the old one (residual_out)";
  }
  if (!n.residual && n.residual_out) return "residual_out without residual";
  if (n.residual && (n.residual == n.input || n.residual_out == n.input)) {
    return "the residual buffers must not alias the input";
  }
  int device = 0, optin = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const long long rows_bytes = 2LL * l.num_tokens * l.in_features;
  if (rows_bytes + 4096 > optin) {  // 4 KB for the kernel's static shared memory
    return "the normalized rows (" + std::to_string(rows_bytes) +
           " bytes) do not fit the block's shared memory" + shape;
  }
  return {};
}

namespace {

// The GEMV (Glu: with SwiGLU into act) with the norm in its prologue; n and l checked.
template <bool Glu>
void launch_gemv_norm(const rms_norm_params& n, const linear_params& l, const gemv_options& o,
                      cudaStream_t s, void* act) {
  norm_prologue np;
  np.input = reinterpret_cast<const detail::bf16x8*>(n.input);
  np.residual = reinterpret_cast<const detail::bf16x8*>(n.residual);
  np.residual_out = reinterpret_cast<detail::bf16x8*>(n.residual_out);
  np.weight = reinterpret_cast<const detail::bf16x8*>(n.weight);
  const auto shape = detail::rms_norm_vec_shape_for(n.hidden / 8);
  np.vec_threads = shape.threads;
  np.vec_per_thread = shape.per_thread;
  np.inv_hidden = 1.0f / static_cast<float>(n.hidden);  // as rms_norm.cu's launcher
  np.eps = n.eps;
  if (l.num_tokens == 1) return launch_gemv<1, Glu, true>(l, o, s, act, &np);
  if (l.num_tokens == 2) return launch_gemv<2, Glu, true>(l, o, s, act, &np);
  if (l.num_tokens <= 4) return launch_gemv<4, Glu, true>(l, o, s, act, &np);
  return launch_gemv<8, Glu, true>(l, o, s, act, &np);
}

}  // namespace

void gemv_norm(const rms_norm_params& n, const linear_params& l, cudaStream_t s,
               const gemv_options& o) {
  check_options(o, "gemv_norm");
  const std::string why = gemv_norm_unsupported(n, l);
  if (!why.empty()) throw std::invalid_argument("gemv_norm: " + why);
  launch_gemv_norm<false>(n, l, o, s, nullptr);
}

void gemv_norm_swiglu(const rms_norm_params& n, const linear_params& l, const swiglu_params& act,
                      cudaStream_t s, const gemv_options& o) {
  check_options(o, "gemv_norm_swiglu");
  const std::string why = gemv_norm_unsupported(n, l);
  if (!why.empty()) throw std::invalid_argument("gemv_norm_swiglu: " + why);
  if (l.out_features != 2 * act.intermediate || act.num_tokens != l.num_tokens || !act.out) {
    throw std::invalid_argument(
        "gemv_norm_swiglu: needs out_features = 2 x intermediate and "
        "matching tokens (out=" +
        std::to_string(l.out_features) + " intermediate=" + std::to_string(act.intermediate) + ")");
  }
  launch_gemv_norm<true>(n, l, o, s, act.out);
}

linear_runner::linear_runner(std::size_t workspace_bytes) : m_workspace(workspace_bytes) {
  int device = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&m_sm_count, cudaDevAttrMultiProcessorCount, device));
  int major = 0, minor = 0;
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  m_cc = 10 * major + minor;
}

linear_runner::path linear_runner::choose(const linear_params& p) const {
  if (m_invariant) return path::cublas;
  if (m_path != path::automatic) return m_path;
  // Measured on an H100 (bench/linear_bench.cpp): the GEMV wins at 1 token; from 2 tokens the plan
  // times cuBLASLt against the skinny GEMM.
  if (p.num_tokens == 1) return path::gemv;
  return path::automatic;
}

namespace {

// The skinny GEMM is built for sm_90a alone (wgmma): compute capability 9.0.
bool skinny_fits(const linear_params& p, int cc) {
  return cc == 90 && p.num_tokens <= k_skinny_max_tokens && p.in_features % 8 == 0 &&
         detail::aligned16(p.x) && detail::aligned16(p.w);
}

}  // namespace

const cublasLtMatmulAlgo_t& linear_runner::invariant_algo(const linear_params& p) {
  const auto key = std::make_tuple(p.in_features, p.out_features, p.y_fp32);
  auto it = m_invariant_algos.find(key);
  if (it != m_invariant_algos.end()) return it->second;
  const lt_gemm reference(m_handle.get(), dtype::bf16, static_cast<std::size_t>(p.out_features),
                          static_cast<std::size_t>(k_invariant_tokens),
                          static_cast<std::size_t>(p.in_features), m_workspace.bytes(), 8,
                          p.y_fp32, /*no_split_k=*/true);
  return m_invariant_algos.emplace(key, reference.algorithm(0)).first->second;
}

linear_runner::plan& linear_runner::plan_for(const linear_params& p, cudaStream_t s) {
  const auto key =
      std::make_tuple(p.num_tokens, p.in_features, p.out_features, p.y_fp32, m_invariant);
  auto it = m_plans.find(key);
  if (it != m_plans.end()) return it->second;
  plan pl;
  if (m_invariant) {
    pl.gemm = std::make_unique<lt_gemm>(
        m_handle.get(), dtype::bf16, static_cast<std::size_t>(p.out_features),
        static_cast<std::size_t>(p.num_tokens), static_cast<std::size_t>(p.in_features),
        m_workspace.bytes(), 1, p.y_fp32);
    pl.fixed = true;
    pl.fixed_algo = invariant_algo(p);
    if (!pl.gemm->supports(pl.fixed_algo)) {
      throw std::invalid_argument(
          "batch-invariant linear: the algorithm fixed for in=" + std::to_string(p.in_features) +
          " out=" + std::to_string(p.out_features) + " cannot run " +
          std::to_string(p.num_tokens) + " tokens");
    }
    return m_plans.emplace(key, std::move(pl)).first->second;
  }
  pl.gemm = std::make_unique<lt_gemm>(m_handle.get(), dtype::bf16,
                                      static_cast<std::size_t>(p.out_features),
                                      static_cast<std::size_t>(p.num_tokens),
                                      static_cast<std::size_t>(p.in_features), m_workspace.bytes(),
                                      m_candidates, p.y_fp32);
  const bool skinny = m_path == path::automatic && skinny_fits(p, m_cc);
  if (pl.gemm->algorithm_count() > 1 || skinny) {
    // Every candidate on these very buffers: one warm-up, then the best of three runs, each after
    // L2 has been overwritten, so that the weights come from DRAM as they do in a decode step.
    int l2_bytes = 0, device = 0;
    RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
    RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    device_buffer flush(2 * static_cast<std::size_t>(std::max(l2_bytes, 1 << 20)));
    event_timer timer;
    auto best_of_three = [&](auto&& launch) {
      launch();
      double t = std::numeric_limits<double>::infinity();
      for (int r = 0; r < 3; ++r) {
        RIDGELINE_CUDA_CHECK(cudaMemsetAsync(flush.data(), r + 1, flush.bytes(), s));
        timer.start(s);
        launch();
        timer.stop(s);
        t = std::min(t, timer.seconds());
      }
      return t;
    };
    double best = std::numeric_limits<double>::infinity();
    for (int a = 0; a < pl.gemm->algorithm_count(); ++a) {
      const double t = best_of_three(
          [&] { pl.gemm->run(a, p.w, p.x, p.y, m_workspace.data(), s); });
      if (t < best) best = t, pl.algorithm = a;
    }
    if (skinny) {
      std::vector<int> candidates{skinny_gemm_splits(p, m_sm_count)};
      for (int sp : {1, 2, 4, 8}) {
        if (sp != candidates.front()) candidates.push_back(sp);
      }
      for (int sp : candidates) {
        const double t = best_of_three([&] { skinny_gemm(p, sp, m_gemv.pdl, s); });
        if (t < best) best = t, pl.skinny_splits = sp;
      }
    }
  }
  return m_plans.emplace(key, std::move(pl)).first->second;
}

std::pair<linear_runner::path, int> linear_runner::planned(const linear_params& p,
                                                           cudaStream_t s) {
  validate(p, "linear");
  const path chosen = choose(p);
  if (chosen == path::gemv) return {path::gemv, 0};
  if (chosen == path::skinny) {
    return {path::skinny, m_skinny_splits > 0 ? m_skinny_splits : skinny_gemm_splits(p, m_sm_count)};
  }
  const plan& pl = plan_for(p, s);
  if (pl.skinny_splits > 0) return {path::skinny, pl.skinny_splits};
  return {path::cublas, 0};
}

void linear_runner::prepare(const linear_params& p, cudaStream_t s) {
  validate(p, "linear");
  const path chosen = choose(p);
  if (chosen == path::cublas || chosen == path::automatic) plan_for(p, s);
}

bool linear_runner::fuses_norm(const rms_norm_params& n, const linear_params& p) const {
  if (p.x != n.out || p.in_features != n.hidden || p.num_tokens != n.num_tokens) {
    throw std::invalid_argument(
        "linear with norm: the layer must read the norm's output (x = out, in_features = hidden, "
        "same tokens; in=" +
        std::to_string(p.in_features) + " hidden=" + std::to_string(n.hidden) + ")");
  }
  return m_fuse_norm && choose(p) == path::gemv && gemv_norm_unsupported(n, p).empty();
}

void linear_runner::run_norm(const rms_norm_params& n, const linear_params& p, cudaStream_t s) {
  if (fuses_norm(n, p)) return gemv_norm(n, p, s, m_gemv);
  rms_norm(n, s);
  run(p, s);
}

void linear_runner::run_norm_swiglu(const rms_norm_params& n, const linear_params& p,
                                    const swiglu_params& act, cudaStream_t s) {
  if (fuses_norm(n, p)) return gemv_norm_swiglu(n, p, act, s, m_gemv);
  rms_norm(n, s);
  run_swiglu(p, act, s);
}

void linear_runner::run_swiglu(const linear_params& p, const swiglu_params& act,
                               cudaStream_t s) {
  validate(p, "linear");
  if (choose(p) == path::gemv) return gemv_swiglu(p, act, s, m_gemv);
  run(p, s);
  swiglu(act, s);
}

void linear_runner::run(const linear_params& p, cudaStream_t s) {
  const auto [chosen, splits] = planned(p, s);
  if (chosen == path::gemv) return gemv(p, s, m_gemv);
  if (chosen == path::skinny) return skinny_gemm(p, splits, m_gemv.pdl, s);
  const plan& pl = plan_for(p, s);
  // lt_gemm's A is the weight [out][in], B the activations [tokens][in]: D = y [tokens][out].
  if (pl.fixed) return pl.gemm->run_with(pl.fixed_algo, p.w, p.x, p.y, m_workspace.data(), s);
  pl.gemm->run(pl.algorithm, p.w, p.x, p.y, m_workspace.data(), s);
}

}  // namespace ridgeline::cuda
