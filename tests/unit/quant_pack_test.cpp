// The GPU layout of the quantized formats (kernels/quant_packed.hpp, quant_pack.hpp), on the CPU:
// - pack -> unpack gives every format's bytes back, at odd shapes, from the quantizers and from
//   random codes (every nibble, byte and e4m3 code);
// - an emulation of what the kernel does with the packed bytes, written from the PTX fragment
//   tables of mma.m16n8k16 (lane 4g + t holds A rows g and g + 8 at columns {2t, 2t+1} and
//   {2t+8, 2t+9}, B column g at rows {2t, 2t+1} and {2t+8, 2t+9}) and the column permutation,
//   independently of the packer's index function: it decodes every weight with the kernel's bit
//   tricks (bit for bit the reference's dequantized value) and multiplies x through the fragments
//   (the reference's y within float rounding);
// - the bit tricks over every code; shape errors.
//   build/tests/ridgeline_quant_pack_tests
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_pack.hpp"

using namespace ridgeline;
using namespace ridgeline::cpu;

namespace {

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A matrix of format f with uniformly random codes (every nibble / byte / finite e4m3 code),
// random positive and negative scales; the zero-point padding nibbles of int4_group stay 0.
quantized_matrix random_codes(quant_format f, int rows, int cols, int group_size,
                              std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  quantized_matrix q;
  q.format = f;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  q.data.resize(quant_data_bytes(f, rows, cols));
  for (auto& b : q.data) b = static_cast<std::uint8_t>(byte(rng));
  const auto r = static_cast<std::size_t>(rows);
  switch (f) {
    case quant_format::q8_0:
    case quant_format::q4_0: {
      const int block_bytes = f == quant_format::q8_0 ? k_q8_0_block_bytes : k_q4_0_block_bytes;
      for (std::size_t b = 0; b < r * static_cast<std::size_t>(cols / 32); ++b) {
        const std::uint16_t d = float_to_fp16(scale(rng));
        q.data[b * block_bytes] = static_cast<std::uint8_t>(d & 0xff);
        q.data[b * block_bytes + 1] = static_cast<std::uint8_t>(d >> 8);
      }
      break;
    }
    case quant_format::int4_group: {
      const int groups = cols / group_size, words = (groups + 7) / 8;
      q.scales.resize(r * groups);
      for (auto& s : q.scales) s = scale(rng);
      q.zeros.assign(r * static_cast<std::size_t>(words) * 4, 0);
      for (std::size_t row = 0; row < r; ++row) {
        for (int g = 0; g < groups; ++g) {
          std::uint8_t& b = q.zeros[row * words * 4 + static_cast<std::size_t>(g / 2)];
          b = static_cast<std::uint8_t>(b | ((byte(rng) & 0xf) << (4 * (g % 2))));
        }
      }
      break;
    }
    case quant_format::int8_channel:
      q.scales.resize(r);
      for (auto& s : q.scales) s = scale(rng);
      break;
    case quant_format::fp8_e4m3_channel:
      q.scales.resize(r);
      for (auto& s : q.scales) s = scale(rng);
      for (auto& b : q.data) {
        if ((b & 0x7f) == 0x7f) b = static_cast<std::uint8_t>(b ^ 1);  // NaN -> +-448
      }
      break;
  }
  return q;
}

void expect_same(const quantized_matrix& a, const quantized_matrix& b) {
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_TRUE(a.data == b.data) << "data differs";
  EXPECT_EQ(a.scales.size(), b.scales.size());
  if (!a.scales.empty() && a.scales.size() == b.scales.size()) {  // memcmp: not with null
    EXPECT_EQ(std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * 4), 0) << "scales";
  }
  EXPECT_TRUE(a.zeros == b.zeros) << "zeros differ";
  if (a.format == quant_format::int4_group) {
    EXPECT_EQ(a.group_size, b.group_size);
  }
}

struct shape {
  quant_format format;
  int rows, cols, group_size;
};
std::string describe(const shape& s) {
  return quant_format_name(s.format) + " [" + std::to_string(s.rows) + "][" +
         std::to_string(s.cols) + "] group " + std::to_string(s.group_size);
}

// Row counts below, at and across the 16-row tile; columns at several multiples of the group,
// with an odd number of 32-column blocks (int4's half-filled last chunk) among them.
std::vector<shape> shapes() {
  std::vector<shape> v;
  for (int rows : {1, 15, 16, 17, 45}) {
    for (int gs : {32, 64, 96, 128}) {
      for (int mult : {1, 3, 5}) v.push_back({quant_format::int4_group, rows, gs * mult, gs});
    }
    for (int cols : {32, 96, 224}) {
      v.push_back({quant_format::q4_0, rows, cols, k_default_group_size});
      v.push_back({quant_format::q8_0, rows, cols, k_default_group_size});
      v.push_back({quant_format::int8_channel, rows, cols, k_default_group_size});
      v.push_back({quant_format::fp8_e4m3_channel, rows, cols, k_default_group_size});
    }
  }
  return v;
}

// --- The emulation of the kernel, from the fragment tables -----------------------------------

float bf16f(std::uint32_t bits16) {
  return bf16_to_float(static_cast<std::uint16_t>(bits16));
}
// fma.rn.bf16x2 on one half: the operands here make every result exact, which is checked.
float bf16_fma(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  const double r = double(bf16f(a)) * double(bf16f(b)) + double(bf16f(c));
  const float f = static_cast<float>(r);
  EXPECT_EQ(double(bf16_to_float(float_to_bf16(f))), r) << "bf16 fma result not exact";
  return f;
}
std::uint32_t half_of(std::uint32_t w, int e) {
  return e ? w >> 16 : w & 0xffff;
}

// The lane's 16 bytes of (tile, chunk) as four words.
void lane_words(const packed_quant_matrix& p, int tile, int chunk, int lane,
                std::uint32_t (&w)[4]) {
  const packed_quant_view v = p.view();
  const std::size_t at = ((std::size_t(tile) * v.chunks() + chunk) * 32 + lane) * 16;
  for (int j = 0; j < 4; ++j) std::memcpy(&w[j], p.data.data() + at + 4 * j, 4);
}

// The A fragment of k step s of block h of (tile, chunk) for lane, as the kernel builds it
// (values before the scale), per register p and half e.
void a_fragment(const packed_quant_matrix& p, int tile, int chunk, int h, int s, int lane,
                float (&a)[4][2]) {
  const packed_quant_view v = p.view();
  std::uint32_t w[4];
  lane_words(p, tile, chunk, lane, w);
  const int g = lane / 4;
  if (p.kind == packed_quant_kind::int4_group) {
    const int groups = v.groups();
    const int grp = (chunk * 64 + 32 * h) / p.group_size;
    const std::uint32_t zb = p.zeros[(std::size_t(tile) * groups + grp) * 8 + g];
    const std::uint32_t nz[2] = {int4_neg_bias(zb & 0xf), int4_neg_bias(zb >> 4)};
    const std::uint32_t word = w[2 * h + s];
    for (int r = 0; r < 4; ++r) {
      const std::uint32_t biased = int4_pair_biased(word, r);
      for (int e = 0; e < 2; ++e) {
        // Both kernel paths: one fma per pair (> 16 tokens), or biased and zero summed apart.
        const float one_fma =
            bf16_fma(half_of(biased, e), half_of(k_bf16x2_one, e), half_of(nz[r % 2], e));
        const float two_terms = bf16f(half_of(biased, e)) + bf16f(half_of(nz[r % 2], e));
        EXPECT_EQ(one_fma, two_terms);
        a[r][e] = one_fma;
      }
    }
    return;
  }
  const std::uint32_t w0 = w[2 * s], w1 = w[2 * s + 1];
  const std::uint32_t src[4] = {w0, w0 >> 8, w1, w1 >> 8};
  for (int r = 0; r < 4; ++r) {
    for (int e = 0; e < 2; ++e) {
      if (p.kind == packed_quant_kind::fp8_channel) {
        a[r][e] = bf16_fma(half_of(fp8_pair_shifted(src[r]), e), half_of(k_bf16x2_two_pow_120, e),
                           half_of(k_bf16x2_neg_zero, e));
      } else {
        a[r][e] = bf16_fma(half_of(int8_pair_biased(src[r]), e), half_of(k_bf16x2_one, e),
                           half_of(int8_pair_neg_bias(src[r]), e));
      }
    }
  }
}

// The PTX table: register p, half e of lane (g, t) is A[row][kappa] with row = g + 8 (p % 2),
// kappa = 2t + e + 8 (p / 2); the layout's permutation puts kappa of step s of block `blk` at
// column 32 blk + 8t + 4s + 2 (p / 2) + e.
struct a_element {
  int row, kappa, col;
};
a_element a_element_of(int lane, int p, int e, int blk, int s) {
  const int g = lane / 4, t = lane % 4;
  return {g + 8 * (p % 2), 2 * t + e + 8 * (p / 2), 32 * blk + 8 * t + 4 * s + 2 * (p / 2) + e};
}

float scale_of(const packed_quant_matrix& p, int row, int blk) {
  const packed_quant_view v = p.view();
  const int group = packed_is_grouped(p.kind) ? blk * 32 / p.group_size : 0;
  return p.scales[((std::size_t(row / 16) * v.groups() + group) * 8 + row % 8) * 2 + row % 16 / 8];
}

// W as the kernel sees it, [rows][cols]: every fragment element once, scaled as the kernel does.
std::vector<float> emulated_weights(const packed_quant_matrix& p) {
  const packed_quant_view v = p.view();
  const int blocks_per_chunk = packed_chunk_cols(p.kind) / 32;
  std::vector<float> w(std::size_t(p.rows) * p.cols, std::nanf(""));
  std::vector<int> seen(w.size(), 0);
  for (int tile = 0; tile < v.row_tiles(); ++tile) {
    for (int chunk = 0; chunk < v.chunks(); ++chunk) {
      for (int h = 0; h < blocks_per_chunk; ++h) {
        const int blk = chunk * blocks_per_chunk + h;
        if (blk * 32 >= p.cols) continue;
        for (int s = 0; s < 2; ++s) {
          for (int lane = 0; lane < 32; ++lane) {
            float a[4][2];
            a_fragment(p, tile, chunk, h, s, lane, a);
            for (int r = 0; r < 4; ++r) {
              for (int e = 0; e < 2; ++e) {
                const a_element el = a_element_of(lane, r, e, blk, s);
                const int row = tile * 16 + el.row;
                if (row >= p.rows) {
                  EXPECT_EQ(a[r][e], 0.0f) << "padded row " << row << " decodes to nonzero";
                  continue;
                }
                const std::size_t at = std::size_t(row) * p.cols + el.col;
                w[at] = scale_of(p, row, blk) * a[r][e];
                ++seen[at];
              }
            }
          }
        }
      }
    }
  }
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], 1) << "element " << i << " decoded " << seen[i] << " times";
    if (seen[i] != 1) break;
  }
  return w;
}

// y[tokens][rows] through mma fragments: per k step, D[row][n] += sum_kappa A[row][kappa]
// B[kappa][n], B from lane (g = token, t)'s 16-byte x load at column 32 blk + 8t: b0 = words
// 2s (kappa 2t, 2t+1), b1 = word 2s + 1 (kappa 2t+8, 2t+9). Block sums scaled per block
// (grouped) or once (channel), as the kernel does; double accumulation.
std::vector<double> emulated_linear(const packed_quant_matrix& p, const std::vector<float>& x,
                                    int tokens) {
  const packed_quant_view v = p.view();
  const int blocks_per_chunk = packed_chunk_cols(p.kind) / 32;
  std::vector<double> y(std::size_t(tokens) * p.rows, 0.0);
  for (int tile = 0; tile < v.row_tiles(); ++tile) {
    for (int chunk = 0; chunk < v.chunks(); ++chunk) {
      for (int h = 0; h < blocks_per_chunk; ++h) {
        const int blk = chunk * blocks_per_chunk + h;
        if (blk * 32 >= p.cols) continue;
        double block_sum[16][64] = {};
        for (int s = 0; s < 2; ++s) {
          float A[16][16], B[16][64];
          for (int lane = 0; lane < 32; ++lane) {
            float a[4][2];
            a_fragment(p, tile, chunk, h, s, lane, a);
            for (int r = 0; r < 4; ++r) {
              for (int e = 0; e < 2; ++e) {
                const a_element el = a_element_of(lane, r, e, blk, s);
                A[el.row][el.kappa] = a[r][e];
              }
            }
            const int g = lane / 4, t = lane % 4;
            for (int n = 0; n < tokens; n += 8) {
              const int tok = n + g;
              for (int i = 0; i < 4; ++i) {  // b0 halves (i < 2), b1 halves
                const int kappa = 2 * t + (i % 2) + 8 * (i / 2);
                const int col = 32 * blk + 8 * t + 4 * s + i;  // word 2s + i / 2, half i % 2
                B[kappa][tok] = tok < tokens ? x[std::size_t(tok) * p.cols + col] : 0.0f;
              }
            }
          }
          for (int r = 0; r < 16; ++r) {
            for (int n = 0; n < tokens; ++n) {
              for (int k = 0; k < 16; ++k) block_sum[r][n] += double(A[r][k]) * double(B[k][n]);
            }
          }
        }
        for (int r = 0; r < 16; ++r) {
          const int row = tile * 16 + r;
          if (row >= p.rows) continue;
          const double sc = packed_is_grouped(p.kind) ? scale_of(p, row, blk) : 1.0;
          for (int n = 0; n < tokens; ++n) y[std::size_t(n) * p.rows + row] += sc * block_sum[r][n];
        }
      }
    }
  }
  if (!packed_is_grouped(p.kind)) {
    for (int n = 0; n < tokens; ++n) {
      for (int row = 0; row < p.rows; ++row)
        y[std::size_t(n) * p.rows + row] *= scale_of(p, row, 0);
    }
  }
  return y;
}

}  // namespace

TEST(QuantPack, RoundTripsEveryFormatAtOddShapes) {
  std::uint32_t seed = 1;
  for (const shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const auto w = random_floats(std::size_t(s.rows) * s.cols, seed++);
    const quantized_matrix q = quantize(s.format, s.rows, s.cols, w, s.group_size);
    const packed_quant_matrix p = pack_quantized(q.view());
    EXPECT_EQ(p.kind, packed_kind_of(s.format));
    const packed_quant_view v = p.view();
    EXPECT_EQ(p.data.size(), v.data_bytes());
    EXPECT_EQ(p.scales.size(), v.scale_count());
    EXPECT_EQ(p.zeros.size(), v.zero_bytes());
    expect_same(unpack_quantized(p), q);
    const quantized_matrix r = random_codes(s.format, s.rows, s.cols, s.group_size, seed++);
    expect_same(unpack_quantized(pack_quantized(r.view())), r);
  }
}

TEST(QuantPack, KernelFragmentsDecodeToTheReferenceWeights) {
  std::uint32_t seed = 100;
  for (const shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    for (bool codes : {false, true}) {
      const quantized_matrix q =
          codes ? random_codes(s.format, s.rows, s.cols, s.group_size, seed++)
                : quantize(s.format, s.rows, s.cols,
                           random_floats(std::size_t(s.rows) * s.cols, seed++), s.group_size);
      const std::vector<float> ref = dequantize(q.view());
      const std::vector<float> got = emulated_weights(pack_quantized(q.view()));
      int bad = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) {
        if (std::memcmp(&got[i], &ref[i], 4) != 0 && bad++ < 5) {
          ADD_FAILURE() << "weight [" << i / s.cols << "][" << i % s.cols << "]: kernel " << got[i]
                        << ", reference " << ref[i];
        }
      }
      EXPECT_EQ(bad, 0);
    }
  }
}

// The fragments put weights and activations on the same columns: the emulated mma products equal
// the reference's y (both summed in double; only the reference's final float rounding differs).
TEST(QuantPack, KernelFragmentsMultiplyLikeTheReference) {
  std::uint32_t seed = 500;
  for (const shape& s : shapes()) {
    if (s.rows != 17 && s.rows != 45) continue;
    SCOPED_TRACE(describe(s));
    const int tokens = s.rows == 17 ? 3 : 16;
    const auto w = random_floats(std::size_t(s.rows) * s.cols, seed++);
    const quantized_matrix q = quantize(s.format, s.rows, s.cols, w, s.group_size);
    std::vector<float> x = random_floats(std::size_t(tokens) * s.cols, seed++);
    for (auto& v : x) v = bf16_to_float(float_to_bf16(v));
    std::vector<float> ref(std::size_t(tokens) * s.rows);
    linear_ref(q.view(), x, ref, tokens);
    const std::vector<double> got = emulated_linear(pack_quantized(q.view()), x, tokens);
    const std::vector<float> deq = dequantize(q.view());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const std::size_t tok = i / s.rows, row = i % s.rows;
      double mag = 0;
      for (int c = 0; c < s.cols; ++c) {
        mag += std::fabs(double(deq[row * s.cols + c]) * x[tok * s.cols + c]);
      }
      // Per block the kernel sums (q - z) x and scales the sum; the reference scales each weight
      // (a float rounding each, 2^-24 relative): they agree to ~2^-23 of the |w x| sum.
      ASSERT_NEAR(got[i], ref[i], 1e-6 * mag + 1e-30) << "token " << tok << " row " << row;
    }
  }
}

TEST(QuantPack, BitTricksDecodeEveryCode) {
  // int4: (128 + q) - (128 + z) = q - z for every pair of nibbles, in every pair position.
  for (std::uint32_t q = 0; q < 16; ++q) {
    for (std::uint32_t z = 0; z < 16; ++z) {
      for (int p = 0; p < 4; ++p) {
        const std::uint32_t word = (q << (4 * p)) | ((15 - q) << (16 + 4 * p));
        const std::uint32_t b = int4_pair_biased(word, p), nz = int4_neg_bias(z);
        EXPECT_EQ(bf16f(b & 0xffff) + bf16f(nz & 0xffff), float(int(q) - int(z)));
        EXPECT_EQ(bf16f(b >> 16) + bf16f(nz >> 16), float(15 - int(q) - int(z)));
      }
    }
  }
  // int8: every byte, in the low and the high half.
  for (std::uint32_t v = 0; v < 256; ++v) {
    const auto expected = float(static_cast<std::int8_t>(v));
    for (std::uint32_t word : {v, v << 16}) {
      const int e = word == v ? 0 : 1;
      EXPECT_EQ(
          bf16f(half_of(int8_pair_biased(word), e)) + bf16f(half_of(int8_pair_neg_bias(word), e)),
          expected)
          << "byte " << v;
    }
    // Bytes 1 and 3 of a word reach the pair through word >> 8; bytes 0 and 2 must not leak in.
    const std::uint32_t other = (v << 8) | (v << 24) | 0x00ff00ffu;
    EXPECT_EQ(bf16f(half_of(int8_pair_biased(other >> 8), 0)) +
                  bf16f(half_of(int8_pair_neg_bias(other >> 8), 0)),
              expected);
  }
  // fp8 e4m3: every code but the two NaNs, subnormals included: shifted * 2^120 is the value.
  for (std::uint32_t v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;
    const float expected = fp8_e4m3_to_float(static_cast<std::uint8_t>(v));
    const std::uint32_t h = fp8_pair_shifted(v | (v << 16));
    EXPECT_EQ(double(bf16f(h & 0xffff)) * std::ldexp(1.0, 120), double(expected)) << "code " << v;
    EXPECT_EQ(double(bf16f(h >> 16)) * std::ldexp(1.0, 120), double(expected)) << "code " << v;
    EXPECT_EQ(h & 0xffff, h >> 16);
  }
  EXPECT_EQ(bf16f(k_bf16x2_one & 0xffff), 1.0f);
  EXPECT_EQ(double(bf16f(k_bf16x2_two_pow_120 >> 16)), std::ldexp(1.0, 120));
  EXPECT_TRUE(std::signbit(bf16f(k_bf16x2_neg_zero & 0xffff)));
}

TEST(QuantPack, PositionsAndSizesAtLlamaShapes) {
  // Llama-2-7B qkv in int4 group 128: half a byte per weight, 4 bytes per 128 of scales, 0.5 of
  // zeros.
  packed_quant_view v;
  v.kind = packed_quant_kind::int4_group;
  v.rows = 12288;
  v.cols = 4096;
  v.group_size = 128;
  EXPECT_EQ(v.data_bytes(), std::size_t(12288) * 4096 / 2);
  EXPECT_EQ(v.scale_count(), std::size_t(12288) * 32);
  EXPECT_EQ(v.zero_bytes(), std::size_t(12288) * 32 / 2);
  v.kind = packed_quant_kind::fp8_channel;
  v.rows = 4096;
  v.cols = 11008;
  EXPECT_EQ(v.data_bytes(), std::size_t(4096) * 11008);
  EXPECT_EQ(v.scale_count(), std::size_t(4096));
  EXPECT_EQ(v.zero_bytes(), 0u);
  // Hand-worked positions: int4 row 9 (g 1, high half of the tile), column 70 (chunk 1, block 0,
  // t 0, step 1, pair column 2 -> register 3, half 0): lane 4, word 1, bits 12..15.
  const packed_position at = packed_element_position(packed_quant_kind::int4_group, 64, 9, 70);
  EXPECT_EQ(at.byte, (std::size_t(1) * 32 + 4) * 16 + 4 * 1 + 1);
  EXPECT_EQ(at.shift, 4);
  // int8 row 8 (g 0, high), column 13 (chunk 0, t 1, step 1, column pair 0, half 1): lane 1,
  // word 2, byte 2 + 1 = 3.
  const packed_position b = packed_element_position(packed_quant_kind::int8_channel, 1, 8, 13);
  EXPECT_EQ(b.byte, std::size_t(1) * 16 + 4 * 2 + 3);
  EXPECT_EQ(b.shift, 0);
}

TEST(QuantPack, RejectsWhatThePackedLayoutCannotHold) {
  const auto w = random_floats(4 * 100, 7);
  const quantized_matrix odd = quantize(quant_format::int8_channel, 4, 100, w);
  EXPECT_THROW(pack_quantized(odd.view()), std::invalid_argument);  // cols % 32
  const quantized_matrix g16 =
      quantize(quant_format::int4_group, 4, 64, std::vector<float>(w.begin(), w.begin() + 256), 16);
  EXPECT_THROW(pack_quantized(g16.view()), std::invalid_argument);  // group % 32
  // A packed q4_0 whose zero point is not 8, or whose scale is no fp16 value, is not a q4_0.
  const quantized_matrix q4 =
      quantize(quant_format::q4_0, 4, 64, std::vector<float>(w.begin(), w.begin() + 256));
  packed_quant_matrix p = pack_quantized(q4.view());
  p.zeros[0] = static_cast<std::uint8_t>((p.zeros[0] & 0xf0) | 7);
  EXPECT_THROW(unpack_quantized(p), std::invalid_argument);
  p = pack_quantized(q4.view());
  p.scales[0] = 0.1f;  // not an fp16 value
  EXPECT_THROW(unpack_quantized(p), std::invalid_argument);
  p = pack_quantized(q4.view());
  p.data.pop_back();
  EXPECT_THROW(unpack_quantized(p), std::invalid_argument);
}

// --- The dequantizer's index map and reference (the prefill path, kernels/cuda/dequant.cu) ------

// packed_lane_element (what the GPU dequantizer walks) is the inverse of packed_element_position
// (what the packer writes) over every lane, byte and nibble, and covers the chunk's 16 x cc
// elements exactly once.
TEST(QuantPack, LaneElementInvertsElementPosition) {
  for (packed_quant_kind kind : {packed_quant_kind::int4_group, packed_quant_kind::int8_group,
                                 packed_quant_kind::int8_channel, packed_quant_kind::fp8_channel}) {
    const int cc = packed_chunk_cols(kind), nibbles = kind == packed_quant_kind::int4_group ? 2 : 1;
    std::vector<int> hits(static_cast<std::size_t>(16 * cc), 0);
    for (int lane = 0; lane < 32; ++lane) {
      for (int byte = 0; byte < 16; ++byte) {
        for (int n = 0; n < nibbles; ++n) {
          const packed_chunk_element el = packed_lane_element(kind, lane, byte, n);
          ASSERT_GE(el.row, 0);
          ASSERT_LT(el.row, 16);
          ASSERT_GE(el.col, 0);
          ASSERT_LT(el.col, cc);
          ++hits[static_cast<std::size_t>(el.row * cc + el.col)];
          const packed_position at = packed_element_position(kind, 1, el.row, el.col);
          EXPECT_EQ(at.byte, static_cast<std::size_t>(lane * 16 + byte))
              << "lane " << lane << " byte " << byte << " nibble " << n;
          EXPECT_EQ(at.shift, 4 * n) << "lane " << lane << " byte " << byte;
        }
      }
    }
    for (int h : hits) EXPECT_EQ(h, 1);
  }
}

// The reference of the GPU dequantizer: bf16 of quant.hpp's dequantized float, bit for bit, for
// every format at odd shapes (quantized floats and random codes), and its shape errors.
TEST(QuantPack, DequantizePackedBf16IsTheRoundedReference) {
  std::uint32_t seed = 500;
  for (const shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const auto w = random_floats(std::size_t(s.rows) * s.cols, seed++);
    for (const quantized_matrix& q :
         {quantize(s.format, s.rows, s.cols, w, s.group_size),
          random_codes(s.format, s.rows, s.cols, s.group_size, seed++)}) {
      const packed_quant_matrix p = pack_quantized(q.view());
      const std::vector<std::uint16_t> got = dequantize_packed_bf16(p.view());
      const std::vector<float> ref = dequantize(q.view());
      ASSERT_EQ(got.size(), ref.size());
      int bad = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) {
        if (got[i] != float_to_bf16(ref[i]) && ++bad <= 3) {
          ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << float_to_bf16(ref[i]);
        }
      }
      EXPECT_EQ(bad, 0);
    }
  }
  const quantized_matrix q = quantize(quant_format::int4_group, 16, 128,
                                      random_floats(16 * 128, 9), 128);
  const packed_quant_matrix p = pack_quantized(q.view());
  packed_quant_view v = p.view();
  v.zeros = nullptr;
  EXPECT_THROW(dequantize_packed_bf16(v), std::invalid_argument);
  v = p.view();
  v.cols = 100;
  EXPECT_THROW(dequantize_packed_bf16(v), std::invalid_argument);
  v = p.view();
  v.group_size = 48;
  EXPECT_THROW(dequantize_packed_bf16(v), std::invalid_argument);
}
