// RMSNorm fused with the residual add (see ops.hpp), one block per token row.
//
// Vector path (hidden % 8 == 0, 16-byte aligned pointers, hidden <= 32768): each thread loads up to
// V 16-byte vectors of the row into registers (V = 1 up to hidden 4096 with 512 threads, 2 up to
// 8192, ...), adds the residual and stores the bf16 sum back, reduces the sum of squares over the
// block in fp32, then scales from registers: every byte is read once and written once. Scalar path
// (any other shape): two passes over global memory, the second re-reading what the same thread
// wrote or read in the first, so out == input stays safe.
//
// Napkin (Llama, hidden 4096, residual): 64 tokens move 64 x 4096 x 2 B x (input + residual read,
// residual + out written) = 2 MiB, ~0.7 us at 3 TB/s; 1024 tokens 32 MiB, ~11 us. One block per
// row: at 64 tokens only 64 SMs work, so small batches are latency-bound, not bandwidth-bound.
#include <cstddef>
#include <string>

#include "check.hpp"
#include "device_utils.cuh"
#include "ops.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

// input and out may alias: no __restrict__ on them.
template <int V>
__global__ void rms_norm_vec_kernel(const detail::bf16x8* input, detail::bf16x8* residual,
                                    const detail::bf16x8* __restrict__ weight, detail::bf16x8* out,
                                    int nvec, float inv_hidden, float eps) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  __shared__ float scratch[32];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * nvec;
  float r[V][8];
  float sum_sq = 0;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      const detail::bf16x8 x = input[row + i];
      if (residual) {
        detail::bf16x8 res = residual[row + i];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          res.v[k] = __float2bfloat16_rn(__bfloat162float(res.v[k]) + __bfloat162float(x.v[k]));
          r[j][k] = __bfloat162float(res.v[k]);
        }
        residual[row + i] = res;
      } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) r[j][k] = __bfloat162float(x.v[k]);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) sum_sq += r[j][k] * r[j][k];
    }
  }
  const float inv_rms = rsqrtf(detail::block_sum(sum_sq, scratch) * inv_hidden + eps);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      const detail::bf16x8 w = weight[i];
      detail::bf16x8 o;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        o.v[k] = __float2bfloat16_rn(r[j][k] * inv_rms * __bfloat162float(w.v[k]));
      }
      out[row + i] = o;
    }
  }
}

__global__ void rms_norm_scalar_kernel(const __nv_bfloat16* input, __nv_bfloat16* residual,
                                       const __nv_bfloat16* __restrict__ weight, __nv_bfloat16* out,
                                       int hidden, float eps) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  __shared__ float scratch[32];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * hidden;
  float sum_sq = 0;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float r = __bfloat162float(input[row + i]);
    if (residual) {
      const __nv_bfloat16 sum = __float2bfloat16_rn(__bfloat162float(residual[row + i]) + r);
      residual[row + i] = sum;
      r = __bfloat162float(sum);
    }
    sum_sq += r * r;
  }
  const float inv_rms =
      rsqrtf(detail::block_sum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    // The same thread wrote residual[row + i] (or read input[row + i]) above.
    const float r = __bfloat162float(residual ? residual[row + i] : input[row + i]);
    out[row + i] = __float2bfloat16_rn(r * inv_rms * __bfloat162float(weight[i]));
  }
}

template <int V>
void launch_vec(const rms_norm_params& p, int nvec, cudaStream_t s, bool pdl) {
  const int threads = ((nvec + V - 1) / V + 31) / 32 * 32;
  launch_kernel(rms_norm_vec_kernel<V>, dim3(p.num_tokens), dim3(threads), 0, s, pdl,
      reinterpret_cast<const detail::bf16x8*>(p.input),
      reinterpret_cast<detail::bf16x8*>(p.residual),
      reinterpret_cast<const detail::bf16x8*>(p.weight), reinterpret_cast<detail::bf16x8*>(p.out),
      nvec, 1.0f / static_cast<float>(p.hidden), p.eps);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rms_norm(const rms_norm_params& p, cudaStream_t s, bool pdl) {
  detail::require(
      p.num_tokens >= 0 && p.hidden > 0 && p.eps >= 0, "rms_norm",
      "need num_tokens >= 0, hidden > 0, eps >= 0; got num_tokens=" + std::to_string(p.num_tokens) +
          " hidden=" + std::to_string(p.hidden) + " eps=" + std::to_string(p.eps));
  if (p.num_tokens == 0) return;
  detail::require(p.input && p.weight && p.out, "rms_norm", "null input, weight or out");
  detail::require(!p.residual || (p.residual != p.input && p.residual != p.out), "rms_norm",
                  "residual must not alias input or out");
  const bool vec = p.hidden % 8 == 0 && p.hidden <= 32768 && detail::aligned16(p.input) &&
                   detail::aligned16(p.weight) && detail::aligned16(p.out) &&
                   (!p.residual || detail::aligned16(p.residual));
  if (vec) {
    const int nvec = p.hidden / 8;
    if (nvec <= 512)
      launch_vec<1>(p, nvec, s, pdl);
    else if (nvec <= 1024)
      launch_vec<2>(p, nvec, s, pdl);
    else if (nvec <= 2048)
      launch_vec<4>(p, nvec, s, pdl);
    else
      launch_vec<8>(p, nvec, s, pdl);
    return;
  }
  const int threads = p.hidden >= 1024 ? 512 : (p.hidden + 31) / 32 * 32;
  launch_kernel(rms_norm_scalar_kernel, dim3(p.num_tokens), dim3(threads), 0, s, pdl,
      reinterpret_cast<const __nv_bfloat16*>(p.input), reinterpret_cast<__nv_bfloat16*>(p.residual),
      reinterpret_cast<const __nv_bfloat16*>(p.weight), reinterpret_cast<__nv_bfloat16*>(p.out),
      p.hidden, p.eps);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
