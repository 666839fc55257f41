// Rotary position embedding, rotate-half convention (see ops.hpp), in place on q and k; one block
// per token.
//
// Angles: a position up to 128k times inv_freq[0] = 1 is ~1.3e5 rad, where fp32 keeps only ~0.008
// rad (and an fp32 inv_freq is off by 2^-24 relative, the same again). So the block first builds
// its token's cos/sin table in double: inv_freq = theta^(-2i/d) (Llama 3.1 rescaling in double),
// angle = pos * inv_freq, sincos in double, rounded to fp32 once (6e-8 relative). head_dim/2
// double sincos per token, shared by all its heads. The rotation is then fp32 with one bf16
// rounding per output, so the result is within 1 bf16 ulp of the double reference.
//
// Rotation: items (head, run of W pairs); W = 8 (two 16-byte loads: x[i..i+8) and
// x[half+i..half+i+8)) when head_dim % 16 == 0 and q/k are 16-byte aligned, else W = 1. Each item
// is read and written by one thread, so in-place is race-free. Napkin (Llama-3-8B: 32 q + 8 kv
// heads x 128, 64 tokens): 64 x 40 x 128 x 2 B = 640 KiB read and written, < 1 us at 3 TB/s.
#include <cmath>
#include <cstddef>
#include <string>

#include "check.hpp"
#include "device_utils.cuh"
#include "ops.hpp"
#include "ops_common.cuh"
#include "rope.cuh"

namespace ridgeline::cuda {
namespace {

constexpr int k_threads = 128;
constexpr int k_max_head_dim = detail::k_rope_max_head_dim;
using detail::rope_args;

template <int W>
__global__ void rope_kernel(rope_args a) {
  __shared__ float cos_s[k_max_head_dim / 2], sin_s[k_max_head_dim / 2];
  const int t = blockIdx.x;
  const int half = a.head_dim / 2;
  detail::rope_table(a, a.positions[t], cos_s, sin_s);
  __syncthreads();
  const int runs = half / W;
  const int items = (a.num_q_heads + a.num_kv_heads) * runs;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    const int h = item / runs, i0 = (item % runs) * W;
    __nv_bfloat16* x =
        h < a.num_q_heads
            ? a.q + (static_cast<std::size_t>(t) * a.num_q_heads + h) * a.head_dim
            : a.k +
                  (static_cast<std::size_t>(t) * a.num_kv_heads + (h - a.num_q_heads)) * a.head_dim;
    if constexpr (W == 8) {
      auto* p1 = reinterpret_cast<detail::bf16x8*>(x + i0);
      auto* p2 = reinterpret_cast<detail::bf16x8*>(x + half + i0);
      detail::bf16x8 v1 = *p1, v2 = *p2;
#pragma unroll
      for (int j = 0; j < 8; ++j) detail::rope_rotate(v1.v[j], v2.v[j], cos_s[i0 + j], sin_s[i0 + j]);
      *p1 = v1;
      *p2 = v2;
    } else {
      detail::rope_rotate(x[i0], x[half + i0], cos_s[i0], sin_s[i0]);
    }
  }
}

// The fused attention prologue (qkv_rope_append_params): per token, q and k heads are read from the
// QKV row, rotated exactly as rope_kernel does (same table, same rounding), and written to the
// contiguous q buffer and the K cache slot; V heads are copied to their slot. One kernel instead
// of split + rope + kv_append: at batch 1 launch latency, not bytes, is the cost.
struct rope_append_args {
  rope_args r;  // r.q: the contiguous q output; r.k unused
  const __nv_bfloat16* qkv;
  const std::int32_t* slots;
  __nv_bfloat16* cache;
  int log2_bs;
};

template <int W>
__global__ void qkv_rope_append_kernel(rope_append_args a) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  __shared__ float cos_s[k_max_head_dim / 2], sin_s[k_max_head_dim / 2];
  const rope_args& r = a.r;
  const int t = blockIdx.x;
  const int half = r.head_dim / 2, d = r.head_dim, nq = r.num_q_heads, nkv = r.num_kv_heads;
  // The rotation table needs only the positions, which the host wrote before the step's first
  // kernel: its double-precision sincos (the kernel's longest latency at one token) runs while the
  // QKV projection before it finishes.
  detail::rope_table(r, r.positions[t], cos_s, sin_s);
  detail::pdl_wait();  // before reading what the previous kernel wrote
  __syncthreads();
  const __nv_bfloat16* row = a.qkv + static_cast<std::size_t>(t) * (nq + 2 * nkv) * d;
  const int slot = a.slots[t];
  const int bs = 1 << a.log2_bs;
  const std::int64_t block = slot >> a.log2_bs;
  const std::int64_t in_block = slot & (bs - 1);
  auto cache_at = [&](int which, int h) {
    return a.cache + ((block * 2 + which) * nkv + h) * std::int64_t{bs} * d + in_block * d;
  };
  const int runs = half / W;
  const int items = (nq + (slot >= 0 ? nkv : 0)) * runs;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    const int h = item / runs, i0 = (item % runs) * W;
    const __nv_bfloat16* src = row + static_cast<std::size_t>(h) * d;  // q heads, then k heads
    __nv_bfloat16* dst = h < nq ? r.q + (static_cast<std::size_t>(t) * nq + h) * d
                                : cache_at(0, h - nq);
    if constexpr (W == 8) {
      detail::bf16x8 v1 = *reinterpret_cast<const detail::bf16x8*>(src + i0);
      detail::bf16x8 v2 = *reinterpret_cast<const detail::bf16x8*>(src + half + i0);
#pragma unroll
      for (int j = 0; j < 8; ++j) detail::rope_rotate(v1.v[j], v2.v[j], cos_s[i0 + j], sin_s[i0 + j]);
      *reinterpret_cast<detail::bf16x8*>(dst + i0) = v1;
      *reinterpret_cast<detail::bf16x8*>(dst + half + i0) = v2;
    } else {
      __nv_bfloat16 x1 = src[i0], x2 = src[half + i0];
      detail::rope_rotate(x1, x2, cos_s[i0], sin_s[i0]);
      dst[i0] = x1;
      dst[half + i0] = x2;
    }
  }
  if (slot < 0) return;
  const __nv_bfloat16* v_src = row + static_cast<std::size_t>(nq + nkv) * d;
  const int per_head = d / W;
  for (int c = threadIdx.x; c < nkv * per_head; c += blockDim.x) {
    const int h = c / per_head, e = (c % per_head) * W;
    if constexpr (W == 8) {
      *reinterpret_cast<detail::bf16x8*>(cache_at(1, h) + e) =
          *reinterpret_cast<const detail::bf16x8*>(v_src + h * d + e);
    } else {
      cache_at(1, h)[e] = v_src[h * d + e];
    }
  }
}

// One row per position of the prebuilt cos/sin table: rope_angle, the very function the kernels
// fall back to, so a table row and an on-the-fly table hold the same bits.
__global__ void rope_table_kernel(rope_args a, float* table) {
  const int pos = blockIdx.x, half = a.head_dim / 2;
  float* row = table + static_cast<std::int64_t>(pos) * a.head_dim;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    detail::rope_angle(a, pos, i, row[i], row[half + i]);
  }
}

}  // namespace

namespace detail {

rope_args make_rope_args(const rope_params& p, const char* who) {
  detail::require(p.num_tokens >= 0 && p.num_q_heads >= 0 && p.num_kv_heads >= 0 &&
                      p.head_dim > 0 && p.head_dim % 2 == 0 && p.head_dim <= k_max_head_dim,
                  who,
                  "need num_tokens, num_q_heads, num_kv_heads >= 0 and an even head_dim in [2, " +
                      std::to_string(k_max_head_dim) +
                      "]; got num_tokens=" + std::to_string(p.num_tokens) +
                      " num_q_heads=" + std::to_string(p.num_q_heads) + " num_kv_heads=" +
                      std::to_string(p.num_kv_heads) + " head_dim=" + std::to_string(p.head_dim));
  detail::require(p.theta > 0, who, "theta must be > 0; got " + std::to_string(p.theta));
  detail::require(p.table_positions >= 0, who,
                  "table_positions must be >= 0; got " + std::to_string(p.table_positions));
  if (p.llama3_scaling) {
    detail::require(p.scaling_factor > 0 && p.low_freq_factor > 0 &&
                        p.high_freq_factor > p.low_freq_factor && p.original_max_position > 0,
                    who,
                    "llama3 scaling needs factor > 0, high_freq_factor > low_freq_factor > 0, "
                    "original_max_position > 0; got factor=" +
                        std::to_string(p.scaling_factor) +
                        " low=" + std::to_string(p.low_freq_factor) +
                        " high=" + std::to_string(p.high_freq_factor) +
                        " original_max_position=" + std::to_string(p.original_max_position));
  }
  return rope_args{reinterpret_cast<__nv_bfloat16*>(p.q),
                   reinterpret_cast<__nv_bfloat16*>(p.k),
                   p.positions,
                   p.num_q_heads,
                   p.num_kv_heads,
                   p.head_dim,
                   static_cast<double>(p.theta),
                   p.llama3_scaling,
                   static_cast<double>(p.scaling_factor),
                   static_cast<double>(p.low_freq_factor),
                   static_cast<double>(p.high_freq_factor),
                   static_cast<double>(p.original_max_position),
                   p.table,
                   p.table ? p.table_positions : 0};
}

}  // namespace detail

void rope_table_build(const rope_params& p, float* table, int positions, cudaStream_t s) {
  rope_params r = p;
  r.table = nullptr;
  const rope_args a = detail::make_rope_args(r, "rope_table_build");
  detail::require(positions >= 0, "rope_table_build",
                  "positions must be >= 0; got " + std::to_string(positions));
  if (positions == 0) return;
  detail::require(table != nullptr, "rope_table_build", "null table");
  rope_table_kernel<<<positions, k_threads, 0, s>>>(a, table);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void rope(const rope_params& p, cudaStream_t s) {
  const rope_args a = detail::make_rope_args(p, "rope");
  if (p.num_tokens == 0 || p.num_q_heads + p.num_kv_heads == 0) return;
  detail::require(p.positions != nullptr, "rope", "null positions");
  detail::require(p.num_q_heads == 0 || p.q, "rope", "null q with num_q_heads > 0");
  detail::require(p.num_kv_heads == 0 || p.k, "rope", "null k with num_kv_heads > 0");
  const bool vec = p.head_dim % 16 == 0 && (p.num_q_heads == 0 || detail::aligned16(p.q)) &&
                   (p.num_kv_heads == 0 || detail::aligned16(p.k));
  if (vec)
    rope_kernel<8><<<p.num_tokens, k_threads, 0, s>>>(a);
  else
    rope_kernel<1><<<p.num_tokens, k_threads, 0, s>>>(a);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

void qkv_rope_append(const qkv_rope_append_params& p, cudaStream_t s, bool pdl) {
  rope_params r = p.rope;
  r.q = p.q;
  const rope_args args = detail::make_rope_args(r, "qkv_rope_append");
  const auto& kv = p.kv;
  detail::require(kv.num_kv_heads == r.num_kv_heads && kv.head_dim == r.head_dim,
                  "qkv_rope_append", "cache heads/head_dim differ from the rope's");
  detail::require(kv.block_size > 0 && (kv.block_size & (kv.block_size - 1)) == 0,
                  "qkv_rope_append",
                  "block_size must be a power of two; got " + std::to_string(kv.block_size));
  if (r.num_tokens == 0) return;
  detail::require(p.qkv && p.q && kv.data && p.slot_mapping && r.positions, "qkv_rope_append",
                  "null qkv, q, cache, slot_mapping or positions");
  int log2_bs = 0;
  while ((1 << log2_bs) < kv.block_size) ++log2_bs;
  const rope_append_args a{args, reinterpret_cast<const __nv_bfloat16*>(p.qkv), p.slot_mapping,
                           reinterpret_cast<__nv_bfloat16*>(kv.data), log2_bs};
  const bool vec = r.head_dim % 16 == 0 && detail::aligned16(p.qkv) && detail::aligned16(p.q) &&
                   detail::aligned16(kv.data);
  if (vec)
    launch_kernel(qkv_rope_append_kernel<8>, dim3(r.num_tokens), dim3(k_threads), 0, s, pdl, a);
  else
    launch_kernel(qkv_rope_append_kernel<1>, dim3(r.num_tokens), dim3(k_threads), 0, s, pdl, a);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace ridgeline::cuda
