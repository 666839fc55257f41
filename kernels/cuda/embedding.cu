// Embedding lookup (see ops.hpp): out[t] = table[ids[t]].
//
// A pure gather: a grid-stride loop over (token, 16-byte vector) pairs when hidden is a multiple
// of 8 and both pointers are 16-byte aligned, else over single elements. Napkin: 64 tokens x 4096
// x 2 B = 512 KiB read + 512 KiB written, ~0.35 us at 3 TB/s; launch overhead dominates.
#include <algorithm>
#include <cstddef>
#include <string>

#include "check.hpp"
#include "device_utils.cuh"
#include "ops.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

constexpr int k_threads = 256;

template <class V>
__global__ void embedding_kernel(const std::int32_t* __restrict__ ids, const V* __restrict__ table,
                                 V* __restrict__ out, std::size_t per_row, std::size_t total) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const std::size_t t = i / per_row, j = i % per_row;
    out[i] = table[static_cast<std::size_t>(ids[t]) * per_row + j];
  }
}

template <class V>
void launch(const embedding_params& p, std::size_t per_row, cudaStream_t s, bool pdl) {
  const std::size_t total = static_cast<std::size_t>(p.num_tokens) * per_row;
  const int grid =
      static_cast<int>(std::min<std::size_t>((total + k_threads - 1) / k_threads, 8192));
  launch_kernel(embedding_kernel<V>, dim3(grid), dim3(k_threads), 0, s, pdl, p.ids, reinterpret_cast<const V*>(p.table),
                                                 reinterpret_cast<V*>(p.out), per_row, total);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

__global__ void scatter_tokens_kernel(scatter_tokens_params p) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.count; i += gridDim.x * blockDim.x) {
    p.ids[p.rows[i]] = p.samples[p.from[i]];
  }
}

}  // namespace

void scatter_tokens(const scatter_tokens_params& p, cudaStream_t s) {
  using detail::require;
  require(p.count >= 0, "scatter_tokens", "negative count " + std::to_string(p.count));
  if (p.count == 0) return;
  require(p.samples && p.from && p.rows && p.ids, "scatter_tokens", "null samples, from, rows or ids");
  const int threads = 128;
  const int grid = std::min((p.count + threads - 1) / threads, 1024);
  scatter_tokens_kernel<<<grid, threads, 0, s>>>(p);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void embedding(const embedding_params& p, cudaStream_t s, bool pdl) {
  using detail::require;
  require(p.num_tokens >= 0 && p.hidden > 0 && p.vocab > 0, "embedding",
          "need num_tokens >= 0, hidden > 0, vocab > 0; got num_tokens=" +
              std::to_string(p.num_tokens) + " hidden=" + std::to_string(p.hidden) +
              " vocab=" + std::to_string(p.vocab));
  if (p.num_tokens == 0) return;
  require(p.ids && p.table && p.out, "embedding", "null ids, table or out");
  if (p.hidden % 8 == 0 && detail::aligned16(p.table) && detail::aligned16(p.out)) {
    launch<detail::bf16x8>(p, static_cast<std::size_t>(p.hidden / 8), s, pdl);
  } else {
    launch<bf16_bits>(p, static_cast<std::size_t>(p.hidden), s, pdl);
  }
}

}  // namespace ridgeline::cuda
