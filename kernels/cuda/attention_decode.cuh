// The decode attention kernel (see attention.hpp): one query token per sequence, split-KV with
// the merge by the last CTA of a (sequence, kv head), and the fused RoPE + KV-append prologue of
// rope_append_attention. Paged cache:
//   data[block][0 = K, 1 = V][kv_head][slot][head_dim]   (bf16; one head of a block: bs * D
//                                                         contiguous elements)
// Scores are kept in the log2 domain (attention_common.cuh).
//
// Included only by attention_kernels.cu, which compiles the decode and prefill kernels in one
// translation unit: compiled alone, the prefill kernel gets other code (its loops unroll
// differently in the PTX), and splitting the source must not change the kernels.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attention.hpp"
#include "attention_common.cuh"
#include "attention_internal.hpp"
#include "check.hpp"
#include "ops.hpp"
#include "ops_common.cuh"
#include "rope.cuh"

namespace ridgeline::cuda {
namespace {

using namespace detail;  // attention_common.cuh's helpers, unpack8, smem_addr
[[noreturn]] void invalid(const std::string& what) { detail::attention_invalid(what); }

// ---------------------------------------------------------------------------------------------
// Decode: one query token per sequence.
//
// Grid (num_seqs, num_kv_heads, splits), 128 threads. A CTA reads the K and V rows of its split
// [t0, t1) of one kv head once and serves all G query heads of the group. A token's row is D/8
// 16-byte chunks, so L = D/8 lanes share a token (a "token group"); a warp holds 32/L tokens per
// load, the CTA NG = 4 * 32/L; each lane keeps U tokens' K and V chunks in flight per iteration.
// Per lane: q (G x 8 fp32, pre-scaled), its 8 dims of the accumulator for each of the G heads,
// running max and sum. Scores: 8-dim partial dot per lane, butterfly sum over the L lanes (every
// lane gets the same bits). After the loop the token groups are merged (shuffles within a warp,
// shared memory across the 4 warps) and the CTA writes bf16 output, or, when split, fp32 partial
// output (already divided by its sum) and its log2-sum-exp to the workspace.
//
// Napkin (Llama-2-7B, batch 64, context 512): 2048 CTAs ~ 15.5 per SM over one wave at ~4 resident
// per SM; each CTA reads 512 x 2 x 256 B = 256 KB; 268 MB per layer / 3.1 TB/s = 87 us. In flight
// per SM: 4 CTAs x 128 lanes x 2U x 16 B = 64 KB, far above the ~17 KB that 3.1 TB/s x ~700 ns
// latency needs per SM. Compute per 16 B of K (+16 B of V): 8G + 8G FMAs and G*log2(L) shuffles per
// lane, well under the ~13 B/clk/SM the DRAM share allows.

struct decode_args {
  const bf16_bits* q;                // [num_q_tokens][num_q_heads][D] (Rope: unused)
  bf16_bits* out;                    // [num_q_tokens][num_q_heads][D]
  const std::int32_t* q_offsets;     // [num_seqs + 1]
  bf16_bits* cache;                  // paged K/V (written only by the Rope prologue)
  const std::int32_t* block_tables;  // [num_seqs][max_blocks_per_seq]
  const std::int32_t* seq_lens;      // [num_seqs]
  int num_q_heads, num_kv_heads, log2_bs, max_blocks_per_seq;
  float scale_log2;
  int split_tokens;  // 0: one CTA covers the whole context and writes out
  float* ws_o;       // [num_seqs][max_splits][num_q_heads][D]
  float* ws_lse;     // [num_seqs][max_splits][num_q_heads], log2 domain
  int max_splits;
  std::int32_t* counters;  // [num_seqs][num_kv_heads]: splits done; zero between calls
  // Rope prologue (the fused qkv_rope_append): q, k and v of each sequence's query token are read
  // from its QKV row; q and k rotated for positions[q_row]; k and v written to slots[q_row].
  const bf16_bits* qkv;  // [num_q_tokens][(num_q_heads + 2 num_kv_heads) D]
  const std::int32_t* slots;
  detail::rope_args rope;
};

// The 8 dims [8 li, 8 li + 8) of a head's row after rotation: chunk li and its rotate-half partner
// li ^ L/2 are read, and the pairs (i, i + D/2) rotated exactly as qkv_rope_append does (on
// 32-bit words of two bf16 each, so that nothing lives in local memory).
template <int D>
__device__ __forceinline__ int4 rotated_chunk(const bf16_bits* row, int li, const float* cos_t,
                                              const float* sin_t) {
  constexpr int L = D / 8;
  const bool lo = li < L / 2;  // the chunk holds x1 of its pairs (else x2)
  const int4 mine = __ldg(reinterpret_cast<const int4*>(row) + li);
  const int4 other = __ldg(reinterpret_cast<const int4*>(row) + (li ^ (L / 2)));
  const std::uint32_t m[4] = {static_cast<std::uint32_t>(mine.x), static_cast<std::uint32_t>(mine.y),
                              static_cast<std::uint32_t>(mine.z), static_cast<std::uint32_t>(mine.w)};
  const std::uint32_t o[4] = {
      static_cast<std::uint32_t>(other.x), static_cast<std::uint32_t>(other.y),
      static_cast<std::uint32_t>(other.z), static_cast<std::uint32_t>(other.w)};
  const int i0 = (li % (L / 2)) * 8;
  std::uint32_t r[4];
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    float y[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float xm = __uint_as_float(h ? m[w] & 0xffff0000u : m[w] << 16);
      const float xo = __uint_as_float(h ? o[w] & 0xffff0000u : o[w] << 16);
      const float c = cos_t[i0 + 2 * w + h], sn = sin_t[i0 + 2 * w + h];
      y[h] = lo ? detail::rope_first(xm, xo, c, sn) : detail::rope_second(xo, xm, c, sn);
    }
    r[w] = pack_bf16x2(y[0], y[1]);
  }
  return make_int4(static_cast<int>(r[0]), static_cast<int>(r[1]), static_cast<int>(r[2]),
                   static_cast<int>(r[3]));
}

// CTAs per SM the register budget must allow: what the plain kernel reaches (64, 80, 128 and
// ~210 registers for groups 1, 2, 4, 8), held by the Rope variant too: left free it takes 72 and
// 96 registers for groups 1 and 2, one CTA per SM less, and a batch-64 Llama-2 grid of 2048 CTAs
// then needs a third, mostly empty wave (measured: +0.3 ms per step on an H100).
template <int G>
constexpr int decode_min_blocks() {
  return G == 1 ? 8 : G == 2 ? 6 : G == 4 ? 4 : 2;
}

template <int D, int G, int U, bool Rope>
__global__ void __launch_bounds__(128, decode_min_blocks<G>()) decode_kernel(decode_args a) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  constexpr int L = D / 8, T = 32 / L, NG = 4 * T;
  const int s = blockIdx.x, hk = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int sub = lane / L, li = lane % L, gi = warp * T + sub;
  // Step inputs (written by the host before the step's first kernel) may be read before the wait.
  const std::int64_t q_row = a.q_offsets[s];
  __shared__ float cos_t[Rope ? D / 2 : 1], sin_t[Rope ? D / 2 : 1];
  __shared__ int4 s_new[2][L];  // Rope: the query token's rotated K and its V, as 16-byte chunks
  if constexpr (Rope) {
    // The rotation table (double sincos, the prologue's longest latency) overlaps the QKV
    // projection still running before this kernel.
    detail::rope_table(a.rope, a.rope.positions[q_row], cos_t, sin_t);
  }
  detail::pdl_wait();  // before reading what the previous kernel wrote
  const int len = a.seq_lens[s];
  const int t0 = split * a.split_tokens;
  const int t1 = a.split_tokens ? min(len, t0 + a.split_tokens) : len;
  if (t0 >= t1) return;  // uniform: a split past this sequence's end

  // The query token is the sequence's last (position len - 1): the CTA whose range holds it
  // appends its K/V to the cache and takes that token from shared memory rather than the cache.
  bool owns_new = false;
  const std::int64_t qkv_row = q_row * (a.num_q_heads + 2 * a.num_kv_heads) * D;
  if constexpr (Rope) {
    __syncthreads();  // the table
    const int slot = a.slots[q_row];
    owns_new = slot >= 0 && t1 == len;
    if (owns_new && tid < L) {
      const int4 k = rotated_chunk<D>(a.qkv + qkv_row + (a.num_q_heads + hk) * D, tid, cos_t,
                                      sin_t);
      const int4 v = __ldg(reinterpret_cast<const int4*>(
                               a.qkv + qkv_row + (a.num_q_heads + a.num_kv_heads + hk) * D) +
                           tid);
      const std::int64_t head = std::int64_t{1 << a.log2_bs} * D;
      bf16_bits* dst = a.cache + ((std::int64_t{slot >> a.log2_bs} * 2) * a.num_kv_heads + hk) *
                                     head +
                       std::int64_t{slot & ((1 << a.log2_bs) - 1)} * D + tid * 8;
      *reinterpret_cast<int4*>(dst) = k;
      *reinterpret_cast<int4*>(dst + a.num_kv_heads * head) = v;
      s_new[0][tid] = k;
      s_new[1][tid] = v;
    }
    __syncthreads();
  }

  float qf[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    int4 r;
    if constexpr (Rope) {
      r = rotated_chunk<D>(a.qkv + qkv_row + (hk * G + g) * D, li, cos_t, sin_t);
    } else {
      r = __ldg(reinterpret_cast<const int4*>(a.q + (q_row * a.num_q_heads + hk * G + g) * D) +
                li);
    }
    unpack8(r, qf[g]);
#pragma unroll
    for (int i = 0; i < 8; ++i) qf[g][i] *= a.scale_log2;
  }

  const int bs = 1 << a.log2_bs;
  const std::int64_t head_elems = std::int64_t{bs} * D;
  const std::int64_t block_elems = 2 * a.num_kv_heads * head_elems;
  const bf16_bits* k_base = a.cache + hk * head_elems + li * 8;
  const bf16_bits* v_base = k_base + a.num_kv_heads * head_elems;
  const std::int32_t* table = a.block_tables + std::int64_t{s} * a.max_blocks_per_seq;

  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = k_neg_big;
    l[g] = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0;
  }

  for (int base = t0; base < t1; base += NG * U) {  // same trip count for every thread
    int4 kr[U], vr[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int tok = base + u * NG + gi;
      if (Rope && owns_new && tok == len - 1) {
        kr[u] = s_new[0][li];
        vr[u] = s_new[1][li];
      } else if (tok < t1) {
        const std::int64_t off = std::int64_t{__ldg(table + (tok >> a.log2_bs))} * block_elems +
                                 std::int64_t{tok & (bs - 1)} * D;
        // Streaming loads (evict first): each row is read once per step.
        kr[u] = __ldcs(reinterpret_cast<const int4*>(k_base + off));
        vr[u] = __ldcs(reinterpret_cast<const int4*>(v_base + off));
      } else {
        kr[u] = make_int4(0, 0, 0, 0);
        vr[u] = make_int4(0, 0, 0, 0);
      }
    }
    float sc[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[8];
      unpack8(kr[u], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float dot = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) dot = fmaf(qf[g][i], kf[i], dot);
        sc[u][g] = dot;
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) sc[u][g] += __shfl_xor_sync(0xffffffffu, sc[u][g], o);
      }
      if (base + u * NG + gi >= t1) {
#pragma unroll
        for (int g = 0; g < G; ++g) sc[u][g] = -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][g]);
      const float corr = exp2f(m[g] - mx);
      m[g] = mx;
      l[g] *= corr;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] *= corr;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[8];
      unpack8(vr[u], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float p = exp2f(sc[u][g] - m[g]);
        l[g] += p;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
      }
    }
  }

  // Merge the token groups of this warp (lanes li, li + L, ... hold the same dims).
#pragma unroll
  for (int o = L; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[g], o);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float mx = fmaxf(m[g], m_o);
      const float f = exp2f(m[g] - mx), f_o = exp2f(m_o - mx);
      l[g] = l[g] * f + l_o * f_o;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float acc_o = __shfl_xor_sync(0xffffffffu, acc[g][i], o);
        acc[g][i] = acc[g][i] * f + acc_o * f_o;
      }
      m[g] = mx;
    }
  }

  __shared__ float s_m[4][G], s_l[4][G];
  __shared__ __align__(16) float s_acc[4][G][D];
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float4* dst = reinterpret_cast<float4*>(&s_acc[warp][g][li * 8]);
      dst[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
      dst[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
      if (li == 0) {
        s_m[warp][g] = m[g];
        s_l[warp][g] = l[g];
      }
    }
  }
  __syncthreads();
  for (int idx = tid; idx < G * D; idx += 128) {
    const int g = idx / D, d = idx % D;
    float mx = s_m[0][g];
#pragma unroll
    for (int w = 1; w < 4; ++w) mx = fmaxf(mx, s_m[w][g]);
    float o = 0, sum = 0;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float f = exp2f(s_m[w][g] - mx);
      o += s_acc[w][g][d] * f;
      sum += s_l[w][g] * f;
    }
    const int hq = hk * G + g;
    if (a.split_tokens == 0) {
      a.out[(q_row * a.num_q_heads + hq) * D + d] = to_bf16_bits(o / sum);
    } else {
      const std::int64_t w = (std::int64_t{s} * a.max_splits + split) * a.num_q_heads + hq;
      a.ws_o[w * D + d] = o / sum;
      if (d == 0) a.ws_lse[w] = mx + log2f(sum);
    }
  }
  if (a.split_tokens == 0) return;

  // Split: the last of this (sequence, kv head)'s splits to finish merges them, in split order
  // (the same bits whichever CTA comes last): out = sum_j o_j 2^(lse_j - M) / sum_j 2^(lse_j - M).
  __shared__ bool s_last;
  const int splits = (len + a.split_tokens - 1) / a.split_tokens;
  __threadfence();  // this CTA's partials are visible device-wide before it is counted
  __syncthreads();
  if (tid == 0) {
    std::int32_t* counter = a.counters + std::int64_t{s} * a.num_kv_heads + hk;
    s_last = atomicAdd(counter, 1) == splits - 1;
    if (s_last) *counter = 0;  // every split has arrived: ready for the next call
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int idx = tid; idx < G * D; idx += 128) {
    const int g = idx / D, d = idx % D;
    const std::int64_t first = std::int64_t{s} * a.max_splits * a.num_q_heads + hk * G + g;
    float mx = -INFINITY;
    for (int j = 0; j < splits; ++j) {
      mx = fmaxf(mx, __ldcg(a.ws_lse + first + std::int64_t{j} * a.num_q_heads));
    }
    float o = 0, sum = 0;
    for (int j = 0; j < splits; ++j) {
      const std::int64_t w = first + std::int64_t{j} * a.num_q_heads;
      const float f = exp2f(__ldcg(a.ws_lse + w) - mx);
      sum += f;
      o += f * __ldcg(a.ws_o + w * D + d);
    }
    a.out[(q_row * a.num_q_heads + hk * G + g) * D + d] = to_bf16_bits(o / sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

constexpr int k_decode_threads = 128;

template <int D, int G, bool Rope>
void launch_decode(const decode_args& args, int num_seqs, int num_kv_heads, int splits,
                   cudaStream_t stream, bool pdl) {
  constexpr int U = G >= 8 ? 2 : 4;  // tokens in flight per lane; G = 8 is register-bound
  const dim3 grid(static_cast<unsigned>(num_seqs), static_cast<unsigned>(num_kv_heads),
                  static_cast<unsigned>(splits));
  launch_kernel(decode_kernel<D, G, U, Rope>, grid, dim3(k_decode_threads), 0, stream, pdl, args);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

template <int D, bool Rope>
void launch_decode_group(const decode_args& args, int group, int num_seqs, int num_kv_heads,
                         int splits, cudaStream_t stream, bool pdl) {
  switch (group) {
    case 1:
      return launch_decode<D, 1, Rope>(args, num_seqs, num_kv_heads, splits, stream, pdl);
    case 2:
      return launch_decode<D, 2, Rope>(args, num_seqs, num_kv_heads, splits, stream, pdl);
    case 4:
      return launch_decode<D, 4, Rope>(args, num_seqs, num_kv_heads, splits, stream, pdl);
    case 8:
      return launch_decode<D, 8, Rope>(args, num_seqs, num_kv_heads, splits, stream, pdl);
    default:
      invalid("decode group size " + std::to_string(group));
  }
}
// The decode kernel's arguments (everything but the Rope prologue's fields).
decode_args decode_args_for(const attention_params& p, const attention_plan& plan) {
  const auto& kv = p.kv;
  decode_args args{};
  args.q = p.q;
  args.out = p.out;
  args.q_offsets = p.q_offsets;
  args.cache = kv.data;
  args.block_tables = kv.block_tables;
  args.seq_lens = kv.seq_lens;
  args.num_q_heads = p.num_q_heads;
  args.num_kv_heads = kv.num_kv_heads;
  args.log2_bs = log2_int(kv.block_size);
  args.max_blocks_per_seq = kv.max_blocks_per_seq;
  args.scale_log2 = p.scale * k_log2e;
  args.split_tokens = plan.split_tokens;
  args.max_splits = plan.max_splits;
  if (plan.split_tokens > 0) {
    // ws_o then ws_lse, both inside the workspace the plan sized.
    args.ws_o = p.workspace;
    args.ws_lse =
        p.workspace + std::int64_t{kv.num_seqs} * plan.max_splits * p.num_q_heads * kv.head_dim;
    args.counters = p.split_counters;
  }
  return args;
}

template <bool Rope>
void launch_decode_any(const decode_args& args, const attention_params& p,
                       const attention_plan& plan, cudaStream_t stream, bool pdl) {
  const auto& kv = p.kv;
  const int group = p.num_q_heads / kv.num_kv_heads;
  const int splits = plan.split_tokens > 0 ? plan.max_splits : 1;
  if (kv.head_dim == 64) {
    launch_decode_group<64, Rope>(args, group, kv.num_seqs, kv.num_kv_heads, splits, stream, pdl);
  } else {
    launch_decode_group<128, Rope>(args, group, kv.num_seqs, kv.num_kv_heads, splits, stream, pdl);
  }
}

// Whether the decode kernel can take pre's work: p (validated) takes the decode path (plan) over
// the cache pre appends to.
bool fusable(const qkv_rope_append_params& pre, const attention_params& p,
             const attention_plan& plan) {
  const auto& r = pre.rope;
  const auto& a = pre.kv;
  const auto& b = p.kv;
  return plan.decode && r.num_tokens == p.num_q_tokens && r.num_q_heads == p.num_q_heads &&
         r.num_kv_heads == b.num_kv_heads && r.head_dim == b.head_dim && a.data == b.data &&
         a.block_size == b.block_size && a.num_kv_heads == b.num_kv_heads &&
         a.head_dim == b.head_dim && pre.q == p.q && aligned16(pre.qkv) && aligned16(b.data);
}

}  // namespace

namespace detail {

void launch_attention_decode(const attention_params& p, const attention_plan& plan,
                             cudaStream_t stream, bool pdl) {
  launch_decode_any<false>(decode_args_for(p, plan), p, plan, stream, pdl);
}

}  // namespace detail

bool rope_append_attention_fuses(const qkv_rope_append_params& pre, const attention_params& p) {
  detail::validate_attention(p);
  return fusable(pre, p, plan_attention(shape_of(p)));
}

void rope_append_attention(const qkv_rope_append_params& pre, const attention_params& p,
                           cudaStream_t stream, bool pdl) {
  detail::validate_attention(p);
  const attention_plan plan = plan_attention(shape_of(p));
  if (!fusable(pre, p, plan)) {
    qkv_rope_append(pre, stream, pdl);
    attention(p, stream, pdl);
    return;
  }
  rope_params r = pre.rope;
  r.q = pre.q;
  const detail::rope_args rope = detail::make_rope_args(r, "rope_append_attention");
  detail::check_split_buffers(p, plan);
  if (p.num_q_tokens == 0) return;
  if (!pre.qkv || !pre.slot_mapping || !r.positions) {
    invalid("rope_append_attention: null qkv, slot_mapping or positions");
  }
  decode_args args = decode_args_for(p, plan);
  args.qkv = pre.qkv;
  args.slots = pre.slot_mapping;
  args.rope = rope;
  launch_decode_any<true>(args, p, plan, stream, pdl);
}

}  // namespace ridgeline::cuda
