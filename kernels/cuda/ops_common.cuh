// Device helpers shared by the decoder-op kernels (kernels/cuda/{embedding,rms_norm,rope,swiglu,
// sampling}.cu): 16-byte bf16 vectors, block reductions and launcher argument checks.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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
