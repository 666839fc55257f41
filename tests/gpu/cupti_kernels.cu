// Known-count kernels for the CUPTI tests (see cupti_kernels.hpp for the counts).
#include <cuda_fp16.h>

#include "cuda/check.hpp"
#include "cupti_kernels.hpp"

namespace ridgeline::test {
namespace {

__global__ void ffma_chain_kernel(float* out, float a, float b, int iters) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float x0 = __int2float_rn(i), x1 = __int2float_rn(i + 1);
  float x2 = __int2float_rn(i + 2), x3 = __int2float_rn(i + 3);
  for (int k = 0; k < iters; ++k) {
    x0 = __fmaf_rn(x0, a, b);
    x1 = __fmaf_rn(x1, a, b);
    x2 = __fmaf_rn(x2, a, b);
    x3 = __fmaf_rn(x3, a, b);
  }
  out[i] = __fadd_rn(__fadd_rn(x0, x1), __fadd_rn(x2, x3));
}

__global__ void hfma2_chain_kernel(__half2* out, __half2 a, __half2 b, int iters) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  // Seeds from integer bits (no half arithmetic): 0x3c00 is 1.0, low bits vary per thread.
  const unsigned seed = 0x3c003c00u | (static_cast<unsigned>(i) & 0x00ff00ffu);
  __half2 x0 = *reinterpret_cast<const __half2*>(&seed);
  __half2 x1 = x0, x2 = x0, x3 = x0;
  for (int k = 0; k < iters; ++k) {
    x0 = __hfma2(x0, a, b);
    x1 = __hfma2(x1, b, a);
    x2 = __hfma2(x2, a, a);
    x3 = __hfma2(x3, b, b);
  }
  out[i] = __hadd2(__hadd2(x0, x1), __hadd2(x2, x3));
}

__global__ void add_one_kernel(float* data, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] += 1.0f;
}

__global__ void scale_kernel(float* data, float factor, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) data[i] *= factor;
}

}  // namespace

void launch_ffma_chain(float* out, int blocks, int threads, int iters, cudaStream_t s) {
  ffma_chain_kernel<<<blocks, threads, 0, s>>>(out, 0.999f, 0.001f, iters);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void launch_hfma2_chain(void* out, int blocks, int threads, int iters, cudaStream_t s) {
  const __half2 a = __floats2half2_rn(0.5f, 0.25f);
  const __half2 b = __floats2half2_rn(0.125f, 0.0625f);
  hfma2_chain_kernel<<<blocks, threads, 0, s>>>(static_cast<__half2*>(out), a, b, iters);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void launch_add_one(float* data, int n, cudaStream_t s) {
  add_one_kernel<<<(n + 255) / 256, 256, 0, s>>>(data, n);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void launch_scale(float* data, float factor, int n, cudaStream_t s) {
  scale_kernel<<<(n + 255) / 256, 256, 0, s>>>(data, factor, n);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::test
