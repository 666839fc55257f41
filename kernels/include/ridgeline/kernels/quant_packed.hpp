// The GPU layout of a quantized weight matrix ("packed"), read by the quantized GEMV / skinny GEMM
// (kernels/cuda/quant_gemv.cu) and written at load time from quant.hpp's formats by the repacker
// (quant_pack.hpp). This header is C++17 and CUDA-clean: the .cu file, the host repacker and the
// tests all include it, so the layout, the bit tricks of the int -> bf16 conversion and the
// element -> byte mapping are written once.
//
// Kinds (and the quant.hpp formats packed into them, exactly: no value changes):
//   int4_group   <- int4_group (group_size a multiple of 32), q4_0 (group 32, zero point 8, fp16 d
//                   widened to float);   w = s[row][group] * (q - z[row][group]), q, z in [0, 15]
//   int8_group   <- q8_0 (group 32, fp16 d widened);   w = s[row][group] * q, q int8
//   int8_channel <- int8_channel;                       w = s[row] * q, q int8
//   fp8_channel  <- fp8_e4m3_channel;                   w = s[row] * e4m3(q)
//
// Layout. The kernel multiplies 16-row x 16-column weight tiles as the A operand of
// mma.sync.m16n8k16 (bf16, row-major A), so the data is stored in the order in which the 32 lanes
// of a warp hold A fragments: lane L = 4 g + t (g = L / 4, t = L % 4) holds, per 16-wide k step,
// rows g and g + 8 at the two column pairs {2t, 2t+1} and {2t+8, 2t+9}.
//   data:  [row_tiles][chunks][32 lanes][16 bytes]. A row tile is 16 rows (rows padded with zero
//          codes); a chunk is one 16-byte load per lane, i.e. 512 bytes = 16 rows x 64 columns of
//          int4 or 16 rows x 32 columns of int8/fp8.
//   The columns inside a chunk are permuted so that each lane's activations are contiguous (one
//   16-byte load of 8 bf16 per 32-column block): within a 32-column block, lane t's four mma k
//   steps' worth of columns are 8t ... 8t + 7. In the fragment of mma k step s (two per block),
//   the pair {2t, 2t+1} is the real columns 8t + 4s + {0, 1} and {2t+8, 2t+9} is 8t + 4s + {2, 3}.
//   int4: word j (0..3) of a lane's 16 bytes is block h = j / 2, step s = j % 2 of the chunk; its
//     8 nibbles are the four bf16x2 A registers a_p (p = 0..3): the low half of a_p is bits
//     4p..4p+3, the high half bits 16+4p..16+4p+3. a_0 = (row g, base + {0,1}), a_1 = (row g+8,
//     base + {0,1}), a_2 = (row g, base + {2,3}), a_3 = (row g+8, base + {2,3}) with base =
//     64 chunk + 32 h + 8 t + 4 s.
//   int8 / fp8: word j is step s = j / 2 and column pair q = j % 2 (base + 2q + {0, 1}, base =
//     32 chunk + 8 t + 4 s); byte b of the word is row g + 8 (b % 2), column base + 2q + b / 2.
//   scales (float): grouped kinds [row_tiles][groups][8 g][2] = (s[row g], s[row g + 8]) of the
//     tile's rows; channel kinds [row_tiles][8 g][2]. Padded rows have scale 0.
//   zeros (int4_group only): [row_tiles][groups][8 g] bytes, z[row g] in the low nibble and
//     z[row g + 8] in the high nibble.
// A 32-column block always lies inside one group (group_size % 32 == 0), so the kernel applies a
// group's scale per block: it sums a block's products (q - z) x in fp32 (exact products on the
// tensor cores) and adds scale * sum to its accumulator. Channel kinds scale once, at the end.
// Shapes: cols a multiple of 32 (int4: the last chunk of a row may hold one block), cols < 2^21,
// rows >= 1. Real checkpoints meet these; quant_pack.hpp's repacker throws otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ridgeline/kernels/ops.hpp"

namespace ridgeline {

enum class packed_quant_kind : std::uint8_t { int4_group, int8_group, int8_channel, fp8_channel };

inline constexpr int k_pack_tile_rows = 16;
inline constexpr int k_pack_lanes = 32;
inline constexpr int k_pack_chunk_bytes = 512;  // one 16-byte load per lane
inline constexpr int k_pack_block_cols = 32;    // scale granularity inside a chunk
inline constexpr int k_pack_max_cols = 1 << 21;

constexpr bool packed_is_grouped(packed_quant_kind k) {
  return k == packed_quant_kind::int4_group || k == packed_quant_kind::int8_group;
}
constexpr int packed_chunk_cols(packed_quant_kind k) {
  return k == packed_quant_kind::int4_group ? 64 : 32;
}

// Non-owning view of a packed matrix (host or device pointers); y[rows] = W x[cols].
struct packed_quant_view {
  packed_quant_kind kind = packed_quant_kind::int4_group;
  int rows = 0, cols = 0;
  int group_size = 0;                   // grouped kinds: columns per scale (a multiple of 32)
  const std::uint8_t* data = nullptr;   // [row_tiles][chunks][32][16]
  const float* scales = nullptr;        // [row_tiles][groups or 1][8][2]
  const std::uint8_t* zeros = nullptr;  // int4_group: [row_tiles][groups][8]; else null

  int row_tiles() const { return (rows + k_pack_tile_rows - 1) / k_pack_tile_rows; }
  int chunks() const { return (cols + packed_chunk_cols(kind) - 1) / packed_chunk_cols(kind); }
  int groups() const { return packed_is_grouped(kind) && group_size > 0 ? cols / group_size : 1; }
  std::size_t data_bytes() const {
    return std::size_t(row_tiles()) * std::size_t(chunks()) * k_pack_chunk_bytes;
  }
  std::size_t scale_count() const {
    return std::size_t(row_tiles()) * std::size_t(groups()) * k_pack_tile_rows;
  }
  std::size_t zero_bytes() const {
    return kind == packed_quant_kind::int4_group ? std::size_t(row_tiles()) * groups() * 8 : 0;
  }
  // Bytes a GEMV streams for this matrix (data + scales + zeros).
  std::size_t bytes() const { return data_bytes() + scale_count() * 4 + zero_bytes(); }
};

// A linear layer with packed weights: y[t][r] = sum_c x[t][c] W[r][c] for t < num_tokens.
struct quant_linear_params {
  const bf16_bits* x = nullptr;  // [num_tokens][w.cols], 16-byte aligned
  packed_quant_view w;           // device pointers; data 16-byte, scales 8-byte aligned
  void* y = nullptr;             // [num_tokens][w.rows] bf16, or fp32 when y_fp32
  bool y_fp32 = false;
  int num_tokens = 0;
};

// Where element (row, col) of a packed matrix lives: byte offset into data and the bit shift of
// its nibble (int4; 0 or 4) inside that byte (0 for the byte kinds).
struct packed_position {
  std::size_t byte = 0;
  int shift = 0;
};
inline packed_position packed_element_position(packed_quant_kind kind, int chunks, int row,
                                               int col) {
  const int tile = row / 16, rr = row % 16, g = rr % 8, hi = rr / 8;
  const int cc = packed_chunk_cols(kind);
  const int chunk = col / cc, kk = col % cc;
  const int h = kk / 32, k32 = kk % 32, t = k32 / 8, k8 = k32 % 8, s = k8 / 4, k4 = k8 % 4;
  const std::size_t lane_base =
      ((std::size_t(tile) * chunks + chunk) * k_pack_lanes + std::size_t(4 * g + t)) * 16;
  if (kind == packed_quant_kind::int4_group) {
    const int p = 2 * (k4 / 2) + hi, e = k4 % 2, bit = 16 * e + 4 * p;
    return {lane_base + std::size_t(4 * (2 * h + s) + bit / 8), bit % 8};
  }
  const int q = k4 / 2, e = k4 % 2;
  return {lane_base + std::size_t(4 * (2 * s + q) + 2 * e + hi), 0};
}
// The inverse of packed_element_position inside one chunk: the element lane `lane` holds in byte
// `byte` (0 ... 15) of its 16 bytes, nibble `nibble` (int4: 0 = bits 0-3, 1 = bits 4-7; 0 for the
// byte kinds), as (row within the 16-row tile, column within the chunk). The dequantizer
// (kernels/cuda/dequant.cu) walks a lane's bytes with it; quant_pack_test checks it against
// packed_element_position for every lane, byte and nibble.
struct packed_chunk_element {
  int row = 0, col = 0;
};
constexpr packed_chunk_element packed_lane_element(packed_quant_kind kind, int lane, int byte,
                                                   int nibble) {
  const int g = lane / 4, t = lane % 4, j = byte / 4, b = byte % 4;
  if (kind == packed_quant_kind::int4_group) {
    const int bit = 8 * b + 4 * nibble;  // within word j
    const int e = bit / 16, p = bit % 16 / 4, h = j / 2, s = j % 2;
    return {g + 8 * (p & 1), 32 * h + 8 * t + 4 * s + 2 * (p >> 1) + e};
  }
  const int s = j / 2, q = j % 2;
  return {g + 8 * (b % 2), 8 * t + 4 * s + 2 * q + b / 2};
}

// Index into scales of row's scale for `group` (0 for channel kinds), and into zeros (int4).
inline std::size_t packed_scale_index(int groups, int row, int group) {
  return ((std::size_t(row / 16) * groups + group) * 8 + std::size_t(row % 8)) * 2 +
         std::size_t(row % 16 / 8);
}
inline std::size_t packed_zero_index(int groups, int row, int group) {
  return (std::size_t(row / 16) * groups + group) * 8 + std::size_t(row % 8);
}

// The int -> bf16 conversion the kernel runs, as bit patterns (bf16x2 words, low half first), so
// the host tests check the very expressions the device evaluates. Then one fma.rn.bf16x2 each:
//   int4: a = biased * 1 + neg_bias = (128 + q) - (128 + z) = q - z (exact: small integers);
//   int8: a = biased * 1 + neg_bias: byte v = l - 128 s (l = v & 0x7f, s = sign bit) is
//         (128 + l) - (128 + 128 s), both halves exact in bf16;
//   fp8:  a = shifted * 2^120 + (-0): e4m3 s.eeee.mmm moved to bf16's s.eeeeeeee.mmmmmmm as
//         s.0000eeee.mmm0000 is the e4m3 value times 2^-120 (subnormal codes included, as bf16
//         subnormals); times 2^120 is exact. NaN codes (0x7f, 0xff) decode to +-480: the
//         quantizers never produce them.
inline constexpr std::uint32_t k_bf16x2_one = 0x3F803F80u;
inline constexpr std::uint32_t k_bf16x2_two_pow_120 = 0x7B807B80u;
inline constexpr std::uint32_t k_bf16x2_neg_zero = 0x80008000u;

// Pair p (0..3) of an int4 word: bf16x2 (128 + nibble at 4p, 128 + nibble at 16 + 4p).
constexpr std::uint32_t int4_pair_biased(std::uint32_t word, int p) {
  return ((word >> (4 * p)) & 0x000F000Fu) | 0x43004300u;
}
// -(128 + z) in both halves.
constexpr std::uint32_t int4_neg_bias(std::uint32_t z) {
  return z * 0x00010001u + 0xC300C300u;
}
// v: an int8/fp8 word (bytes 0 and 2 -> the pair) or the word >> 8 (bytes 1 and 3).
constexpr std::uint32_t int8_pair_biased(std::uint32_t v) {
  return (v & 0x007F007Fu) | 0x43004300u;
}
constexpr std::uint32_t int8_pair_neg_bias(std::uint32_t v) {
  return (v & 0x00800080u) | 0xC300C300u;
}
constexpr std::uint32_t fp8_pair_shifted(std::uint32_t v) {
  return ((v & 0x00800080u) << 8) | ((v & 0x007F007Fu) << 4);
}

}  // namespace ridgeline
