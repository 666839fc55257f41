// Linear layers (see linear.hpp).
//
// GEMV for decode: one warp per output feature streams its weight row once with 16-byte
// evict-first loads (4 in flight per lane), multiplies by each token's activations (read through
// L1, they are shared by every warp) and reduces with shuffles. Bytes: the weights, once (a
// Llama-2-7B block's four layers: 405 MB, ~130 us at 3.1 TB/s); FLOPs: 2 per weight per token,
// at most 16 per 2 bytes, well inside what the FMA units give at that bandwidth.
#include <cuda_bf16.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "check.hpp"
#include "device_utils.cuh"
#include "linear.hpp"
#include "ops.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

constexpr int k_warps_per_block = 8;

using detail::unpack8;

template <int N>
__device__ __forceinline__ void fma_block(const uint4 wv, const uint4* __restrict__ x, int k8,
                                          int i, int tokens, float (&acc)[N]) {
  float wf[8];
  unpack8(wv, wf);
#pragma unroll
  for (int t = 0; t < N; ++t) {
    if (t < tokens) {
      float xf[8];
      unpack8(__ldg(x + static_cast<std::size_t>(t) * k8 + i), xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[t] = fmaf(wf[j], xf[j], acc[t]);
    }
  }
}

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
template <int N, bool OutF32, int U, int KS, bool Glu = false>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ w, void* __restrict__ y,
                int k8, int m, int tokens) {
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
  if (row < m) {
    const uint4* wr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) wr[r] = w + (static_cast<std::size_t>(row) + r * m) * k8;
    int i = k_begin + lane;
    for (; i + 32 * (U - 1) < k_end; i += 32 * U) {
      uint4 wv[R][U];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) wv[r][u] = __ldcs(wr[r] + i + 32 * u);
      }
      if (!waited) {
        detail::pdl_wait();
        waited = true;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) fma_block<N>(wv[r][u], x, k8, i + 32 * u, tokens, acc[r]);
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
        detail::pdl_wait();
        waited = true;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (i + 32 * u < k_end) fma_block<N>(wv[r][u], x, k8, i + 32 * u, tokens, acc[r]);
        }
      }
    }
    if (!waited) detail::pdl_wait();
  } else {
    detail::pdl_wait();
  }
  detail::pdl_trigger();
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

int k_splits_for(const linear_params& p, const gemv_options& o) {
  if (o.k_splits > 0) return o.k_splits;
  // Measured on an H100 (bench/linear_bench.cpp, 1 token, Llama-2-7B block): 4 splits 147 us,
  // 2 splits 152 us, 1 split 152 us.
  (void)p;
  return 4;
}

// Glu: p.out_features = 2 m rows of gate_up; writes swiglu into act [tokens][m].
template <int N, bool Glu = false>
void launch_gemv(const linear_params& p, const gemv_options& o, cudaStream_t s,
                 void* act = nullptr) {
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
  auto by_ks = [&](auto u) {
    constexpr int U = decltype(u)::value;
    if constexpr (Glu) {
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
  if (o.unroll != 4 && o.unroll != 8) throw std::invalid_argument("gemv: unroll must be 4 or 8");
  if (o.k_splits != 0 && o.k_splits != 1 && o.k_splits != 2 && o.k_splits != 4) {
    throw std::invalid_argument("gemv: k_splits must be 0 (auto), 1, 2 or 4");
  }
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
  if (o.unroll != 4 && o.unroll != 8) {
    throw std::invalid_argument("gemv_swiglu: unroll must be 4 or 8");
  }
  if (o.k_splits != 0 && o.k_splits != 1 && o.k_splits != 2 && o.k_splits != 4) {
    throw std::invalid_argument("gemv_swiglu: k_splits must be 0 (auto), 1, 2 or 4");
  }
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

linear_runner::linear_runner(const linear_options& o)
    : m_workspace(o.workspace_bytes),
      m_quant_force(o.quant_force),
      m_invariant(o.batch_invariant),
      m_force(o.force) {
  if (o.gemm == "cublas") m_gemm_cublas = true;
  else if (o.gemm != "auto" && o.gemm != "skinny") {
    throw std::invalid_argument("linear: unknown GEMM path '" + o.gemm + "' (auto, cublas, skinny)");
  }
  gemm_choice_policy policy = k_engine_gemm_policy;
  policy.candidates = o.gemm_candidates;
  m_chooser = shared_gemm_chooser(policy);  // validates the candidate count
  int device = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  int major = 0, minor = 0;
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  m_sm90 = major == 9 && minor == 0;
}

linear_runner::path linear_runner::choose(const linear_params& p) const {
  if (m_invariant) return path::cublas;
  if (m_force != path::automatic) return m_force;
  // Measured on an H100 (docs/engine.md): the GEMV wins at 1 token; from 2 to 64 tokens the
  // skinny tensor-core GEMM beats cuBLASLt (Llama-2-7B decode at context 512: 10.91 ms against
  // 11.32 at batch 64, 5.19 against 5.59 at batch 2), cuBLASLt above.
  if (p.num_tokens == 1) return path::gemv;
  const bool skinny_fits =
      m_sm90 && p.num_tokens <= k_skinny_max_tokens && p.in_features % 8 == 0 &&
      (reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.w)) % 16 == 0;
  if (m_gemm_cublas || !skinny_fits) return path::cublas;
  return path::skinny;
}

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

linear_runner::plan_key linear_runner::key_of(const linear_params& p, bool invariant) {
  return std::make_tuple(p.num_tokens, p.in_features, p.out_features, p.y_fp32, invariant);
}

// The algorithm a shape runs comes from the process's engine-policy chooser (gemm_chooser.hpp):
// timed once per process and device, so every runner (every engine) in the process runs the same
// kernel for the same shape and their results are bitwise alike. The engine's policy times each
// candidate cold, as the decoder runs it (weights stream from DRAM once per step): one warm-up,
// then the L2 is flushed before each of 5 runs and the median counts; a later candidate must be
// at least 1% faster than the best so far, so run-to-run noise does not flip the choice.
linear_runner::plan& linear_runner::plan_for(const linear_params& p, cudaStream_t s) {
  const plan_key key = key_of(p, m_invariant);
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
                                      m_chooser->candidates(), p.y_fp32);
  // lt_gemm's A is the weight [out][in], B the activations [tokens][in]: D = y [tokens][out].
  pl.choice = &m_chooser->choose(*pl.gemm, p.w, p.x, p.y, m_workspace.data(), s);
  return m_plans.emplace(key, std::move(pl)).first->second;
}

const gemm_choice* linear_runner::gemm_choice_for(const linear_params& p) const {
  if (m_invariant) return nullptr;
  const auto it = m_plans.find(key_of(p, false));
  return it == m_plans.end() ? nullptr : it->second.choice;
}

void linear_runner::prepare(const linear_params& p, cudaStream_t s) {
  validate(p, "linear");
  const path chosen = choose(p);
  if (chosen == path::cublas) plan_for(p, s);
  if (chosen == path::skinny) skinny_gemm_plan(p, false, m_skinny);
}

void linear_runner::run_swiglu(const linear_params& p, const swiglu_params& act, cudaStream_t s,
                               bool pdl) {
  validate(p, "linear");
  const path chosen = choose(p);
  if (chosen == path::gemv) return gemv_swiglu(p, act, s, {4, 0, pdl});
  if (chosen == path::skinny) return skinny_gemm_swiglu(p, act, m_skinny, pdl, s);
  run(p, s, pdl);
  swiglu(act, s, pdl);
}

void linear_runner::run(const linear_params& p, cudaStream_t s, bool pdl) {
  validate(p, "linear");
  const path chosen = choose(p);
  if (chosen == path::gemv) return gemv(p, s, {4, 0, pdl});
  if (chosen == path::skinny) return skinny_gemm(p, m_skinny, pdl, s);
  const plan& pl = plan_for(p, s);
  if (pl.fixed) return pl.gemm->run_with(pl.fixed_algo, p.w, p.x, p.y, m_workspace.data(), s);
  pl.gemm->run(pl.choice->index, p.w, p.x, p.y, m_workspace.data(), s);
}

quant_linear_path linear_runner::quant_path_for(int tokens) const {
  if (m_invariant) return quant_linear_path::dequant;
  if (m_quant_force != quant_linear_path::automatic) return m_quant_force;
  return tokens <= k_quant_sliced_max_tokens ? quant_linear_path::gemv : quant_linear_path::dequant;
}

void linear_runner::run_quant(const linear_params& p, const packed_quant_view& w,
                              bf16_bits* scratch, cudaStream_t s, bool pdl) {
  if (p.num_tokens <= 0 || !p.x || !p.y || w.rows != p.out_features || w.cols != p.in_features) {
    throw std::invalid_argument(
        "linear (quantized): tokens " + std::to_string(p.num_tokens) + ", in " +
        std::to_string(p.in_features) + ", out " + std::to_string(p.out_features) +
        " against packed weights [" + std::to_string(w.rows) + "][" + std::to_string(w.cols) +
        "] (or a null pointer)");
  }
  if (quant_path_for(p.num_tokens) == quant_linear_path::dequant) {
    if (!scratch) {
      throw std::invalid_argument("linear (quantized): " + std::to_string(p.num_tokens) +
                                  " tokens take the dequantize path, which needs scratch");
    }
    quant_dequantize_bf16(w, scratch, s);
    linear_params b = p;
    b.w = scratch;
    return run(b, s, pdl);
  }
  // 64-token slices: a slice's rows are those quant_gemv gives the slice alone (a token's row does
  // not depend on the other tokens of its launch, quant_gemv.cu).
  const std::size_t y_bytes = p.y_fp32 ? 4 : 2;
  for (int t0 = 0; t0 < p.num_tokens; t0 += k_quant_gemv_max_tokens) {
    quant_linear_params q;
    q.x = p.x + static_cast<std::size_t>(t0) * p.in_features;
    q.w = w;
    q.y = static_cast<unsigned char*>(p.y) + static_cast<std::size_t>(t0) * p.out_features * y_bytes;
    q.y_fp32 = p.y_fp32;
    q.num_tokens = std::min(k_quant_gemv_max_tokens, p.num_tokens - t0);
    quant_gemv(q, m_quant, s, {.pdl = pdl});
  }
}

void linear_runner::run_quant_swiglu(const linear_params& p, const packed_quant_view& w,
                                     bf16_bits* scratch, const swiglu_params& act, cudaStream_t s,
                                     bool pdl) {
  run_quant(p, w, scratch, s, pdl);
  swiglu(act, s, pdl);
}

}  // namespace ridgeline::cuda
