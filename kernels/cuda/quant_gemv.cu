// Quantized decode GEMV / skinny GEMM (quant_gemv.hpp): y[t][r] = sum_c x[t][c] W[r][c] with W in
// the packed layout of ridgeline/kernels/quant_packed.hpp, 1 ... 64 tokens.
//
// Who does what. A CTA is 8 warps sharing a "unit" of 2 row tiles (32 output rows); warp w owns
// the w-th eighth of the weight chunks along k (a chunk: 16 rows x 64 columns of int4, or x 32 of
// int8/fp8, one 16-byte load per lane). The grid is persistent, one wave (1 CTA per SM by
// default), each CTA walking units_per_cta units one after the other; a warp's copy stream runs
// on from one unit into the next. Per warp, a ring of S shared-memory stages is filled with
// cp.async by the warp itself (per stage and row tile: every lane's 16 weight bytes, with an L2
// evict-first hint, and 8-byte copies of the chunk's block scales (lanes 0-15) and zero points
// (lanes 16-17)); S - 1 chunks are in flight per warp (S = 8: 7 x 1 KB x 8 warps = 56 KB per SM),
// with no block-wide barrier on the streaming path, only cp.async.wait_group and __syncwarp.
// Each lane converts its 8 weights per mma k step to bf16 in registers (quant_packed.hpp's bit
// tricks) and issues mma.sync.m16n8k16 with the weights as A (16 rows) and the activations as B
// (8 tokens per mma; NT = 1, 2, 4 or 8 mmas for up to 8, 16, 32, 64 tokens), read with 16-byte
// loads thanks to the layout's column permutation, one chunk ahead up to 16 tokens.
// Grouped kinds sum the blocks of a group (at most 128 columns at a time) in fp32 fragments
// (exact products: q - z and the int8 codes are small integers) and add scale * sum to the
// accumulator; channel kinds scale once at the end. The 8 warps' partial sums meet in shared
// memory in a fixed tree (w += w + 4, w += w + 2, w += w + 1), so an output's arithmetic depends
// on neither the launch options nor the other tokens: a token's row is the same bits alone or in
// a batch, except that int4 rows differ in rounding between <= 16 and > 16 tokens (two ways of
// subtracting the zero point, see compute_chunk).
//
// Programmatic dependent launch: the kernel lets the next one be scheduled at once, issues its
// first S - 1 stages of weights, then waits (griddepcontrol.wait) before reading x or writing y.
// With 1 CTA per SM the next kernel's CTA fits beside it and streams its first stages early.
//
// Napkin math (H100, 3.13 TB/s read ceiling): a Llama-2-7B block's four layers in int4 (group
// 128) are 108.3 MB (weights 101.2 + fp32 scales 6.3 + zeros 0.8): 34.6 us, 13.5 bytes per clock
// per SM, i.e. one warp iteration (2 tiles x 512 bytes) per 76 clocks per SM. An iteration is
// ~56 integer ops for the 64 nibbles a lane converts, 8 + 8 mmas (weights and zero points, up to
// 8 tokens), the group scales (~8 fmas per group of 128 columns) and ~50 for copies, loads and
// bookkeeping: ~130 instructions, under 2 of the 4 issue slots per clock. int8/fp8 move 1 byte
// per weight, so the same bytes are half the work.
// At 64 tokens the block needs 26 GFLOP: tensor-bound on mma.sync (docs/kernels.md).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention_common.cuh"
#include "check.hpp"
#include "device_utils.cuh"
#include "quant_gemv.hpp"

namespace ridgeline::cuda {
namespace {

using K = packed_quant_kind;

constexpr int k_warps = 8;
constexpr int k_threads = k_warps * 32;
constexpr int k_mt = 2;                   // row tiles per unit (32 rows)
constexpr int k_red_slots = k_warps / 2;  // partial sums parked at once by the reduction tree

struct kargs {
  const std::uint8_t* w;      // [row_tiles][chunks][32][16]
  const float* scales;        // grouped: [row_tiles][groups][8][2]; channel: [row_tiles][8][2]
  const std::uint8_t* zeros;  // int4: [row_tiles][groups][8]
  const bf16_bits* x;         // [tokens][cols]
  void* y;                    // [tokens][rows]
  int tokens, rows, cols, row_tiles, chunks, blocks, groups;
  std::uint64_t group_magic;  // ceil(2^32 / (group_size / 32)): block -> group by a multiply
  int units, units_per_cta;
  bool y_fp32;
};

template <K Kind>
struct fmt {
  static constexpr int blocks = Kind == K::int4_group ? 2 : 1;  // 32-column blocks per chunk
  static constexpr bool grouped = packed_is_grouped(Kind);
  static constexpr bool zeros = Kind == K::int4_group;
  // Per block of a stage: 8 x (s[row g], s[row g + 8]) and, for int4, the 8 zero bytes (+ pad).
  static constexpr int meta_block_bytes = grouped ? (zeros ? 80 : 64) : 0;
  static constexpr int tile_bytes = k_pack_chunk_bytes + blocks * meta_block_bytes;
  static_assert(tile_bytes % 16 == 0, "16-byte aligned weight slots");
};

template <K Kind, int S>
constexpr int ring_bytes() {
  return k_warps * S * k_mt * fmt<Kind>::tile_bytes;
}
template <int NT>
constexpr int red_bytes() {
  return k_red_slots * k_mt * NT * 4 * 32 * 4;
}

__device__ __forceinline__ std::uint32_t hfma2_bf16(std::uint32_t a, std::uint32_t b,
                                                    std::uint32_t c) {
  std::uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ std::uint32_t word_of(const uint4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

// Predicated copies (no branch): nothing is copied when on is false.
__device__ __forceinline__ void cp_async_16_evict_first(std::uint32_t dst, const void* src, bool on,
                                                        std::uint64_t policy) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n"
      "@p cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %3;\n}\n" ::"r"(dst),
      "l"(src), "r"(static_cast<int>(on)), "l"(policy)
      : "memory");
}
__device__ __forceinline__ void cp_async_8(std::uint32_t dst, const void* src, bool on) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n"
      "@p cp.async.ca.shared.global [%0], [%1], 8;\n}\n" ::"r"(dst),
      "l"(src), "r"(static_cast<int>(on))
      : "memory");
}

__device__ __forceinline__ int group_of(int block, std::uint64_t magic) {
  return static_cast<int>((static_cast<std::uint64_t>(block) * magic) >> 32);
}

// What one lane copies of each chunk's metadata (grouped kinds): lanes 8h ... 8h + 7 the scale
// pair of rows (g', g' + 8), g' = lane % 8, of block h; for int4, lane 8B + h the 8 zero bytes of
// block h. Other lanes copy none. Fixed per lane for the whole kernel.
struct meta_role {
  bool on = false;
  int block = 0;                      // which block of the chunk
  std::uint32_t dst = 0;              // offset in a tile's stage slot
  const std::uint8_t* src = nullptr;  // group 0 of tile 0 (the scales for lanes that copy none)
  std::size_t group_stride = 0, tile_stride = 0;  // bytes
};

template <K Kind>
__device__ __forceinline__ meta_role meta_role_of(const kargs& a, int lane) {
  using F = fmt<Kind>;
  meta_role r;
  r.src = reinterpret_cast<const std::uint8_t*>(a.scales);
  if constexpr (F::grouped) {
    if (lane < 8 * F::blocks) {
      r.on = true;
      r.block = lane >> 3;
      r.dst = k_pack_chunk_bytes + r.block * F::meta_block_bytes + (lane & 7) * 8;
      r.src = reinterpret_cast<const std::uint8_t*>(a.scales) + (lane & 7) * 8;
      r.group_stride = 64;
    } else if (F::zeros && lane < 9 * F::blocks) {
      r.on = true;
      r.block = lane - 8 * F::blocks;
      r.dst = k_pack_chunk_bytes + r.block * F::meta_block_bytes + 64;
      r.src = a.zeros;
      r.group_stride = 8;
    }
    r.tile_stride = r.group_stride * static_cast<std::size_t>(a.groups);
  }
  return r;
}

// Copies one chunk of a unit's two row tiles and its metadata into the stage at shared address
// st: one 16-byte weight copy per tile and lane (w_off: the lane's bytes of the first tile), at
// most one 8-byte metadata copy per tile and lane (m_off: the first tile's group 0 for this lane's
// role). second: the unit's second tile exists. Offsets, not pointers, so that no address past
// the matrix is ever formed.
template <K Kind>
__device__ __forceinline__ void issue_chunk(const kargs& a, const meta_role& mr, std::uint32_t st,
                                            int c, bool second, std::size_t w_off,
                                            std::size_t m_off, int lane, std::uint64_t policy) {
  using F = fmt<Kind>;
  const std::size_t tile_w = static_cast<std::size_t>(a.chunks) * k_pack_chunk_bytes;
  cp_async_16_evict_first(st + lane * 16, a.w + w_off, true, policy);
  cp_async_16_evict_first(st + F::tile_bytes + lane * 16, a.w + w_off + (second ? tile_w : 0),
                          second, policy);
  if constexpr (F::grouped) {
    const int blk = c * F::blocks + mr.block;
    const bool on = mr.on && blk < a.blocks;
    const std::size_t off =
        on ? m_off + static_cast<std::size_t>(group_of(blk, a.group_magic)) * mr.group_stride : 0;
    cp_async_8(st + mr.dst, mr.src + off, on);
    cp_async_8(st + F::tile_bytes + mr.dst, mr.src + off + (on && second ? mr.tile_stride : 0),
               on && second);
  }
}

// Lane (g, t)'s activations of chunk c: per block h and token tile n, x[8n + g][32 blk + 8t ...
// + 8) (zero past the tokens or the last block).
template <K Kind, int NT>
__device__ __forceinline__ void load_x(const kargs& a, int c, int g, int t,
                                       uint4 (&xf)[fmt<Kind>::blocks][NT]) {
#pragma unroll
  for (int h = 0; h < fmt<Kind>::blocks; ++h) {
    const int blk = c * fmt<Kind>::blocks + h;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const int tok = 8 * n + g;
      if (tok < a.tokens && blk < a.blocks) {
        xf[h][n] =
            __ldg(reinterpret_cast<const uint4*>(a.x + static_cast<std::size_t>(tok) * a.cols +
                                                 static_cast<std::size_t>(blk) * 32 + 8 * t));
      } else {
        xf[h][n] = make_uint4(0u, 0u, 0u, 0u);
      }
    }
  }
}

// One block's activations (load_x's h-th row): lane (g, t) gets x[8n + g][32 blk + 8t ... + 8).
template <int NT>
__device__ __forceinline__ void load_x_block(const kargs& a, int blk, int g, int t,
                                             uint4 (&xb)[NT]) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    const int tok = 8 * n + g;
    xb[n] =
        tok < a.tokens
            ? __ldg(reinterpret_cast<const uint4*>(a.x + static_cast<std::size_t>(tok) * a.cols +
                                                   static_cast<std::size_t>(blk) * 32 + 8 * t))
            : make_uint4(0u, 0u, 0u, 0u);
  }
}

// The A fragment (16 rows x 16 columns as bf16x2 registers) of k step s in block h of a lane's
// 16-byte chunk word; nz0 / nz1: -(128 + z) of rows g / g + 8 (int4 only).
template <K Kind>
__device__ __forceinline__ void decode(const uint4& w, int h, int s, std::uint32_t nz0,
                                       std::uint32_t nz1, std::uint32_t (&af)[4]) {
  if constexpr (Kind == K::int4_group) {
    const std::uint32_t word = word_of(w, 2 * h + s);
    af[0] = hfma2_bf16(int4_pair_biased(word, 0), k_bf16x2_one, nz0);
    af[1] = hfma2_bf16(int4_pair_biased(word, 1), k_bf16x2_one, nz1);
    af[2] = hfma2_bf16(int4_pair_biased(word, 2), k_bf16x2_one, nz0);
    af[3] = hfma2_bf16(int4_pair_biased(word, 3), k_bf16x2_one, nz1);
  } else {
    const std::uint32_t w0 = word_of(w, 2 * s), w1 = word_of(w, 2 * s + 1);
    const std::uint32_t v[4] = {w0, w0 >> 8, w1, w1 >> 8};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (Kind == K::fp8_channel) {
        af[i] = hfma2_bf16(fp8_pair_shifted(v[i]), k_bf16x2_two_pow_120, k_bf16x2_neg_zero);
      } else {
        af[i] = hfma2_bf16(int8_pair_biased(v[i]), k_bf16x2_one, int8_pair_neg_bias(v[i]));
      }
    }
  }
}

// Running sums of the grouped kinds: the blocks of one group accumulate in part (fp32 mma
// fragments) with the group's scales and zero points held in registers; flush adds scale * part
// to acc. A flush comes at a group change, after k_merge_blocks blocks (so that rounding stays
// bounded whatever the group size) and at the end of a unit: where depends only on the warp's
// slice of the columns, never on the tokens or the launch options.
constexpr int k_merge_blocks = 4;  // 128 columns

template <int NT>
struct group_sums {
  float part[k_mt][NT][4];
  float2 scale[k_mt];
  std::uint32_t nz0[k_mt], nz1[k_mt];  // int4: -(128 + z) of rows g and g + 8
  int group = -1;                      // of the blocks in part; -1 before the first
  int blocks = 0;                      // summed in part since the last flush
};

template <int NT>
__device__ __forceinline__ void clear(group_sums<NT>& gs) {
#pragma unroll
  for (int m = 0; m < k_mt; ++m) {
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int r = 0; r < 4; ++r) gs.part[m][n][r] = 0.0f;
    }
  }
  gs.blocks = 0;
}

template <int NT>
__device__ __forceinline__ void flush(group_sums<NT>& gs, float (&acc)[k_mt][NT][4]) {
#pragma unroll
  for (int m = 0; m < k_mt; ++m) {
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      acc[m][n][0] = fmaf(gs.scale[m].x, gs.part[m][n][0], acc[m][n][0]);
      acc[m][n][1] = fmaf(gs.scale[m].x, gs.part[m][n][1], acc[m][n][1]);
      acc[m][n][2] = fmaf(gs.scale[m].y, gs.part[m][n][2], acc[m][n][2]);
      acc[m][n][3] = fmaf(gs.scale[m].y, gs.part[m][n][3], acc[m][n][3]);
    }
  }
  clear(gs);
}

// One chunk of the unit (stage at generic shared pointer st) into gs (grouped kinds) or acc.
// int4 up to 16 tokens (NT <= 2) leaves the zero point out of the conversion: a block's sum is
// mma((128 + q), x) + mma(-(128 + z), x), the second A fragment holding -(128 + z) of each row in
// every column, so the 8 fma.rn.bf16x2 per row tile and block become 2 NT mmas (the tensor cores
// have room at <= 16 tokens, the issue slots do not). Exact for one-hot x; otherwise the two
// sums, each up to ~143 |x| per column, round apart: within ~2^-14 of s * sum |x| over the (at
// most 128) columns summed between flushes.
// xf: the chunk's activations when loaded ahead (x_ahead); else each block's are loaded here.
template <K Kind, int NT, bool XAhead>
__device__ __forceinline__ void compute_chunk(const kargs& a, const unsigned char* st, int tile0,
                                              int c, int lane,
                                              const uint4 (&xf)[fmt<Kind>::blocks][NT],
                                              group_sums<NT>& gs, float (&acc)[k_mt][NT][4]) {
  using F = fmt<Kind>;
  constexpr bool zero_by_mma = F::zeros && NT <= 2;
  const int g = lane >> 2, t = lane & 3;
  bool tile_ok[k_mt];
  uint4 wv[k_mt];
#pragma unroll
  for (int m = 0; m < k_mt; ++m) {
    tile_ok[m] = tile0 + m < a.row_tiles;
    wv[m] = tile_ok[m] ? *reinterpret_cast<const uint4*>(st + m * F::tile_bytes + lane * 16)
                       : make_uint4(0u, 0u, 0u, 0u);
  }
#pragma unroll
  for (int h = 0; h < F::blocks; ++h) {
    const int blk = c * F::blocks + h;
    if (blk >= a.blocks) continue;  // int4: a row's odd last block
    uint4 xb[NT];
    if constexpr (XAhead) {
#pragma unroll
      for (int n = 0; n < NT; ++n) xb[n] = xf[h][n];
    } else {
      load_x_block<NT>(a, blk, g, t, xb);
    }
    if constexpr (F::grouped) {
      const int group = group_of(blk, a.group_magic);
      if (group != gs.group) {
        if (gs.blocks > 0) flush(gs, acc);
        gs.group = group;
#pragma unroll
        for (int m = 0; m < k_mt; ++m) {
          const unsigned char* meta =
              st + m * F::tile_bytes + k_pack_chunk_bytes + h * F::meta_block_bytes;
          gs.scale[m] =
              tile_ok[m] ? *reinterpret_cast<const float2*>(meta + g * 8) : make_float2(0.0f, 0.0f);
          if constexpr (F::zeros) {
            const std::uint32_t zb = tile_ok[m] ? meta[64 + g] : 0u;
            gs.nz0[m] = int4_neg_bias(zb & 0xFu);
            gs.nz1[m] = int4_neg_bias(zb >> 4);
          }
        }
      } else if (gs.blocks == k_merge_blocks) {
        flush(gs, acc);
      }
    }
#pragma unroll
    for (int m = 0; m < k_mt; ++m) {
      if (!tile_ok[m]) continue;
      std::uint32_t nz0 = 0, nz1 = 0;
      if constexpr (F::zeros) {
        nz0 = gs.nz0[m];
        nz1 = gs.nz1[m];
      }
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        std::uint32_t af[4];
        if constexpr (zero_by_mma) {
          const std::uint32_t word = word_of(wv[m], 2 * h + s);
#pragma unroll
          for (int p = 0; p < 4; ++p) af[p] = int4_pair_biased(word, p);
        } else {
          decode<Kind>(wv[m], h, s, nz0, nz1, af);
        }
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          float(&d)[4] = F::grouped ? gs.part[m][n] : acc[m][n];
          detail::mma_bf16(d, af, word_of(xb[n], 2 * s), word_of(xb[n], 2 * s + 1));
        }
        if constexpr (zero_by_mma) {
          const std::uint32_t az[4] = {nz0, nz1, nz0, nz1};
#pragma unroll
          for (int n = 0; n < NT; ++n) {
            detail::mma_bf16(gs.part[m][n], az, word_of(xb[n], 2 * s), word_of(xb[n], 2 * s + 1));
          }
        }
      }
    }
    if constexpr (F::grouped) ++gs.blocks;
  }
}

// Sums the 8 warps' acc into warp 0's in a fixed tree; every thread of the CTA must call it.
template <int NT>
__device__ __forceinline__ void reduce_warps(float (&acc)[k_mt][NT][4], float* red, int warp,
                                             int lane) {
  constexpr int per = k_mt * NT * 4;
#pragma unroll
  for (int half = k_warps / 2; half >= 1; half /= 2) {
    if (warp >= half && warp < 2 * half) {
      float* slot = red + (warp - half) * per * 32;
#pragma unroll
      for (int m = 0; m < k_mt; ++m) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
          for (int r = 0; r < 4; ++r) slot[((m * NT + n) * 4 + r) * 32 + lane] = acc[m][n][r];
        }
      }
    }
    __syncthreads();
    if (warp < half) {
      const float* slot = red + warp * per * 32;
#pragma unroll
      for (int m = 0; m < k_mt; ++m) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
          for (int r = 0; r < 4; ++r) acc[m][n][r] += slot[((m * NT + n) * 4 + r) * 32 + lane];
        }
      }
    }
    __syncthreads();
  }
}

__device__ __forceinline__ void store_one(const kargs& a, int tok, int row, float v) {
  if (tok >= a.tokens || row >= a.rows) return;
  const std::size_t at = static_cast<std::size_t>(tok) * a.rows + row;
  if (a.y_fp32)
    static_cast<float*>(a.y)[at] = v;
  else
    static_cast<__nv_bfloat16*>(a.y)[at] = __float2bfloat16_rn(v);
}

// grid: ceil(units / units_per_cta) CTAs of 8 warps; dynamic shared memory: ring + reduction.
// Up to 16 tokens at most 128 registers a thread, so that two CTAs fit an SM (this kernel's and,
// under PDL, the next one's).
// grid: ceil(units / units_per_cta) CTAs of 8 warps; dynamic shared memory: ring + reduction.
template <K Kind, int NT, int S>
__global__ void __launch_bounds__(k_threads, NT <= 2 ? 2 : 1) quant_gemv_kernel(const kargs a) {
  using F = fmt<Kind>;
  constexpr int B = F::blocks;
  constexpr bool x_ahead = NT <= 2;  // activations one chunk ahead (registers allow it)
  constexpr int stage_bytes = k_mt * F::tile_bytes;
  static_assert((S & (S - 1)) == 0 && S >= 2, "a power-of-two ring");
  extern __shared__ __align__(16) unsigned char smem[];
  detail::pdl_trigger();  // the next kernel may be scheduled now (it waits for this grid)

  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const unsigned char* ring = smem + warp * S * stage_bytes;
  const std::uint32_t ring_s = detail::smem_addr(ring);
  float* red = reinterpret_cast<float*>(smem + ring_bytes<Kind, S>());

  const int c_begin = warp * a.chunks / k_warps, c_end = (warp + 1) * a.chunks / k_warps;
  const int nc = c_end - c_begin;
  const int u_begin = static_cast<int>(blockIdx.x) * a.units_per_cta;
  const int n_units = min(a.units_per_cta, a.units - u_begin);
  const int total = n_units * nc;  // this warp's chunk items, unit-major

  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  const meta_role mr = meta_role_of<Kind>(a, lane);
  // Issue cursor: the next item is chunk ic of unit iu; items go out strictly in order. w_off /
  // m_off: the lane's weight bytes of (first tile of iu, chunk ic) and its metadata base of that
  // tile, advanced as the cursor moves.
  int iu = u_begin, ic = c_begin;
  const std::size_t tile_w = static_cast<std::size_t>(a.chunks) * k_pack_chunk_bytes;
  std::size_t w_off = static_cast<std::size_t>(u_begin) * k_mt * tile_w +
                      static_cast<std::size_t>(c_begin) * k_pack_chunk_bytes + lane * 16;
  std::size_t m_off = static_cast<std::size_t>(u_begin) * k_mt * mr.tile_stride;
  auto issue_next = [&](int j) {
    if (j < total) {
      issue_chunk<Kind>(a, mr, ring_s + (j & (S - 1)) * stage_bytes, ic,
                        iu * k_mt + 1 < a.row_tiles, w_off, m_off, lane, policy);
      w_off += k_pack_chunk_bytes;
      if (++ic == c_end) {
        ic = c_begin;
        ++iu;
        w_off += k_mt * tile_w - static_cast<std::size_t>(nc) * k_pack_chunk_bytes;
        m_off += k_mt * mr.tile_stride;
      }
    }
    detail::cp_async_commit();  // one group per item (empty past the end) keeps the count fixed
  };
#pragma unroll
  for (int j = 0; j < S - 1; ++j) issue_next(j);
  detail::pdl_wait();  // x is the previous kernel's output; y may still be read by it

  uint4 xa[B][NT], xb[B][NT];  // x_ahead: the current chunk's activations and the next's
  if constexpr (x_ahead) {
    if (total > 0) load_x<Kind, NT>(a, c_begin, g, t, xa);
  }
  int i = 0;  // item being computed
  for (int uu = 0; uu < n_units; ++uu) {
    const int tile0 = (u_begin + uu) * k_mt;
    float2 channel_scale[k_mt];
    if constexpr (!F::grouped) {
      // Loaded now so the epilogue does not wait on DRAM.
#pragma unroll
      for (int m = 0; m < k_mt; ++m) {
        channel_scale[m] =
            warp == 0 && tile0 + m < a.row_tiles
                ? __ldg(reinterpret_cast<const float2*>(a.scales) + (tile0 + m) * 8 + g)
                : make_float2(0.0f, 0.0f);
      }
    }
    float acc[k_mt][NT][4];
#pragma unroll
    for (int m = 0; m < k_mt; ++m) {
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[m][n][r] = 0.0f;
      }
    }
    group_sums<NT> gs;  // a new unit: new tiles, no group yet
    clear(gs);
    // Item i = chunk c_begin + e of this unit; cur holds its activations (x_ahead), nxt gets the
    // next item's.
    auto step = [&](int e, uint4(&cur)[B][NT], uint4(&nxt)[B][NT]) {
      detail::cp_async_wait<S - 2>();  // item i has landed (this lane's copies)
      __syncwarp();                    // ... and every lane's; every lane is done with item i - 1
      issue_next(i + S - 1);           // into the stage item i - 1 used
      const int c = c_begin + e;
      if constexpr (x_ahead) {
        if (i + 1 < total) load_x<Kind, NT>(a, e + 1 < nc ? c + 1 : c_begin, g, t, nxt);
      }
      compute_chunk<Kind, NT, x_ahead>(a, ring + (i & (S - 1)) * stage_bytes, tile0, c, lane, cur,
                                       gs, acc);
      ++i;
    };
    int e = 0;
    for (; e + 1 < nc; e += 2) {
      step(e, xa, xb);
      step(e + 1, xb, xa);
    }
    if (e < nc) {
      step(e, xa, xb);
      if constexpr (x_ahead) {  // the next unit starts from xa
#pragma unroll
        for (int h = 0; h < B; ++h) {
#pragma unroll
          for (int n = 0; n < NT; ++n) xa[h][n] = xb[h][n];
        }
      }
    }
    if constexpr (F::grouped) {
      if (gs.blocks > 0) flush(gs, acc);
    }
    reduce_warps<NT>(acc, red, warp, lane);
    if (warp == 0) {
#pragma unroll
      for (int m = 0; m < k_mt; ++m) {
        const int tile = tile0 + m;
        if (tile >= a.row_tiles) continue;
        float s0 = 1.0f, s1 = 1.0f;
        if constexpr (!F::grouped) {
          s0 = channel_scale[m].x;
          s1 = channel_scale[m].y;
        }
        const int r0 = tile * 16 + g;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int tok = 8 * n + 2 * t;
          store_one(a, tok, r0, acc[m][n][0] * s0);
          store_one(a, tok + 1, r0, acc[m][n][1] * s0);
          store_one(a, tok, r0 + 8, acc[m][n][2] * s1);
          store_one(a, tok + 1, r0 + 8, acc[m][n][3] * s1);
        }
      }
    }
  }
  detail::cp_async_wait<0>();  // only empty groups can be left; leave none behind
}

using kernel_fn = void (*)(kargs);

struct variant {
  kernel_fn fn;
  int nt, stages, smem;
};

template <K Kind, int NT, int S>
variant make_variant() {
  return {quant_gemv_kernel<Kind, NT, S>, NT, S, ring_bytes<Kind, S>() + red_bytes<NT>()};
}

// Compiled: 8 stages for 8 ... 64 tokens per mma; 4 and 16 too for up to 8 tokens (tuning).
template <K Kind>
variant pick(int nt, int stages) {
  if (nt == 1) {
    if (stages == 4) return make_variant<Kind, 1, 4>();
    return stages == 16 ? make_variant<Kind, 1, 16>() : make_variant<Kind, 1, 8>();
  }
  if (nt == 2) return make_variant<Kind, 2, 8>();
  if (nt == 4) return make_variant<Kind, 4, 8>();
  return make_variant<Kind, 8, 8>();
}

variant pick(K kind, int nt, int stages) {
  switch (kind) {
    case K::int4_group:
      return pick<K::int4_group>(nt, stages);
    case K::int8_group:
      return pick<K::int8_group>(nt, stages);
    case K::int8_channel:
      return pick<K::int8_channel>(nt, stages);
    case K::fp8_channel:
      return pick<K::fp8_channel>(nt, stages);
  }
  throw std::invalid_argument("quant_gemv: unknown packed kind");
}

const char* kind_name(K k) {
  switch (k) {
    case K::int4_group:
      return "int4_group";
    case K::int8_group:
      return "int8_group";
    case K::int8_channel:
      return "int8_channel";
    case K::fp8_channel:
      return "fp8_channel";
  }
  return "unknown";
}

void validate(const quant_linear_params& p, const quant_gemv_options& o) {
  const packed_quant_view& w = p.w;
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(
        "quant_gemv: " + why + " (" + kind_name(w.kind) + " [" + std::to_string(w.rows) + "][" +
        std::to_string(w.cols) + "] group " + std::to_string(w.group_size) + ", tokens " +
        std::to_string(p.num_tokens) + ", stages " + std::to_string(o.stages) + ", ctas_per_sm " +
        std::to_string(o.ctas_per_sm) + ")");
  };
  if (w.kind != K::int4_group && w.kind != K::int8_group && w.kind != K::int8_channel &&
      w.kind != K::fp8_channel) {
    fail("unknown packed kind");
  }
  if (!p.y || !w.data || !w.scales || !p.x) fail("null pointer");
  if (w.kind == K::int4_group && !w.zeros) fail("int4_group needs zero points");
  if (p.num_tokens < 1 || p.num_tokens > k_quant_gemv_max_tokens) {
    fail("tokens must be 1 ... " + std::to_string(k_quant_gemv_max_tokens));
  }
  if (w.rows < 1 || w.cols < k_pack_block_cols || w.cols % k_pack_block_cols != 0 ||
      w.cols >= k_pack_max_cols) {
    fail("rows must be >= 1 and cols a multiple of 32 below 2^21");
  }
  if (packed_is_grouped(w.kind) &&
      (w.group_size < k_pack_block_cols || w.group_size % k_pack_block_cols != 0 ||
       w.cols % w.group_size != 0)) {
    fail("group_size must be a multiple of 32 dividing cols");
  }
  auto misaligned = [](const void* ptr, std::uintptr_t n) {
    return reinterpret_cast<std::uintptr_t>(ptr) % n != 0;
  };
  if (misaligned(p.x, 16) || misaligned(w.data, 16) || misaligned(w.scales, 8) ||
      (w.zeros && misaligned(w.zeros, 8)) || misaligned(p.y, p.y_fp32 ? 4 : 2)) {
    fail("x and data must be 16-byte aligned, scales and zeros 8-byte aligned");
  }
  if (o.stages != 0 && o.stages != 4 && o.stages != 8 && o.stages != 16) {
    fail("stages must be 0, 4, 8 or 16");
  }
  if ((o.stages == 4 || o.stages == 16) && p.num_tokens > 8) {
    fail("4 and 16 stages are compiled for up to 8 tokens");
  }
  if (o.ctas_per_sm < 0 || o.ctas_per_sm > 2) fail("ctas_per_sm must be 0, 1 or 2");
}

// The matrix fields of the kernel arguments.
kargs matrix_args(const packed_quant_view& w) {
  kargs a{};
  a.w = w.data;
  a.scales = w.scales;
  a.zeros = w.zeros;
  a.rows = w.rows;
  a.cols = w.cols;
  a.row_tiles = w.row_tiles();
  a.chunks = w.chunks();
  a.blocks = w.cols / k_pack_block_cols;
  a.groups = w.groups();
  const std::uint64_t blocks_per_group =
      packed_is_grouped(w.kind) ? static_cast<std::uint64_t>(w.group_size / k_pack_block_cols) : 1;
  a.group_magic = ((std::uint64_t{1} << 32) + blocks_per_group - 1) / blocks_per_group;
  return a;
}

int tokens_per_mma(int tokens) {
  return tokens <= 8 ? 8 : tokens <= 16 ? 16 : tokens <= 32 ? 32 : 64;
}

struct launch_plan {
  variant v;
  quant_gemv_config config;
  kargs args;
};

launch_plan plan_of(const quant_linear_params& p, quant_gemv_plans& plans,
                    const quant_gemv_options& o) {
  validate(p, o);
  const packed_quant_view& w = p.w;
  const int nt = tokens_per_mma(p.num_tokens) / 8;
  const int stages = o.stages == 0 ? 8 : o.stages;
  launch_plan lp{pick(w.kind, nt, stages), {}, {}};
  const quant_gemv_plans::entry& e = plans.get(w.kind, 8 * nt, stages);
  kargs& a = lp.args;
  a = matrix_args(w);
  a.x = p.x;
  a.y = p.y;
  a.tokens = p.num_tokens;
  a.units = (a.row_tiles + k_mt - 1) / k_mt;
  // A persistent grid that fits at once (more CTAs than fit would run in waves).
  const int slots = e.sms * std::min(e.resident, o.ctas_per_sm == 0 ? 1 : o.ctas_per_sm);
  a.units_per_cta = (a.units + slots - 1) / slots;
  a.y_fp32 = p.y_fp32;
  quant_gemv_config& c = lp.config;
  c.tokens_per_mma = 8 * nt;
  c.rows_per_unit = k_mt * k_pack_tile_rows;
  c.stages = stages;
  c.units_per_cta = a.units_per_cta;
  c.ctas = (a.units + a.units_per_cta - 1) / a.units_per_cta;
  c.smem_bytes = lp.v.smem;
  return lp;
}

}  // namespace

const quant_gemv_plans::entry& quant_gemv_plans::get(packed_quant_kind kind, int tokens_per_mma,
                                                     int stages) {
  int device = 0;
  RIDGELINE_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_tuple(device, static_cast<int>(kind), tokens_per_mma, stages);
  if (auto it = m_entries.find(key); it != m_entries.end()) return it->second;
  const variant v = pick(kind, tokens_per_mma / 8, stages);
  entry e;
  RIDGELINE_CUDA_CHECK(cudaDeviceGetAttribute(&e.sms, cudaDevAttrMultiProcessorCount, device));
  // The kernel's shared memory, and the largest carveout so that a second CTA (the next kernel's
  // under PDL) can share the SM.
  RIDGELINE_CUDA_CHECK(
      cudaFuncSetAttribute(v.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, v.smem));
  RIDGELINE_CUDA_CHECK(cudaFuncSetAttribute(v.fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                            cudaSharedmemCarveoutMaxShared));
  RIDGELINE_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&e.resident, v.fn, k_threads, v.smem));
  if (e.resident < 1) {
    throw std::runtime_error("quant_gemv: a CTA of " + std::to_string(k_threads) + " threads and " +
                             std::to_string(v.smem) +
                             " bytes of shared memory does not fit an SM of this device");
  }
  return m_entries.emplace(key, e).first->second;
}

quant_gemv_config quant_gemv_plan(const quant_linear_params& p, quant_gemv_plans& plans,
                                  const quant_gemv_options& o) {
  return plan_of(p, plans, o).config;
}

void quant_gemv(const quant_linear_params& p, quant_gemv_plans& plans, cudaStream_t s,
                const quant_gemv_options& o) {
  const launch_plan lp = plan_of(p, plans, o);
  launch_kernel(lp.v.fn, dim3(lp.config.ctas), dim3(k_threads), lp.v.smem, s, o.pdl, lp.args);
}

}  // namespace ridgeline::cuda
