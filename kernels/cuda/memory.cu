// Bandwidth kernels (see memory.hpp).
//
// Each thread keeps 4 or 8 independent 16-byte accesses in flight; the default grid is 8 blocks of
// 256 threads per SM (full occupancy on Hopper), so 132 SMs hold ~17 MB in flight, far above the
// ~2 MB that 3.3 TB/s x ~600 ns latency needs. Napkin: 4 GiB read at 3.1 TB/s takes ~1.4 ms.
#include <stdexcept>
#include <string>
#include <type_traits>

#include "check.hpp"
#include "device_utils.cuh"
#include "memory.hpp"

namespace ridgeline::cuda {
namespace {

constexpr int k_threads = 256;

template <cache_hint H>
__device__ __forceinline__ int4 load(const int4* p) {
  if constexpr (H == cache_hint::streaming) return __ldcs(p);
  else if constexpr (H == cache_hint::l2) return __ldcg(p);
  else return *p;
}

template <cache_hint H>
__device__ __forceinline__ void store(int4* p, int4 v) {
  if constexpr (H == cache_hint::streaming) __stcs(p, v);
  else if constexpr (H == cache_hint::l2) __stcg(p, v);
  else *p = v;
}

__device__ __forceinline__ std::uint32_t fold(int4 v) {
  return static_cast<std::uint32_t>(v.x ^ v.y ^ v.z ^ v.w);
}

// Must match cpu::write_pattern_word.
__device__ __forceinline__ std::uint32_t pattern(std::uint64_t word, std::uint32_t seed) {
  return (static_cast<std::uint32_t>(word) * 0x9e3779b1u + seed) | 1u;
}

// Traversal of the virtual indices [0, total) (passes * n_vec vectors; the buffer index is
// v & mask, all ones when passes == 1), in groups of U independent accesses per thread:
//   grid-stride: access u of a group is U strides of the whole grid apart (far apart in memory);
//   chunked:     a block owns a contiguous chunk of 256 * U vectors per group, so the accesses in
//                flight stay within a few DRAM pages (fewer row switches between reads and writes).
// group(idx[U]) handles a full group; single(idx) the remainder.
template <bool Chunked, int U, class Group, class Single>
__device__ __forceinline__ void traverse(std::uint64_t total, Group&& group, Single&& single) {
  const std::uint64_t threads = blockDim.x;
  if constexpr (Chunked) {
    const std::uint64_t chunk = threads * U;
    std::uint64_t base = blockIdx.x * chunk;
    for (; base + chunk <= total; base += gridDim.x * chunk) {
      std::uint64_t idx[U];
#pragma unroll
      for (int u = 0; u < U; ++u) idx[u] = base + u * threads + threadIdx.x;
      group(idx);
    }
    for (std::uint64_t v = base + threadIdx.x; v < total; v += threads) single(v);
  } else {
    const std::uint64_t stride = gridDim.x * threads;
    std::uint64_t v = blockIdx.x * threads + threadIdx.x;
    for (; v + (U - 1) * stride < total; v += U * stride) {
      std::uint64_t idx[U];
#pragma unroll
      for (int u = 0; u < U; ++u) idx[u] = v + u * stride;
      group(idx);
    }
    for (; v < total; v += stride) single(v);
  }
}

template <cache_hint H, int U, bool Chunked>
__global__ void read_kernel(const int4* __restrict__ src, std::uint64_t total, std::uint64_t mask,
                            const std::uint32_t* __restrict__ tail, int tail_words,
                            std::uint32_t* __restrict__ sink) {
  std::uint32_t acc = 0;
  traverse<Chunked, U>(
      total,
      [&](const std::uint64_t (&idx)[U]) {
        int4 x[U];
#pragma unroll
        for (int u = 0; u < U; ++u) x[u] = load<H>(src + (idx[u] & mask));
#pragma unroll
        for (int u = 0; u < U; ++u) acc ^= fold(x[u]);
      },
      [&](std::uint64_t v) { acc ^= fold(load<H>(src + (v & mask))); });
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_words) acc ^= tail[threadIdx.x];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0 && acc != 0) atomicXor(sink, acc);
}

template <cache_hint H, int U, bool Chunked>
__global__ void write_kernel(int4* __restrict__ dst, std::uint64_t total, std::uint64_t mask,
                             std::uint32_t* __restrict__ tail, int tail_words,
                             std::uint64_t tail_first_word, std::uint32_t seed) {
  auto store_one = [&](std::uint64_t i) {
    const std::uint64_t w = 4 * i;
    int4 x;
    x.x = static_cast<int>(pattern(w, seed));
    x.y = static_cast<int>(pattern(w + 1, seed));
    x.z = static_cast<int>(pattern(w + 2, seed));
    x.w = static_cast<int>(pattern(w + 3, seed));
    store<H>(dst + i, x);
  };
  traverse<Chunked, U>(
      total,
      [&](const std::uint64_t (&idx)[U]) {
#pragma unroll
        for (int u = 0; u < U; ++u) store_one(idx[u] & mask);
      },
      [&](std::uint64_t v) { store_one(v & mask); });
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_words) {
    tail[threadIdx.x] = pattern(tail_first_word + threadIdx.x, seed);
  }
}

template <cache_hint H, int U, bool Chunked>
__global__ void copy_kernel(int4* __restrict__ dst, const int4* __restrict__ src,
                            std::uint64_t total, std::uint64_t mask,
                            unsigned char* __restrict__ dst_tail,
                            const unsigned char* __restrict__ src_tail, int tail_bytes) {
  traverse<Chunked, U>(
      total,
      [&](const std::uint64_t (&idx)[U]) {
        int4 x[U];
#pragma unroll
        for (int u = 0; u < U; ++u) x[u] = load<H>(src + (idx[u] & mask));
#pragma unroll
        for (int u = 0; u < U; ++u) store<H>(dst + (idx[u] & mask), x[u]);
      },
      [&](std::uint64_t v) { store<H>(dst + (v & mask), load<H>(src + (v & mask))); });
  if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) < tail_bytes) {
    dst_tail[threadIdx.x] = src_tail[threadIdx.x];
  }
}


// Copy through shared memory with the bulk copy engine (sm_90+). One thread per block issues
// everything: a 4-stage ring of chunks, each loaded by cp.async.bulk (completing on its mbarrier
// with the byte count) and stored by cp.async.bulk as soon as it lands; a stage is reloaded once
// its store has read it (bulk_group wait). Block b moves chunks b, b + grid, ... The < 16-byte
// tail is copied by threads 1..15 of block 0.
constexpr int k_bulk_stages = 4;

using detail::smem_addr;

__global__ void bulk_copy_kernel(unsigned char* __restrict__ dst,
                                 const unsigned char* __restrict__ src, std::uint64_t bytes16,
                                 std::uint32_t chunk, bool contiguous, int tail_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char ring[];  // [k_bulk_stages * chunk]
  __shared__ __align__(8) std::uint64_t full[k_bulk_stages];
  if (threadIdx.x != 0) {
    if (blockIdx.x == 0 && static_cast<int>(threadIdx.x) <= tail_bytes && threadIdx.x > 0) {
      dst[bytes16 + threadIdx.x - 1] = src[bytes16 + threadIdx.x - 1];
    }
    return;
  }
  for (int s = 0; s < k_bulk_stages; ++s) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&full[s])) : "memory");
  }
  // Make the initialised barriers visible to the async proxy (the copy engine).
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  const std::uint64_t n_chunks = (bytes16 + chunk - 1) / chunk;
  // Interleaved: block b moves chunks b, b + grid, ...; contiguous: one run of chunks per block.
  const std::uint64_t per_block = (n_chunks + gridDim.x - 1) / gridDim.x;
  const std::uint64_t first = contiguous ? blockIdx.x * per_block : blockIdx.x;
  const std::uint64_t step = contiguous ? 1 : gridDim.x;
  const std::uint64_t mine =
      contiguous ? (n_chunks > first ? min(per_block, n_chunks - first) : 0)
                 : (n_chunks > blockIdx.x ? (n_chunks - blockIdx.x + gridDim.x - 1) / gridDim.x : 0);
  auto offset = [&](std::uint64_t j) { return (first + j * step) * std::uint64_t{chunk}; };
  auto size = [&](std::uint64_t j) {
    return static_cast<std::uint32_t>(min(std::uint64_t{chunk}, bytes16 - offset(j)));
  };
  auto load = [&](std::uint64_t j) {
    const int s = static_cast<int>(j % k_bulk_stages);
    const unsigned bar = smem_addr(&full[s]);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(size(j))
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
            smem_addr(ring + s * chunk)),
        "l"(src + offset(j)), "r"(size(j)), "r"(bar)
        : "memory");
  };
  for (std::uint64_t j = 0; j < mine && j < k_bulk_stages; ++j) load(j);
  for (std::uint64_t j = 0; j < mine; ++j) {
    const int s = static_cast<int>(j % k_bulk_stages);
    const unsigned parity = static_cast<unsigned>((j / k_bulk_stages) & 1);
    asm volatile(
        "{\n .reg .pred p;\n wait_%=:\n"
        " mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        " @!p bra wait_%=;\n}" ::"r"(smem_addr(&full[s])),
        "r"(parity)
        : "memory");
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst + offset(j)),
                 "r"(smem_addr(ring + s * chunk)), "r"(size(j))
                 : "memory");
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    // Chunk j - 1's stage is free once its store has read it (at most the newest group pending).
    if (j >= 1 && j - 1 + k_bulk_stages < mine) {
      asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
      load(j - 1 + k_bulk_stages);
    }
  }
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#else
  __trap();  // launch_copy refuses devices below compute capability 9.0
#endif
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
  if (l.unroll != 4 && l.unroll != 8) fail("unroll must be 4 or 8");
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


// Instantiates a kernel for the launch's cache hint, unroll and traversal.
template <template <cache_hint, int, bool> class K, class... Args>
void dispatch(const bandwidth_launch& l, int grid, cudaStream_t s, Args... args) {
  auto go = [&](auto kernel) {
    kernel<<<grid, k_threads, 0, s>>>(args...);
    RIDGELINE_CUDA_CHECK_LAUNCH();
  };
  auto by_hint = [&](auto unroll, auto chunked) {
    constexpr int U = decltype(unroll)::value;
    constexpr bool C = decltype(chunked)::value;
    switch (l.hint) {
      case cache_hint::streaming: return go(K<cache_hint::streaming, U, C>::fn);
      case cache_hint::l2: return go(K<cache_hint::l2, U, C>::fn);
      case cache_hint::normal: return go(K<cache_hint::normal, U, C>::fn);
    }
  };
  using u4 = std::integral_constant<int, 4>;
  using u8 = std::integral_constant<int, 8>;
  if (l.chunked) {
    return l.unroll == 8 ? by_hint(u8{}, std::true_type{}) : by_hint(u4{}, std::true_type{});
  }
  return l.unroll == 8 ? by_hint(u8{}, std::false_type{}) : by_hint(u4{}, std::false_type{});
}

template <cache_hint H, int U, bool C>
struct read_k {
  static constexpr auto fn = read_kernel<H, U, C>;
};
template <cache_hint H, int U, bool C>
struct write_k {
  static constexpr auto fn = write_kernel<H, U, C>;
};
template <cache_hint H, int U, bool C>
struct copy_k {
  static constexpr auto fn = copy_kernel<H, U, C>;
};

}  // namespace

void launch_read(const void* src, std::uint32_t* sink, const bandwidth_launch& l, cudaStream_t s) {
  if (l.bytes % 4 != 0) throw std::invalid_argument("read: size must be a multiple of 4 bytes");
  const plan p = make_plan(l, src, nullptr, "read");
  const auto* base = static_cast<const unsigned char*>(src);
  const int tail_words = static_cast<int>((l.bytes % 16) / 4);
  // The tail is read once per launch; with passes > 1 there is no tail (checked in make_plan).
  RIDGELINE_CUDA_CHECK(cudaMemsetAsync(sink, 0, sizeof(std::uint32_t), s));
  const auto* tail = reinterpret_cast<const std::uint32_t*>(base + p.n_vec * 16);
  dispatch<read_k>(l, p.grid, s, static_cast<const int4*>(src), p.total, p.mask, tail, tail_words,
                   sink);
}

void launch_write(void* dst, std::uint32_t seed, const bandwidth_launch& l, cudaStream_t s) {
  if (l.bytes % 4 != 0) throw std::invalid_argument("write: size must be a multiple of 4 bytes");
  const plan p = make_plan(l, dst, nullptr, "write");
  auto* tail = reinterpret_cast<std::uint32_t*>(static_cast<unsigned char*>(dst) + p.n_vec * 16);
  const int tail_words = static_cast<int>((l.bytes % 16) / 4);
  dispatch<write_k>(l, p.grid, s, static_cast<int4*>(dst), p.total, p.mask, tail, tail_words,
                    std::uint64_t{4 * p.n_vec}, seed);
}

void launch_copy(void* dst, const void* src, const bandwidth_launch& l, cudaStream_t s) {
  const plan p = make_plan(l, dst, src, "copy");
  if (l.bulk) {
    if (l.passes != 1) throw std::invalid_argument("copy: the bulk path moves the buffer once");
    if (l.bulk_chunk_bytes < 16 || l.bulk_chunk_bytes % 16 != 0 || l.bulk_chunk_bytes > (56 << 10)) {
      throw std::invalid_argument("copy: bulk chunk must be a multiple of 16 bytes up to 56 KiB");
    }
    int device = 0, major = 0, sms = 0;
    RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
    RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (major < 9) throw std::invalid_argument("copy: the bulk path needs compute capability 9.0+");
    const auto chunk = static_cast<std::uint32_t>(l.bulk_chunk_bytes);
    const int smem = k_bulk_stages * l.bulk_chunk_bytes;
    RIDGELINE_CUDA_CHECK(
        cudaFuncSetAttribute(bulk_copy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const std::uint64_t bytes16 = l.bytes / 16 * 16;
    const std::uint64_t chunks = (bytes16 + chunk - 1) / chunk;
    const auto grid = static_cast<int>(std::max<std::uint64_t>(
        1, std::min<std::uint64_t>(l.grid > 0 ? l.grid : 2 * sms, chunks)));
    bulk_copy_kernel<<<grid, 32, smem, s>>>(static_cast<unsigned char*>(dst),
                                            static_cast<const unsigned char*>(src), bytes16, chunk,
                                            l.bulk_contiguous, static_cast<int>(l.bytes % 16));
    RIDGELINE_CUDA_CHECK_LAUNCH();
    return;
  }
  const int tail_bytes = static_cast<int>(l.bytes % 16);
  auto* dt = static_cast<unsigned char*>(dst) + p.n_vec * 16;
  const auto* st = static_cast<const unsigned char*>(src) + p.n_vec * 16;
  dispatch<copy_k>(l, p.grid, s, static_cast<int4*>(dst), static_cast<const int4*>(src), p.total,
                   p.mask, dt, st, tail_bytes);
}

}  // namespace ridgeline::cuda
