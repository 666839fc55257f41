// Seeded uniform fill (see random.hpp): a counter-based hash per element, so any grid gives the
// same values for the same seed.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <stdexcept>

#include "check.hpp"
#include "random.hpp"

namespace ridgeline::cuda {
namespace {

__device__ __forceinline__ std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <class T>
__global__ void fill_kernel(T* dst, std::size_t count, std::uint64_t seed, float scale,
                            float offset) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const std::uint64_t r = mix(seed * 0x9e3779b97f4a7c15ULL + i);
    const float u =
        offset + scale * (static_cast<float>(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f);
    if constexpr (std::is_same_v<T, float>) dst[i] = u;
    else if constexpr (std::is_same_v<T, __half>) dst[i] = __float2half_rn(u);
    else if constexpr (std::is_same_v<T, __nv_bfloat16>) dst[i] = __float2bfloat16_rn(u);
    else if constexpr (std::is_same_v<T, __nv_fp8_e4m3>) dst[i] = __nv_fp8_e4m3(u);
    else dst[i] = static_cast<std::int8_t>(static_cast<int>(r % 255) - 127);
  }
}

template <class T>
void launch(void* dst, std::size_t count, std::uint64_t seed, float scale, float offset,
            cudaStream_t s) {
  const int grid = static_cast<int>(std::min<std::size_t>((count + 255) / 256, 4096));
  fill_kernel<T><<<grid, 256, 0, s>>>(static_cast<T*>(dst), count, seed, scale, offset);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void fill_uniform(void* dst, dtype t, std::size_t count, std::uint64_t seed, float scale,
                  cudaStream_t s, float offset) {
  if (count == 0) return;
  if (!dst) throw std::invalid_argument("fill_uniform: null destination");
  switch (t) {
    case dtype::fp32:
    case dtype::tf32: launch<float>(dst, count, seed, scale, offset, s); break;
    case dtype::fp16: launch<__half>(dst, count, seed, scale, offset, s); break;
    case dtype::bf16: launch<__nv_bfloat16>(dst, count, seed, scale, offset, s); break;
    case dtype::fp8_e4m3: launch<__nv_fp8_e4m3>(dst, count, seed, scale, offset, s); break;
    case dtype::int8: launch<std::int8_t>(dst, count, seed, scale, offset, s); break;
  }
}

}  // namespace ridgeline::cuda
