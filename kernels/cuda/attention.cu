// Attention path on the GPU (see attention.hpp): kv_append, the decode kernel with its split merge,
// and the tensor-core prefill kernel, all over the paged cache
//   data[block][0 = K, 1 = V][kv_head][slot][head_dim]   (bf16; one head of a block: bs * D
//                                                         contiguous elements)
// Scores are kept in the log2 domain (q is pre-scaled by scale * log2(e)) so softmax uses exp2f.
// Running maxima start at -1e30 rather than -inf so that exp2f(m_old - m_new) is never inf - inf.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention.hpp"
#include "check.hpp"
#include "device_utils.cuh"
#include "ops.hpp"
#include "ops_common.cuh"
#include "rope.cuh"

namespace ridgeline::cuda {
namespace {

constexpr float k_log2e = 1.4426950408889634f;
constexpr float k_neg_big = -1e30f;

// ---------------------------------------------------------------------------------------------
// Small device helpers.

using detail::smem_addr;
using detail::unpack8;

__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x = lo (low 16 bits)
  return *reinterpret_cast<const std::uint32_t*>(&h);
}

__device__ __forceinline__ bf16_bits to_bf16_bits(float x) {
  const __nv_bfloat16 h = __float2bfloat16_rn(x);
  return *reinterpret_cast<const bf16_bits*>(&h);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(smem)), "l"(gmem)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}

// c += a (16x16, row-major fragments) * b (16x8, column fragments); bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------------------------------------
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
// Prefill (any number of queries per sequence), FlashAttention-2 style on mma.sync m16n8k16.
//
// Grid (query tiles, num_q_heads), 128 threads = 4 warps; a CTA owns BQ = 64 query rows of one
// sequence and one query head, each warp 16 rows. Query tiles of all sequences are numbered
// sequence by sequence (the grid's x is an upper bound, sum ceil(n_s / 64) <= (num_q_tokens +
// num_seqs * 63) / 64; warp 0 finds its tile with a prefix sum over q_offsets, extra CTAs exit),
// the last (most expensive, causal) tile of a sequence first. K/V tiles of BK = 64 tokens are
// gathered from the paged cache into shared memory by cp.async, double-buffered, rows XOR-swizzled
// by 16-byte chunk (chunk ^ row % 8) so ldmatrix is conflict-free. Q stays in registers as A
// fragments; S = Q K^T (ldmatrix K), online softmax on the S fragments (row max/sum over the 4
// lanes of a quad), P re-packed to bf16 as the A operand of P V (ldmatrix.trans V). Keys past the
// last row's position are zero-filled, never loaded, and masked; warps skip tiles wholly after
// their rows.
//
// Napkin (Llama-2-7B, 4 x 1024-token prompts, one layer): causal FLOPs = 4 seqs x 32 heads x
// (1024^2 / 2) x 128 x 4 = 34 GFLOP; at the ~300-400 TFLOP/s that mma.sync attention reaches on an
// H100, 90-115 us per layer (vs ~270 us of GEMMs per layer). Grid 16 x 4 x 32 = 2048 CTAs, ~3
// resident per SM (64 KB smem, ~170 regs/thread at D = 128). K/V traffic is 1024/64 re-reads per
// query tile, mostly from L2.

struct prefill_args {
  const bf16_bits* q;
  bf16_bits* out;
  const std::int32_t* q_offsets;
  const bf16_bits* cache;
  const std::int32_t* block_tables;
  const std::int32_t* seq_lens;
  int num_seqs, num_q_heads, num_kv_heads, log2_bs, max_blocks_per_seq;
  float scale_log2;
};

constexpr int k_prefill_bq = 64, k_prefill_bk = 64;

template <int D>
constexpr int prefill_smem_bytes() {
  return 2 /*buffers*/ * 2 /*K, V*/ * k_prefill_bk * D * 2;
}

template <int D>
__global__ void __launch_bounds__(128) prefill_kernel(prefill_args a) {
  detail::pdl_trigger();  // the kernel after this may be scheduled now
  detail::pdl_wait();  // before reading what the previous kernel wrote
  constexpr int BQ = k_prefill_bq, BK = k_prefill_bk, CH = D / 8, KD = D / 16;
  extern __shared__ int4 smem[];  // [2 buffers][K, V][BK rows][CH chunks], swizzled
  __shared__ int s_seq, s_tile;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;

  if (warp == 0) {  // which (sequence, tile) is blockIdx.x?
    const int target = blockIdx.x;
    int done = 0, found_seq = -1, found_tile = 0;
    for (int base = 0; base < a.num_seqs; base += 32) {
      const int s = base + lane;
      const int cnt = s < a.num_seqs ? (a.q_offsets[s + 1] - a.q_offsets[s] + BQ - 1) / BQ : 0;
      int incl = cnt;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const int first = done + incl - cnt;
      const unsigned hit =
          __ballot_sync(0xffffffffu, cnt > 0 && target >= first && target < first + cnt);
      if (hit) {
        const int src = __ffs(hit) - 1;
        found_seq = __shfl_sync(0xffffffffu, s, src);
        found_tile = __shfl_sync(0xffffffffu, target - first, src);
        break;
      }
      done += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) {
      s_seq = found_seq;
      s_tile = found_tile;
    }
  }
  __syncthreads();
  const int s = s_seq;
  if (s < 0) return;  // uniform: past the last tile

  const int q0 = a.q_offsets[s], n = a.q_offsets[s + 1] - q0, len = a.seq_lens[s];
  const int i0 = ((n + BQ - 1) / BQ - 1 - s_tile) * BQ;  // last tile first
  const int hq = blockIdx.y, hk = hq / (a.num_q_heads / a.num_kv_heads);
  const int pos0 = len - n;                   // position of query row 0
  const int kv_end = pos0 + min(i0 + BQ, n);  // keys [0, kv_end) matter to this tile
  const int n_kv_tiles = (kv_end + BK - 1) / BK;
  const int w_row0 = i0 + warp * 16;
  const bool warp_active = w_row0 < n;
  const int w_first_pos = pos0 + w_row0;
  const int w_last_pos = pos0 + min(w_row0 + 15, n - 1);

  // Q as A fragments: a0 (row g, dims 2t..), a1 (row g+8), a2 (row g, dims 2t+8..), a3 (row g+8).
  std::uint32_t qa[KD][4];
  {
    const int ra = w_row0 + g, rb = ra + 8;
    const std::uint32_t* pa = ra < n ? reinterpret_cast<const std::uint32_t*>(
                                           a.q + (std::int64_t{q0 + ra} * a.num_q_heads + hq) * D)
                                     : nullptr;
    const std::uint32_t* pb = rb < n ? reinterpret_cast<const std::uint32_t*>(
                                           a.q + (std::int64_t{q0 + rb} * a.num_q_heads + hq) * D)
                                     : nullptr;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      qa[kk][0] = pa ? pa[kk * 8 + t] : 0u;
      qa[kk][1] = pb ? pb[kk * 8 + t] : 0u;
      qa[kk][2] = pa ? pa[kk * 8 + 4 + t] : 0u;
      qa[kk][3] = pb ? pb[kk * 8 + 4 + t] : 0u;
    }
  }

  const int bs = 1 << a.log2_bs;
  const std::int64_t head_elems = std::int64_t{bs} * D;
  const std::int64_t block_elems = 2 * a.num_kv_heads * head_elems;
  const bf16_bits* k_base = a.cache + hk * head_elems;
  const bf16_bits* v_base = k_base + a.num_kv_heads * head_elems;
  const std::int32_t* table = a.block_tables + std::int64_t{s} * a.max_blocks_per_seq;

  auto load_tile = [&](int kt, int buf) {
    int4* sk = smem + buf * 2 * BK * CH;
    int4* sv = sk + BK * CH;
    for (int idx = tid; idx < BK * CH; idx += 128) {
      const int r = idx / CH, c = idx % CH, pos = kt * BK + r;
      const int at = r * CH + (c ^ (r & 7));
      if (pos < kv_end) {
        const std::int64_t off = std::int64_t{table[pos >> a.log2_bs]} * block_elems +
                                 std::int64_t{pos & (bs - 1)} * D + c * 8;
        cp_async16(sk + at, k_base + off);
        cp_async16(sv + at, v_base + off);
      } else {
        sk[at] = make_int4(0, 0, 0, 0);
        sv[at] = make_int4(0, 0, 0, 0);
      }
    }
  };

  float o_acc[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) o_acc[dn][0] = o_acc[dn][1] = o_acc[dn][2] = o_acc[dn][3] = 0;
  float m_r[2] = {k_neg_big, k_neg_big}, l_r[2] = {0, 0};  // rows g and g + 8 (thread-partial l)

  load_tile(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < n_kv_tiles; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < n_kv_tiles) {
      load_tile(kt + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (warp_active && kt * BK <= w_last_pos) {  // warp-uniform
      const int4* sk = smem + buf * 2 * BK * CH;
      const int4* sv = sk + BK * CH;
      float sacc[BK / 8][4];
#pragma unroll
      for (int nt = 0; nt < BK / 8; ++nt) sacc[nt][0] = sacc[nt][1] = sacc[nt][2] = sacc[nt][3] = 0;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
        for (int np = 0; np < BK / 16; ++np) {
          // matrices: (keys +0..7, chunk 2kk), (+0..7, 2kk+1), (+8..15, 2kk), (+8..15, 2kk+1)
          const int key = np * 16 + (lane >> 4) * 8 + (lane & 7);
          const int chunk = 2 * kk + ((lane >> 3) & 1);
          std::uint32_t b[4];
          ldmatrix_x4(b, sk + key * CH + (chunk ^ (key & 7)));
          mma_bf16(sacc[2 * np], qa[kk], b[0], b[1]);
          mma_bf16(sacc[2 * np + 1], qa[kk], b[2], b[3]);
        }
      }
      const int key0 = kt * BK;
      const bool need_mask = key0 + BK - 1 > w_first_pos;
#pragma unroll
      for (int nt = 0; nt < BK / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float v = sacc[nt][e] * a.scale_log2;
          if (need_mask) {
            const int key = key0 + nt * 8 + 2 * t + (e & 1);
            const int qpos = w_first_pos + g + (e >> 1) * 8;
            if (key > qpos) v = -INFINITY;
          }
          sacc[nt][e] = v;
        }
      }
      float mx[2] = {m_r[0], m_r[1]};
#pragma unroll
      for (int nt = 0; nt < BK / 8; ++nt) {
        mx[0] = fmaxf(mx[0], fmaxf(sacc[nt][0], sacc[nt][1]));
        mx[1] = fmaxf(mx[1], fmaxf(sacc[nt][2], sacc[nt][3]));
      }
      float corr[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        corr[r] = exp2f(m_r[r] - mx[r]);
        m_r[r] = mx[r];
        l_r[r] *= corr[r];
      }
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        o_acc[dn][0] *= corr[0];
        o_acc[dn][1] *= corr[0];
        o_acc[dn][2] *= corr[1];
        o_acc[dn][3] *= corr[1];
      }
#pragma unroll
      for (int nt = 0; nt < BK / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = exp2f(sacc[nt][e] - m_r[e >> 1]);
          l_r[e >> 1] += p;
          sacc[nt][e] = p;
        }
      }
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        // The S fragments of key tiles 2kk and 2kk+1 are exactly the A fragment of keys 16kk..+15.
        const std::uint32_t pa[4] = {pack_bf16x2(sacc[2 * kk][0], sacc[2 * kk][1]),
                                     pack_bf16x2(sacc[2 * kk][2], sacc[2 * kk][3]),
                                     pack_bf16x2(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]),
                                     pack_bf16x2(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          // matrices: (keys +0..7, chunk 2dp), (+8..15, 2dp), (+0..7, 2dp+1), (+8..15, 2dp+1)
          const int key = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
          const int chunk = 2 * dp + (lane >> 4);
          std::uint32_t b[4];
          ldmatrix_x4_trans(b, sv + key * CH + (chunk ^ (key & 7)));
          mma_bf16(o_acc[2 * dp], pa, b[0], b[1]);
          mma_bf16(o_acc[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // buffer buf is reloaded by the next iteration
  }

  if (warp_active) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
      l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = w_row0 + g + 8 * r;
      if (row >= n) continue;
      const float inv = 1.0f / l_r[r];
      auto* dst = reinterpret_cast<std::uint32_t*>(
          a.out + (std::int64_t{q0 + row} * a.num_q_heads + hq) * D);
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        dst[dn * 4 + t] = pack_bf16x2(o_acc[dn][2 * r] * inv, o_acc[dn][2 * r + 1] * inv);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

[[noreturn]] void invalid(const std::string& what) {
  throw std::invalid_argument("attention: " + what);
}

bool is_pow2(int x) {
  return x > 0 && (x & (x - 1)) == 0;
}

int log2_int(int x) {
  int r = 0;
  while ((1 << r) < x) ++r;
  return r;
}

using detail::aligned16;

int sm_count() {
  int dev = 0, n = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&dev));
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

void validate_cache(const paged_kv_view& kv, const char* who) {
  const std::string w = who;
  if (!kv.data) invalid(w + ": kv.data is null");
  if (!aligned16(kv.data)) invalid(w + ": kv.data is not 16-byte aligned");
  if (kv.head_dim != 64 && kv.head_dim != 128) {
    invalid(w + ": head_dim " + std::to_string(kv.head_dim) + " is not 64 or 128");
  }
  if (kv.num_kv_heads <= 0) invalid(w + ": num_kv_heads " + std::to_string(kv.num_kv_heads));
  if (!is_pow2(kv.block_size)) {
    invalid(w + ": block_size " + std::to_string(kv.block_size) + " is not a power of two");
  }
  if (kv.num_blocks <= 0) invalid(w + ": num_blocks " + std::to_string(kv.num_blocks));
}

constexpr int k_decode_threads = 128;
// Smallest automatic split. Measured on an H100, Llama-2-7B decode at batch 1, context 512: fixed
// splits of 32, 64, 128 and 256 tokens gave 5.22, 5.21, 5.23 and 5.33 ms per step.
constexpr int k_min_split_tokens = 64;

bool decode_group_supported(int group) {
  return group == 1 || group == 2 || group == 4 || group == 8;
}

// How attention(p) runs: which kernel, split size (0: none), splits per sequence, workspace.
struct attention_plan {
  bool decode = false;
  int split_tokens = 0;
  int max_splits = 0;
  std::int64_t workspace_bytes = 0;
};

attention_plan plan_of(const attention_params& p) {
  attention_plan plan;
  const auto& kv = p.kv;
  const int group = p.num_q_heads / kv.num_kv_heads;
  plan.decode = p.num_q_tokens == kv.num_seqs && decode_group_supported(group);
  if (!plan.decode) return plan;
  const std::int64_t max_ctx = std::int64_t{kv.max_blocks_per_seq} * kv.block_size;
  std::int64_t split = p.split_tokens;
  if (split == 0) {
    // Split only when (seq, kv head) CTAs would not fill the GPU with 4 per SM; the split size
    // spreads the largest possible context (the block-table capacity) over enough CTAs, rounded
    // up to 64 tokens and at least k_min_split_tokens. Depends on num_seqs (documented).
    const std::int64_t ctas = std::int64_t{kv.num_seqs} * kv.num_kv_heads;
    const std::int64_t target = 4LL * sm_count();
    if (ctas < target && max_ctx > 2 * k_min_split_tokens) {
      const std::int64_t want = (target + ctas - 1) / ctas;
      split = ((max_ctx + want - 1) / want + 63) / 64 * 64;
      if (split < k_min_split_tokens) split = k_min_split_tokens;
      if (split >= max_ctx) split = 0;
    }
  }
  if (split == 0) return plan;
  plan.split_tokens = static_cast<int>(split);
  plan.max_splits = static_cast<int>((max_ctx + split - 1) / split);
  plan.workspace_bytes = std::int64_t{kv.num_seqs} * plan.max_splits * p.num_q_heads *
                         (kv.head_dim + 1) * std::int64_t{sizeof(float)};
  return plan;
}

void validate_attention(const attention_params& p) {
  const auto& kv = p.kv;
  validate_cache(kv, "attention");
  if (!p.q || !p.out || !p.q_offsets || !kv.block_tables || !kv.seq_lens) {
    invalid("null pointer among q, out, q_offsets, block_tables, seq_lens");
  }
  if (!aligned16(p.q) || !aligned16(p.out)) invalid("q and out must be 16-byte aligned");
  if (p.num_q_heads <= 0 || p.num_q_heads % kv.num_kv_heads != 0) {
    invalid("num_q_heads " + std::to_string(p.num_q_heads) + " is not a positive multiple of " +
            "num_kv_heads " + std::to_string(kv.num_kv_heads));
  }
  if (kv.num_seqs <= 0) invalid("num_seqs " + std::to_string(kv.num_seqs));
  if (p.num_q_tokens < 0) invalid("num_q_tokens " + std::to_string(p.num_q_tokens));
  if (kv.max_blocks_per_seq <= 0) {
    invalid("max_blocks_per_seq " + std::to_string(kv.max_blocks_per_seq));
  }
  if (p.split_tokens < 0) invalid("split_tokens " + std::to_string(p.split_tokens));
  if (!(std::isfinite(p.scale) && p.scale > 0)) invalid("scale " + std::to_string(p.scale));
  if (kv.num_kv_heads > 65535) invalid("num_kv_heads " + std::to_string(kv.num_kv_heads));
  if (p.num_q_heads > 65535) invalid("num_q_heads " + std::to_string(p.num_q_heads));
}

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

template <int D>
void launch_prefill(const prefill_args& args, int num_q_tokens, cudaStream_t stream) {
  constexpr int smem = prefill_smem_bytes<D>();
  RIDGELINE_CUDA_CHECK(
      cudaFuncSetAttribute(prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const std::int64_t tiles =
      (std::int64_t{num_q_tokens} + std::int64_t{args.num_seqs} * (k_prefill_bq - 1)) /
      k_prefill_bq;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(args.num_q_heads));
  prefill_kernel<D><<<grid, 128, smem, stream>>>(args);
  RIDGELINE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void kv_append(const kv_append_params& p, cudaStream_t stream) {
  validate_cache(p.kv, "kv_append");
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

std::int64_t attention_workspace_bytes(const attention_params& p) {
  validate_attention(p);
  return plan_of(p).workspace_bytes;
}

namespace {

// Checks the split workspace and counters that plan needs; returns the decode kernel's arguments
// (everything but the Rope prologue's fields).
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

void check_split_buffers(const attention_params& p, const attention_plan& plan) {
  if (plan.workspace_bytes == 0) return;
  if (!p.workspace || p.workspace_bytes < plan.workspace_bytes) {
    invalid("workspace of " + std::to_string(p.workspace_bytes) + " bytes at " +
            (p.workspace ? "non-null" : "null") + " pointer; this call needs " +
            std::to_string(plan.workspace_bytes) + " (split_tokens " +
            std::to_string(plan.split_tokens) + ", " + std::to_string(plan.max_splits) +
            " splits per sequence)");
  }
  if (plan.max_splits > 65535) invalid("splits per sequence " + std::to_string(plan.max_splits));
  if (!p.split_counters) {
    invalid("null split_counters: this call splits (split_tokens " +
            std::to_string(plan.split_tokens) + ") and needs num_seqs x num_kv_heads zeroed ints");
  }
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

}  // namespace

void attention(const attention_params& p, cudaStream_t stream, bool pdl) {
  validate_attention(p);
  const auto& kv = p.kv;
  const attention_plan plan = plan_of(p);
  check_split_buffers(p, plan);
  if (p.num_q_tokens == 0) return;
  if (plan.decode) {
    return launch_decode_any<false>(decode_args_for(p, plan), p, plan, stream, pdl);
  }
  const prefill_args args{p.q,
                          p.out,
                          p.q_offsets,
                          kv.data,
                          kv.block_tables,
                          kv.seq_lens,
                          kv.num_seqs,
                          p.num_q_heads,
                          kv.num_kv_heads,
                          log2_int(kv.block_size),
                          kv.max_blocks_per_seq,
                          p.scale * k_log2e};
  if (kv.head_dim == 64) {
    launch_prefill<64>(args, p.num_q_tokens, stream);
  } else {
    launch_prefill<128>(args, p.num_q_tokens, stream);
  }
}

namespace {

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

bool rope_append_attention_fuses(const qkv_rope_append_params& pre, const attention_params& p) {
  validate_attention(p);
  return fusable(pre, p, plan_of(p));
}

void rope_append_attention(const qkv_rope_append_params& pre, const attention_params& p,
                           cudaStream_t stream, bool pdl) {
  validate_attention(p);
  const attention_plan plan = plan_of(p);
  if (!fusable(pre, p, plan)) {
    qkv_rope_append(pre, stream, pdl);
    attention(p, stream, pdl);
    return;
  }
  rope_params r = pre.rope;
  r.q = pre.q;
  const detail::rope_args rope = detail::make_rope_args(r, "rope_append_attention");
  check_split_buffers(p, plan);
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
