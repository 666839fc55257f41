// Device helpers shared by the decoder-op kernels (kernels/cuda/{embedding,rms_norm,rope,swiglu,
// sampling}.cu): 16-byte bf16 vectors, block reductions and launcher argument checks.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline::cuda::detail {

// Eight bf16 in one 16-byte access.
struct alignas(16) bf16x8 {
  __nv_bfloat16 v[8];
};

inline bool aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0;
}

// SwiGLU of one element (swiglu.cu, and the fused gate_up GEMV in linear.cu): bf16(silu(g) * u),
// silu(g) = g / (1 + exp(-g)) in fp32 with the accurate expf.
__device__ __forceinline__ __nv_bfloat16 swiglu_one(__nv_bfloat16 g_bf, __nv_bfloat16 u_bf) {
  const float g = __bfloat162float(g_bf), u = __bfloat162float(u_bf);
  const float silu = g / (1.0f + expf(-g));  // expf(+large) = inf gives -0: silu's limit
  return __float2bfloat16_rn(silu * u);
}

// RMSNorm arithmetic, shared by rms_norm.cu and the GEMV with the norm in its prologue (linear.cu,
// gemv_norm) so that both round and contract alike: the fused GEMV's input is bitwise rms_norm's.
// The residual add, rounded to bf16 (the new residual).
__device__ __forceinline__ __nv_bfloat16 rms_residual_add(__nv_bfloat16 residual,
                                                          __nv_bfloat16 input) {
  return __float2bfloat16_rn(__bfloat162float(residual) + __bfloat162float(input));
}
// A thread's running sum of squares over 8 more elements, in order, one fused multiply-add each.
__device__ __forceinline__ float rms_sum_squares(const float (&r)[8], float acc) {
#pragma unroll
  for (int k = 0; k < 8; ++k) acc = fmaf(r[k], r[k], acc);
  return acc;
}
// 1 / rms from the block's sum of squares: rsqrt(sum * (1 / hidden) + eps).
__device__ __forceinline__ float rms_inv(float sum_sq, float inv_hidden, float eps) {
  return rsqrtf(fmaf(sum_sq, inv_hidden, eps));
}
// One output element: bf16(r * inv_rms * weight).
__device__ __forceinline__ __nv_bfloat16 rms_scale(float r, float inv_rms, __nv_bfloat16 w) {
  return __float2bfloat16_rn(r * inv_rms * __bfloat162float(w));
}

// The vector path of rms_norm.cu: one block per token row of nvec = hidden / 8 vectors, each
// thread `per_thread` vectors (thread i: vectors i, i + threads, ...). Its fp32 sum of squares is
// reduced in that fixed order (per thread, then warp shuffles, then warps in order), which
// gemv_norm reproduces.
struct rms_norm_vec_shape {
  int per_thread = 1, threads = 32;
};
inline rms_norm_vec_shape rms_norm_vec_shape_for(int nvec) {
  rms_norm_vec_shape v;
  v.per_thread = nvec <= 512 ? 1 : nvec <= 1024 ? 2 : nvec <= 2048 ? 4 : 8;
  v.threads = ((nvec + v.per_thread - 1) / v.per_thread + 31) / 32 * 32;
  return v;
}
// Whether rms_norm takes its vector path for p (else its scalar two-pass path).
inline bool rms_norm_vec_path(const rms_norm_params& p) {
  return p.hidden % 8 == 0 && p.hidden <= 32768 && aligned16(p.input) && aligned16(p.weight) &&
         aligned16(p.out) && (!p.residual || aligned16(p.residual)) &&
         (!p.residual_out || aligned16(p.residual_out));
}

// Throws std::invalid_argument("<op>: <what>") when cond is false.
inline void require(bool cond, const char* op, const std::string& what) {
  if (!cond) throw std::invalid_argument(std::string(op) + ": " + what);
}

// Sum over the block; every thread gets the result. scratch: >= 32 floats of shared memory, and
// the block must not touch it between calls without a __syncthreads (this function ends with one).
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warps = (blockDim.x + 31) / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}

}  // namespace ridgeline::cuda::detail
