// Sampling of one token per row of logits (see ops.hpp; the exact algorithm, shared with the CPU
// reference, is in ridgeline/kernels/reference.hpp). One block of 512 threads per row.
//
// Greedy: one pass, each thread keeps the best (logit, id) of its strided elements (16-byte loads
// when the row allows), then a block max. Order and ties in one number: packed = ordered_key(s)
// << 32 | ~id, so "larger packed" is "earlier in (s descending, id ascending)". Napkin: 32000
// fp32 = 128 KB per row; at one SM's share of bandwidth (~25-50 GB/s from DRAM, more from L2)
// that is a few microseconds, and rows run on separate SMs.
//
// Non-greedy: no sort. Every cut (top-k count, top-p mass, the draw's mass) is "the first element
// in order whose inclusive prefix measure reaches an integer target", found by a radix search
// over the 64-bit packed value: 8 passes of 8 bits, each pass a 256-bin histogram of the
// measure (a count, or the integer weight of reference.hpp step 4) of the elements matching the
// digits fixed so far. Weights are exact integers, so shared-memory atomics give the same sums in
// any order and the result matches the CPU bit for bit. Each pass re-reads the row (from L2) and
// recomputes the penalized, tempered score; exp (double) only for elements still in the running
// and within 40 nats of the maximum. Up to 1 + 8 (top-k) + 1 + 8 (top-p) + 8 (draw) passes over
// the row. Measured in a serving run on an H100 at vocab 128256 (docs/serving.md), a plain
// temperature draw with per-element atomics (runs of equal digits per thread) cost 1.1-1.35 ms a
// step whatever the batch: the first passes have a handful of distinct digits, and random signs
// break the runs, so the atomics queued on a few words. The histograms are now warp-aggregated
// into per-warp-pair rows (below).
//
// The penalty set is a bitmap of the vocabulary in shared memory (128 KiB at the 2^20 maximum).
//
// Log-probabilities (top_logprobs > 0 only; nothing of this runs otherwise): one pass for the
// log-sum-exp of the raw logits, one per top slot (the next largest below the last), and the
// sampled token's value from the same log-sum-exp: about top_logprobs + 2 reads of the row.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "check.hpp"
#include "device_utils.cuh"
#include "ops.hpp"
#include "ops_common.cuh"

namespace ridgeline::cuda {
namespace {

using u64 = unsigned long long;
constexpr int k_threads = 512;

// Must match cpu::sampling_uniform.
__device__ __forceinline__ u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
__device__ double uniform(u64 seed, u64 step) {
  const u64 h = mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (step * 0xd1b54a32d192ed03ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// Must match cpu::sampling_weight: round_half_even(exp(s - s_max) * 2^42); below -40 nats the
// product is < 2e-5 and rounds to 0 either way, so exp is skipped. The maximum itself weighs
// exactly 2^42.
__device__ __forceinline__ u64 weight(float s, float s_max) {
  if (s == s_max) return 1ULL << 42;  // also when the maximum is -inf
  const double d = static_cast<double>(s) - static_cast<double>(s_max);
  if (!(d >= -40.0)) return 0;
  return __double2ull_rn(exp(d) * 4398046511104.0);
}

// Monotone map of floats (not NaN) to unsigned; -0 and +0 map alike.
__device__ __forceinline__ std::uint32_t ordered_key(float s) {
  if (s == 0.0f) s = 0.0f;
  const std::uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(std::uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ u64 pack(std::uint32_t key, int id) {
  return (static_cast<u64>(key) << 32) |
         static_cast<std::uint32_t>(~static_cast<std::uint32_t>(id));
}
__device__ __forceinline__ int unpack_id(u64 p) {
  return static_cast<int>(~static_cast<std::uint32_t>(p & 0xffffffffu));
}

__device__ u64 block_max(u64 v, u64* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const u64 other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  u64 best = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w)
    best = scratch[w] > best ? scratch[w] : best;
  __syncthreads();
  return best;
}

// Best packed raw logit of the row among packed values < bound (all when bound = ~0).
__device__ u64 raw_max_below(const float* logits, int vocab, bool vec4, u64 bound, u64* scratch) {
  u64 best = 0;
  auto take = [&](float x, int i) {
    const u64 p = pack(ordered_key(x), i);
    if (p < bound && p > best) best = p;
  };
  int tail = 0;
  if (vec4) {
    const int n4 = vocab / 4;
    const auto* v = reinterpret_cast<const float4*>(logits);
#pragma unroll 4
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
      const float4 x = v[i];
      take(x.x, 4 * i);
      take(x.y, 4 * i + 1);
      take(x.z, 4 * i + 2);
      take(x.w, 4 * i + 3);
    }
    tail = n4 * 4;
  }
  for (int i = tail + threadIdx.x; i < vocab; i += blockDim.x) take(logits[i], i);
  return block_max(best, scratch);
}

struct row_scores {
  const float* logits;
  const std::uint32_t* penalized;  // shared bitmap, or null
  float penalty, temperature;
  // Step 1 and 2 of the definition, operation for operation as the CPU does them.
  __device__ __forceinline__ float operator()(int i) const {
    float z = logits[i];
    if (penalized && ((penalized[i >> 5] >> (i & 31)) & 1u))
      z = z > 0.0f ? z / penalty : z * penalty;
    return z / temperature;
  }
};

struct search_shared {
  u64 part[8][256];  // per pair of warps: a pass's partial histograms
  u64 hist[256];
  u64 scratch[32];
  u64 prefix, above, inclusive;
};

// The first element in order whose inclusive prefix measure reaches target (1 <= target <= total
// measure); returns its packed value and the inclusive measure in *inclusive.
template <bool Weighted>
__device__ u64 search(const row_scores& score, int vocab, float s_max, u64 target,
                      search_shared& sh, u64* inclusive) {
  u64 prefix = 0, above = 0;
  const unsigned lane = threadIdx.x & 31u;
  u64* const part = sh.part[(threadIdx.x >> 5) & 7];  // warps w and w + 8 share a row
  for (int pass = 0; pass < 8; ++pass) {
    const int shift = 56 - 8 * pass;
    for (int b = threadIdx.x; b < 8 * 256; b += blockDim.x) sh.part[b >> 8][b & 255] = 0;
    __syncthreads();
    // The first passes see few distinct digits (the sign and exponent of similar scores), so
    // per-element atomics on one histogram would all queue on a few words. Instead the lanes of a
    // warp with the same digit add their measures first (match, then two 32-bit reductions: a
    // measure is at most 2^42, so 21-bit halves summed over 32 lanes fit), and one lane per digit
    // adds that to its warp pair's row. Whole warps iterate together (blockDim.x is a multiple of
    // 32); lanes past the end or outside the prefix take digit -1 and measure 0.
    for (int base = 0; base < vocab; base += blockDim.x) {
      const int i = base + static_cast<int>(threadIdx.x);
      int d = -1;
      u64 m = 0;
      if (i < vocab) {
        const float s = score(i);
        const u64 p = pack(ordered_key(s), i);
        if (pass == 0 || (p >> (shift + 8)) == (prefix >> (shift + 8))) {
          d = static_cast<int>((p >> shift) & 0xff);
          m = Weighted ? weight(s, s_max) : 1;
        }
      }
      const unsigned peers = __match_any_sync(0xffffffffu, d);
      const unsigned lo = __reduce_add_sync(peers, static_cast<unsigned>(m & 0x1fffffu));
      const unsigned hi = __reduce_add_sync(peers, static_cast<unsigned>(m >> 21));
      if (d >= 0 && lane == static_cast<unsigned>(__ffs(peers) - 1)) {
        const u64 sum = (static_cast<u64>(hi) << 21) + lo;
        if (sum) atomicAdd(&part[d], sum);
      }
    }
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += blockDim.x) {
      u64 t = 0;
      for (int r = 0; r < 8; ++r) t += sh.part[r][b];
      sh.hist[b] = t;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int d = 255;
      u64 acc = above;
      for (; d > 0; --d) {
        if (acc + sh.hist[d] >= target) break;
        acc += sh.hist[d];
      }
      sh.prefix = prefix | (static_cast<u64>(d) << shift);
      sh.above = acc;
      sh.inclusive = acc + sh.hist[d];
    }
    __syncthreads();
    prefix = sh.prefix;
    above = sh.above;
  }
  *inclusive = sh.inclusive;
  __syncthreads();  // everyone has read sh before a later search rewrites it
  return prefix;
}

__device__ u64 block_sum_u64(u64 v, u64* scratch) {
  return detail::block_sum(v, scratch);
}

__global__ void __launch_bounds__(k_threads) sampling_kernel(sampling_params p, bool vec4) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  extern __shared__ std::uint32_t penalized[];  // [ceil(vocab / 32)] when a penalty applies
  __shared__ search_shared sh;
  const int r = blockIdx.x;
  const int vocab = p.vocab;
  const float* logits = p.logits + static_cast<std::size_t>(r) * vocab;
  const sampling_row row = p.rows[r];
  int sampled = 0;  // the row's token, the same in every thread

  if (row.temperature == 0.0f) {
    const u64 best = raw_max_below(logits, vocab, vec4, ~0ULL, sh.scratch);
    sampled = unpack_id(best);
    if (threadIdx.x == 0) p.out_tokens[r] = sampled;
  } else {
    const bool use_penalty = row.repetition_penalty != 1.0f && p.prev_tokens && p.prev_offsets;
    if (use_penalty) {
      const int words = (vocab + 31) / 32;
      for (int w = threadIdx.x; w < words; w += blockDim.x) penalized[w] = 0;
      __syncthreads();
      for (int j = p.prev_offsets[r] + threadIdx.x; j < p.prev_offsets[r + 1]; j += blockDim.x) {
        const int id = p.prev_tokens[j];
        if (id >= 0 && id < vocab) atomicOr(&penalized[id >> 5], 1u << (id & 31));
      }
      __syncthreads();
    }
    const row_scores score{logits, use_penalty ? penalized : nullptr, row.repetition_penalty,
                           row.temperature};
    u64 best = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
      const u64 q = pack(ordered_key(score(i)), i);
      best = q > best ? q : best;
    }
    const float s_max = key_to_float(static_cast<std::uint32_t>(block_max(best, sh.scratch) >> 32));

    u64 bound = 0;  // packed value of the last kept element (0: all)
    u64 dummy = 0;
    if (row.top_k > 0 && row.top_k < vocab) {
      bound = search<false>(score, vocab, s_max, static_cast<u64>(row.top_k), sh, &dummy);
    }
    u64 part = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float s = score(i);
      if (pack(ordered_key(s), i) >= bound) part += weight(s, s_max);
    }
    u64 total = block_sum_u64(part, sh.scratch);
    if (row.top_p < 1.0f) {
      const double x = ceil(static_cast<double>(row.top_p) * static_cast<double>(total));
      u64 target = x < 1.0 ? 1 : static_cast<u64>(x);
      target = target < total ? target : total;
      search<true>(score, vocab, s_max, target, sh, &total);
    }
    const double u = uniform(row.seed, row.step);
    u64 target = static_cast<u64>(floor(u * static_cast<double>(total)));
    target = target < total - 1 ? target : total - 1;
    const u64 chosen = search<true>(score, vocab, s_max, target + 1, sh, &dummy);
    sampled = unpack_id(chosen);
    if (threadIdx.x == 0) p.out_tokens[r] = sampled;
  }

  if (p.top_logprobs > 0 && (p.out_logprobs || p.out_top_ids || p.out_sampled_logprobs)) {
    const u64 top = raw_max_below(logits, vocab, vec4, ~0ULL, sh.scratch);
    const float max = logits[unpack_id(top)];
    double part = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) part += expf(logits[i] - max);
    __shared__ double dscratch[32];
    const double lse = static_cast<double>(max) + log(detail::block_sum(part, dscratch));
    if (p.out_sampled_logprobs && threadIdx.x == 0) {
      p.out_sampled_logprobs[r] = static_cast<float>(static_cast<double>(logits[sampled]) - lse);
    }
    u64 bound = ~0ULL;
    for (int j = 0; j < p.top_logprobs; ++j) {
      const std::size_t at = static_cast<std::size_t>(r) * p.top_logprobs + j;
      int id = -1;
      if (j < vocab) {
        bound = j == 0 ? top : raw_max_below(logits, vocab, vec4, bound, sh.scratch);
        id = unpack_id(bound);
      }
      if (threadIdx.x == 0) {
        if (p.out_top_ids) p.out_top_ids[at] = id;
        if (p.out_logprobs) {
          p.out_logprobs[at] =
              id < 0 ? -INFINITY : static_cast<float>(static_cast<double>(logits[id]) - lse);
        }
      }
    }
  }
}

}  // namespace

void sampling(const sampling_params& p, cudaStream_t s, bool pdl) {
  detail::require(p.num_rows >= 0 && p.vocab > 0 && p.vocab <= k_sampling_max_vocab, "sampling",
                  "need num_rows >= 0 and vocab in [1, " + std::to_string(k_sampling_max_vocab) +
                      "]; got num_rows=" + std::to_string(p.num_rows) +
                      " vocab=" + std::to_string(p.vocab));
  detail::require(p.top_logprobs >= 0 && p.top_logprobs <= k_sampling_max_top_logprobs, "sampling",
                  "top_logprobs must be in [0, " + std::to_string(k_sampling_max_top_logprobs) +
                      "]; got " + std::to_string(p.top_logprobs));
  if (p.num_rows == 0) return;
  detail::require(p.logits && p.rows && p.out_tokens, "sampling",
                  "null logits, rows or out_tokens");
  detail::require(!p.prev_tokens == !p.prev_offsets, "sampling",
                  "prev_tokens and prev_offsets must both be set or both be null");
  const bool vec4 = p.vocab % 4 == 0 && detail::aligned16(p.logits);
  const std::size_t smem = static_cast<std::size_t>((p.vocab + 31) / 32) * sizeof(std::uint32_t);
  // Without opting in, static (about 19 KB: the search's histograms) plus dynamic shared memory
  // must stay within 48 KB: vocab > about 237,000 with a penalty.
  if (smem + sizeof(search_shared) + 1024 > 48 * 1024) {
    RIDGELINE_CUDA_CHECK(cudaFuncSetAttribute(
        sampling_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launch_kernel(sampling_kernel, dim3(p.num_rows), dim3(k_threads), smem, s, pdl, p, vec4);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
