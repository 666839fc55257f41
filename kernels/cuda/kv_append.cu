// kv_append on the GPU (see attention.hpp): new K and V rows into their slots of the paged cache
//   data[block][0 = K, 1 = V][kv_head][slot][head_dim]   (bf16)
#include <cstdint>
#include <string>

#include "attention.hpp"
#include "attention_internal.hpp"
#include "check.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

[[noreturn]] void invalid(const std::string& what) { detail::attention_invalid(what); }
using detail::aligned16;
using detail::log2_int;

// kv_append: one thread per 16-byte chunk (8 dims) of (token, kv head); it copies the K and the V
// chunk. Napkin: a decode step of 64 tokens x 32 heads x 128 dims moves 2 x 1 MB (read + write),
// a few microseconds; launch-bound.

__global__ void kv_append_kernel(const int4* __restrict__ k, const int4* __restrict__ v,
                                 const std::int32_t* __restrict__ slot_mapping,
                                 std::int64_t total_chunks, int chunks_per_token,
                                 int chunks_per_row, int heads, int log2_bs,
                                 int4* __restrict__ cache) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= total_chunks) return;
  const std::int64_t t = i / chunks_per_token;
  const int rem = static_cast<int>(i - t * chunks_per_token);
  const int h = rem / chunks_per_row, c = rem - h * chunks_per_row;
  const std::int32_t slot = slot_mapping[t];
  if (slot < 0) return;
  const int bs = 1 << log2_bs;
  const std::int64_t block = slot >> log2_bs;
  const std::int64_t head_chunks = std::int64_t{bs} * chunks_per_row;  // one head's K in a block
  const std::int64_t dst =
      (block * 2 * heads + h) * head_chunks + std::int64_t{slot & (bs - 1)} * chunks_per_row + c;
  cache[dst] = k[i];
  cache[dst + heads * head_chunks] = v[i];
}

}  // namespace

void kv_append(const kv_append_params& p, cudaStream_t stream) {
  detail::validate_kv_cache(p.kv, "kv_append");
  if (p.num_tokens < 0) invalid("kv_append: num_tokens " + std::to_string(p.num_tokens));
  if (p.num_tokens == 0) return;
  if (!p.k || !p.v || !p.slot_mapping) invalid("kv_append: null k, v or slot_mapping");
  if (!aligned16(p.k) || !aligned16(p.v)) invalid("kv_append: k and v must be 16-byte aligned");
  const int chunks_per_row = p.kv.head_dim / 8;
  const int chunks_per_token = p.kv.num_kv_heads * chunks_per_row;
  const std::int64_t total = std::int64_t{p.num_tokens} * chunks_per_token;
  constexpr int threads = 256;
  const auto blocks = static_cast<unsigned>((total + threads - 1) / threads);
  kv_append_kernel<<<blocks, threads, 0, stream>>>(
      reinterpret_cast<const int4*>(p.k), reinterpret_cast<const int4*>(p.v), p.slot_mapping, total,
      chunks_per_token, chunks_per_row, p.kv.num_kv_heads, log2_int(p.kv.block_size),
      reinterpret_cast<int4*>(p.kv.data));
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
