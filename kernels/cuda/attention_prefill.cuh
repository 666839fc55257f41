// The prefill attention kernel (see attention.hpp): any number of query tokens per sequence,
// causal, FlashAttention-2 style on tensor cores (mma.sync m16n8k16 bf16) over the paged cache
//   data[block][0 = K, 1 = V][kv_head][slot][head_dim]   (bf16)
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

namespace ridgeline::cuda {
namespace {

using namespace detail;  // attention_common.cuh's helpers, smem_addr

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

namespace detail {

void launch_attention_prefill(const attention_params& p, cudaStream_t stream) {
  const auto& kv = p.kv;
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

}  // namespace detail
}  // namespace ridgeline::cuda
