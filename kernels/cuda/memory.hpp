// Bandwidth kernels: read-only (XOR-folded into a sink so no load is dead), write-only (a
// never-zero pattern, see memory_reference.hpp) and copy, with 16-byte accesses. A launch moves a
// buffer of `bytes` `passes` times; with passes > 1 the vector count must be a power of two
// (working-set sweeps use powers of two) so that threads wrap over the buffer with a mask.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ridgeline::cuda {

// streaming: evict-first (ld/st.cs), for cold HBM numbers; l2: cache in L2 only (ld/st.cg), for
// working-set sweeps that must not hit L1 on repeated passes; normal: default caching.
enum class cache_hint { streaming, l2, normal };

struct bandwidth_launch {
  std::size_t bytes = 0;   // buffer size; read and write need a multiple of 4
  std::size_t passes = 1;  // times the buffer is moved in one launch
  cache_hint hint = cache_hint::streaming;
  int grid = 0;    // blocks of 256 threads; 0 picks 8 per SM
  int unroll = 4;  // independent 16-byte accesses in flight per thread: 4 or 8
  bool chunked = false;  // each block moves contiguous chunks (see memory.cu) vs grid-stride
  // Copy only, Hopper and later: move chunks through shared memory with the bulk copy engine
  // (cp.async.bulk), 4 stages of bulk_chunk_bytes per block; grid 0 picks 2 blocks per SM.
  bool bulk = false;
  int bulk_chunk_bytes = 16384;   // up to 56 KiB
  bool bulk_contiguous = false;   // each block one contiguous run of chunks, else interleaved
};

// Launchers validate (alignment, sizes) and throw std::invalid_argument; all are asynchronous.
// sink: one device uint32, set to the XOR of every word read (passes times).
void launch_read(const void* src, std::uint32_t* sink, const bandwidth_launch& l, cudaStream_t s);
void launch_write(void* dst, std::uint32_t seed, const bandwidth_launch& l, cudaStream_t s);
void launch_copy(void* dst, const void* src, const bandwidth_launch& l, cudaStream_t s);

}  // namespace ridgeline::cuda
