// FMA of the scalar instruction kinds, shared by the intensity kernels (intensity.cu) and the
// probe's instruction-peak kernels (instruction_peak.cu): per kernel type, the register type, its
// zero, its FMA (FFMA, HFMA2 on bf16x2 / fp16x2) and how a result is summed into an fp32 output
// (x2 types: the low half, then the high half).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "ridgeline/kernels/intensity_plan.hpp"

namespace ridgeline::cuda::detail {

template <class T>
__device__ __forceinline__ T from_bits(std::uint32_t w) {
  T v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

template <intensity_kernel K>
struct scalar_traits;

template <>
struct scalar_traits<intensity_kernel::ffma_fp32> {
  using type = float;
  static constexpr std::uint32_t mantissa = 0x007fffffu;
  static __device__ __forceinline__ float zero() { return 0.0f; }
  static __device__ __forceinline__ float fma(float p, float a, float b) { return fmaf(p, a, b); }
  static __device__ __forceinline__ float add_to(float s, float p) { return s + p; }
};

template <>
struct scalar_traits<intensity_kernel::hfma2_bf16> {
  using type = __nv_bfloat162;
  static constexpr std::uint32_t mantissa = 0x007f007fu;
  static __device__ __forceinline__ type zero() { return __float2bfloat162_rn(0.0f); }
  static __device__ __forceinline__ type fma(type p, type a, type b) { return __hfma2(p, a, b); }
  static __device__ __forceinline__ float add_to(float s, type p) {
    s += __low2float(p);
    return s + __high2float(p);
  }
};

template <>
struct scalar_traits<intensity_kernel::hfma2_fp16> {
  using type = __half2;
  static constexpr std::uint32_t mantissa = 0x03ff03ffu;
  static __device__ __forceinline__ type zero() { return __float2half2_rn(0.0f); }
  static __device__ __forceinline__ type fma(type p, type a, type b) { return __hfma2(p, a, b); }
  static __device__ __forceinline__ float add_to(float s, type p) {
    s += __low2float(p);
    return s + __high2float(p);
  }
};

}  // namespace ridgeline::cuda::detail
