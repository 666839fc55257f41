// Scalar intensity kernels (FFMA, HFMA2) and the launcher of every intensity kernel (see
// intensity.hpp; the arithmetic is specified in intensity_plan.hpp).
//
// The load side is the read kernel's (memory.cu): 16-byte streaming loads, 4 independent per
// thread, 8 blocks of 256 threads per SM, a block's 4 loads covering one contiguous 16 KiB chunk.
// At fma_per_vector = 2 (fp32 1/4 FLOP/byte) a vector costs 2 FFMAs, fewer instructions than the
// read kernel's XOR fold, so it is bound by DRAM alone. The compute side: 8 independent chains per
// thread (p[u], q[u], or c[0..7] sharing an operand pair) x 64 warps per SM, each loop unrolled to
// 128 FMAs per trip so that its counter, compare and branch take under 3% of the issue slots (the
// shared form unrolled 4 x 8 = 32 FMAs per trip ran at 32 / 35 of the FFMA rate: 60.8 of 66.9
// TFLOP/s on an H100). Napkin: 60 TFLOP/s of FFMA at 2 GiB and 4096 FLOP/byte
// would take 150 s, so the sweep reads a prefix for compute-bound points (intensity_sweep.cpp).
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "intensity.hpp"
#include "scalar_fma.cuh"

namespace ridgeline::cuda {
namespace {

using detail::from_bits;
using detail::scalar_traits;

constexpr int k_unroll = 16;
constexpr int k_shared_chains = 8;

template <intensity_kernel K>
__global__ void __launch_bounds__(k_scalar_threads)
    scalar_kernel(const int4* __restrict__ src, std::uint64_t n_chunks,
                  std::uint32_t fma_per_vector, float* __restrict__ out) {
  using tr = scalar_traits<K>;
  using T = typename tr::type;
  constexpr int U = k_scalar_loads;
  T p[U], q[U], c8[k_shared_chains];
#pragma unroll
  for (int u = 0; u < U; ++u) p[u] = q[u] = tr::zero();
#pragma unroll
  for (int k = 0; k < k_shared_chains; ++k) c8[k] = tr::zero();
  const bool shared = fma_per_vector % 16 == 0;  // same for every thread: no divergence
  const std::uint32_t reps = fma_per_vector / 16;
  const std::uint32_t pairs = fma_per_vector / 2;
  for (std::uint64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    const int4* base = src + c * (k_scalar_threads * U) + threadIdx.x;
    int4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = __ldcs(base + u * k_scalar_threads);
    T w0[U], w1[U], w2[U], w3[U];
    if (fma_per_vector == 1) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const auto x = static_cast<std::uint32_t>(v[u].x), y = static_cast<std::uint32_t>(v[u].y);
        const auto z = static_cast<std::uint32_t>(v[u].z), w = static_cast<std::uint32_t>(v[u].w);
        p[u] = tr::fma(p[u], from_bits<T>(x ^ (z & tr::mantissa)),
                       from_bits<T>(y ^ (w & tr::mantissa)));
      }
      continue;
    }
    if (shared) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          const T a = from_bits<T>(static_cast<std::uint32_t>(pair ? v[u].z : v[u].x));
          const T b = from_bits<T>(static_cast<std::uint32_t>(pair ? v[u].w : v[u].y));
#pragma unroll 16
          for (std::uint32_t r = 0; r < reps; ++r) {
#pragma unroll
            for (int k = 0; k < k_shared_chains; ++k) c8[k] = tr::fma(c8[k], a, b);
          }
        }
      }
      continue;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      w0[u] = from_bits<T>(static_cast<std::uint32_t>(v[u].x));
      w1[u] = from_bits<T>(static_cast<std::uint32_t>(v[u].y));
      w2[u] = from_bits<T>(static_cast<std::uint32_t>(v[u].z));
      w3[u] = from_bits<T>(static_cast<std::uint32_t>(v[u].w));
    }
    std::uint32_t i = 0;
    for (; i + k_unroll <= pairs; i += k_unroll) {
#pragma unroll
      for (int j = 0; j < k_unroll; ++j) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          p[u] = tr::fma(p[u], w0[u], w1[u]);
          q[u] = tr::fma(q[u], w2[u], w3[u]);
        }
      }
    }
    for (; i < pairs; ++i) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        p[u] = tr::fma(p[u], w0[u], w1[u]);
        q[u] = tr::fma(q[u], w2[u], w3[u]);
      }
    }
  }
  float s = 0.0f;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    s = tr::add_to(s, p[u]);
    s = tr::add_to(s, q[u]);
  }
#pragma unroll
  for (int k = 0; k < k_shared_chains; ++k) s = tr::add_to(s, c8[k]);
  out[blockIdx.x * k_scalar_threads + threadIdx.x] = s;
}

template <intensity_kernel K>
void launch_scalar(const intensity_plan& p, const void* src, float* out, cudaStream_t s) {
  scalar_kernel<K><<<p.grid, k_scalar_threads, 0, s>>>(static_cast<const int4*>(src), chunks(p),
                                                       p.fma_per_vector, out);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

int compute_capability(int* minor) {
  int device = 0, major = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, device));
  return major;
}

}  // namespace

namespace detail {

void require_sm90(const char* what) {
  int minor = 0;
  const int major = compute_capability(&minor);
  if (major != 9 || minor != 0) {
    throw std::invalid_argument(std::string(what) + " needs compute capability 9.0 (built for " +
                                "sm_90a only), the device has " + std::to_string(major) + "." +
                                std::to_string(minor));
  }
}

}  // namespace detail

void launch_intensity(const intensity_plan& p, const void* src, const void* a, const void* b,
                      float* out, std::uint32_t* fold, cudaStream_t s) {
  validate(p);
  if (!src || !out) throw std::invalid_argument("launch_intensity: null source or output");
  if (reinterpret_cast<std::uintptr_t>(src) % 16 != 0) {
    throw std::invalid_argument("launch_intensity: the source must be 16-byte aligned");
  }
  if (is_mma(p.kernel)) {
    if (!a || !b || !fold) throw std::invalid_argument("launch_intensity: null MMA operand");
    if (reinterpret_cast<std::uintptr_t>(a) % 16 != 0 ||
        reinterpret_cast<std::uintptr_t>(b) % 16 != 0) {
      throw std::invalid_argument("launch_intensity: MMA operands must be 16-byte aligned");
    }
    detail::require_sm90(std::string(name(p.kernel)).c_str());
    detail::launch_intensity_mma(p, src, a, b, out, fold, s);
    return;
  }
  switch (p.kernel) {
    case intensity_kernel::ffma_fp32:
      return launch_scalar<intensity_kernel::ffma_fp32>(p, src, out, s);
    case intensity_kernel::hfma2_bf16:
      return launch_scalar<intensity_kernel::hfma2_bf16>(p, src, out, s);
    case intensity_kernel::hfma2_fp16:
      return launch_scalar<intensity_kernel::hfma2_fp16>(p, src, out, s);
    default:
      break;
  }
}

int intensity_blocks_per_sm(intensity_kernel k, int mma_n) {
  if (is_mma(k)) {
    detail::require_sm90(std::string(name(k)).c_str());
    return detail::intensity_mma_blocks_per_sm(k, mma_n);
  }
  int blocks = 0;
  auto query = [&](auto kernel) {
    RIDGELINE_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, k_scalar_threads, 0));
  };
  switch (k) {
    case intensity_kernel::ffma_fp32:
      query(scalar_kernel<intensity_kernel::ffma_fp32>);
      break;
    case intensity_kernel::hfma2_bf16:
      query(scalar_kernel<intensity_kernel::hfma2_bf16>);
      break;
    case intensity_kernel::hfma2_fp16:
      query(scalar_kernel<intensity_kernel::hfma2_fp16>);
      break;
    default:
      break;
  }
  return std::max(1, std::min(blocks, 8));
}

}  // namespace ridgeline::cuda
