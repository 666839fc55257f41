// Bandwidth kernels (see memory.hpp).
//
// Each thread keeps 4 independent 16-byte accesses in flight; the default grid is 8 blocks of 256
// threads per SM (full occupancy on Hopper), so 132 SMs hold ~17 MB in flight, far above the
// ~2 MB that 3.3 TB/s x ~600 ns latency needs. Napkin: 4 GiB read at 3.1 TB/s takes ~1.4 ms.
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "memory.hpp"

namespace ridgeline::cuda {
namespace {

constexpr int k_threads = 256;
constexpr int k_unroll = 4;

template <cache_hint H>
__device__ __forceinline__ int4 load(const int4* p) {
  if constexpr (H == cache_hint::streaming) return __ldcs(p);
  else return __ldcg(p);
}

template <cache_hint H>
__device__ __forceinline__ void store(int4* p, int4 v) {
  if constexpr (H == cache_hint::streaming) __stcs(p, v);
  else __stcg(p, v);
}

__device__ __forceinline__ std::uint32_t fold(int4 v) {
  return static_cast<std::uint32_t>(v.x ^ v.y ^ v.z ^ v.w);
}

// Must match cpu::write_pattern_word.
__device__ __forceinline__ std::uint32_t pattern(std::uint64_t word, std::uint32_t seed) {
  return (static_cast<std::uint32_t>(word) * 0x9e3779b1u + seed) | 1u;
}

// Virtual index v runs over passes * n_vec vectors; the buffer index is v & mask (mask is all ones
// when passes == 1).
template <cache_hint H>
__global__ void read_kernel(const int4* __restrict__ src, std::uint64_t total, std::uint64_t mask,
                            const std::uint32_t* __restrict__ tail, int tail_words,
                            std::uint32_t* __restrict__ sink) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  std::uint64_t v = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  std::uint32_t acc = 0;
  for (; v + (k_unroll - 1) * stride < total; v += k_unroll * stride) {
    int4 x[k_unroll];
#pragma unroll
    for (int u = 0; u < k_unroll; ++u) x[u] = load<H>(src + ((v + u * stride) & mask));
#pragma unroll
    for (int u = 0; u < k_unroll; ++u) acc ^= fold(x[u]);
  }
  for (; v < total; v += stride) acc ^= fold(load<H>(src + (v & mask)));
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_words) acc ^= tail[threadIdx.x];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0 && acc != 0) atomicXor(sink, acc);
}

template <cache_hint H>
__global__ void write_kernel(int4* __restrict__ dst, std::uint64_t total, std::uint64_t mask,
                             std::uint32_t* __restrict__ tail, int tail_words,
                             std::uint64_t tail_first_word, std::uint32_t seed) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  std::uint64_t v = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; v < total; v += stride) {
    const std::uint64_t i = v & mask;
    const std::uint64_t w = 4 * i;
    int4 x;
    x.x = static_cast<int>(pattern(w, seed));
    x.y = static_cast<int>(pattern(w + 1, seed));
    x.z = static_cast<int>(pattern(w + 2, seed));
    x.w = static_cast<int>(pattern(w + 3, seed));
    store<H>(dst + i, x);
  }
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_words) {
    tail[threadIdx.x] = pattern(tail_first_word + threadIdx.x, seed);
  }
}

template <cache_hint H>
__global__ void copy_kernel(int4* __restrict__ dst, const int4* __restrict__ src,
                            std::uint64_t total, std::uint64_t mask, unsigned char* __restrict__ dst_tail,
                            const unsigned char* __restrict__ src_tail, int tail_bytes) {
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  std::uint64_t v = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; v + (k_unroll - 1) * stride < total; v += k_unroll * stride) {
    int4 x[k_unroll];
#pragma unroll
    for (int u = 0; u < k_unroll; ++u) x[u] = load<H>(src + ((v + u * stride) & mask));
#pragma unroll
    for (int u = 0; u < k_unroll; ++u) store<H>(dst + ((v + u * stride) & mask), x[u]);
  }
  for (; v < total; v += stride) store<H>(dst + (v & mask), load<H>(src + (v & mask)));
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_bytes) {
    dst_tail[threadIdx.x] = src_tail[threadIdx.x];
  }
}

struct plan {
  std::uint64_t n_vec = 0;  // whole 16-byte vectors
  std::uint64_t total = 0;  // vectors moved by the launch
  std::uint64_t mask = ~std::uint64_t{0};
  int grid = 0;
};

plan make_plan(const bandwidth_launch& l, const void* a, const void* b, const char* op) {
  auto fail = [op](const std::string& why) {
    throw std::invalid_argument(std::string(op) + ": " + why);
  };
  if (l.bytes == 0) fail("size must be positive");
  if (l.passes == 0) fail("passes must be positive");
  if ((reinterpret_cast<std::uintptr_t>(a) | reinterpret_cast<std::uintptr_t>(b)) % 16 != 0) {
    fail("buffers must be 16-byte aligned");
  }
  plan p;
  p.n_vec = l.bytes / 16;
  if (l.passes > 1) {
    if (l.bytes % 16 != 0 || (p.n_vec & (p.n_vec - 1)) != 0) {
      fail("passes > 1 needs a power-of-two number of 16-byte vectors, got " +
           std::to_string(l.bytes) + " bytes");
    }
    p.mask = p.n_vec - 1;
  }
  p.total = p.n_vec * l.passes;
  int device = 0, sms = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const std::uint64_t full = static_cast<std::uint64_t>(l.grid > 0 ? l.grid : 8 * sms);
  const std::uint64_t needed = (p.total + k_threads - 1) / k_threads;
  p.grid = static_cast<int>(std::max<std::uint64_t>(1, std::min(full, needed)));
  return p;
}

}  // namespace

void launch_read(const void* src, std::uint32_t* sink, const bandwidth_launch& l, cudaStream_t s) {
  if (l.bytes % 4 != 0) throw std::invalid_argument("read: size must be a multiple of 4 bytes");
  const plan p = make_plan(l, src, nullptr, "read");
  const auto* base = static_cast<const unsigned char*>(src);
  const int tail_words = static_cast<int>((l.bytes % 16) / 4);
  // The tail is read once per launch; with passes > 1 there is no tail (checked above).
  RIDGELINE_CUDA_CHECK(cudaMemsetAsync(sink, 0, sizeof(std::uint32_t), s));
  const auto* tail = reinterpret_cast<const std::uint32_t*>(base + p.n_vec * 16);
  if (l.hint == cache_hint::streaming) {
    read_kernel<cache_hint::streaming><<<p.grid, k_threads, 0, s>>>(
        static_cast<const int4*>(src), p.total, p.mask, tail, tail_words, sink);
  } else {
    read_kernel<cache_hint::l2><<<p.grid, k_threads, 0, s>>>(static_cast<const int4*>(src),
                                                             p.total, p.mask, tail, tail_words, sink);
  }
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void launch_write(void* dst, std::uint32_t seed, const bandwidth_launch& l, cudaStream_t s) {
  if (l.bytes % 4 != 0) throw std::invalid_argument("write: size must be a multiple of 4 bytes");
  const plan p = make_plan(l, dst, nullptr, "write");
  auto* tail = reinterpret_cast<std::uint32_t*>(static_cast<unsigned char*>(dst) + p.n_vec * 16);
  const int tail_words = static_cast<int>((l.bytes % 16) / 4);
  if (l.hint == cache_hint::streaming) {
    write_kernel<cache_hint::streaming><<<p.grid, k_threads, 0, s>>>(
        static_cast<int4*>(dst), p.total, p.mask, tail, tail_words, 4 * p.n_vec, seed);
  } else {
    write_kernel<cache_hint::l2><<<p.grid, k_threads, 0, s>>>(
        static_cast<int4*>(dst), p.total, p.mask, tail, tail_words, 4 * p.n_vec, seed);
  }
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void launch_copy(void* dst, const void* src, const bandwidth_launch& l, cudaStream_t s) {
  const plan p = make_plan(l, dst, src, "copy");
  const int tail_bytes = static_cast<int>(l.bytes % 16);
  auto* dt = static_cast<unsigned char*>(dst) + p.n_vec * 16;
  const auto* st = static_cast<const unsigned char*>(src) + p.n_vec * 16;
  if (l.hint == cache_hint::streaming) {
    copy_kernel<cache_hint::streaming><<<p.grid, k_threads, 0, s>>>(
        static_cast<int4*>(dst), static_cast<const int4*>(src), p.total, p.mask, dt, st, tail_bytes);
  } else {
    copy_kernel<cache_hint::l2><<<p.grid, k_threads, 0, s>>>(
        static_cast<int4*>(dst), static_cast<const int4*>(src), p.total, p.mask, dt, st, tail_bytes);
  }
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
