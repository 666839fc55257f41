// Quantized weight formats (kernels/quant.hpp): hand-worked blocks of every format, e4m3 edge
// cases, quantize -> dequantize round trips within each format's stated bound at odd shapes, shape
// errors, and the quantized matvec/linear reference against dequantize + double matvec.
//   build-quant/tests/ridgeline_unit_tests --gtest_filter='Quant*'
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"

using namespace ridgeline::cpu;

namespace {

void put_u16(std::vector<std::uint8_t>& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v & 0xff);
  b[at + 1] = static_cast<std::uint8_t>(v >> 8);
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// The per-element bound quant.hpp states for element (r, c) of q quantized from x.
double error_bound(const quantized_matrix& q, int r, int c, float x) {
  const std::size_t row = static_cast<std::size_t>(r);
  switch (q.format) {
    case quant_format::q8_0: {
      const std::size_t block = row * (q.cols / 32) + static_cast<std::size_t>(c / 32);
      const float d = fp16_to_float(
          static_cast<std::uint16_t>(q.data[block * 34] | (q.data[block * 34 + 1] << 8)));
      return 0.5 * std::fabs(d) * (1 + std::ldexp(1.0, -9));
    }
    case quant_format::q4_0: {
      const std::size_t block = row * (q.cols / 32) + static_cast<std::size_t>(c / 32);
      const float d = fp16_to_float(
          static_cast<std::uint16_t>(q.data[block * 18] | (q.data[block * 18 + 1] << 8)));
      return std::fabs(d) * (1 + std::ldexp(1.0, -7));
    }
    case quant_format::int4_group:
      return 0.5 * q.scales[row * (q.cols / q.group_size) + c / q.group_size] *
             (1 + std::ldexp(1.0, -9));
    case quant_format::int8_channel:
      return 0.5 * q.scales[row] * (1 + std::ldexp(1.0, -9));
    case quant_format::fp8_e4m3_channel:
      return (std::fabs(x) * std::ldexp(1.0, -4) + q.scales[row] * std::ldexp(1.0, -10)) *
             (1 + 1e-6);
  }
  return 0;
}

}  // namespace

TEST(Quant, Q8_0HandWorkedBlock) {
  std::vector<std::uint8_t> b(34, 0);
  put_u16(b, 0, 0x3800);  // d = 0.5
  const std::int8_t qs[4] = {1, -1, 127, -128};
  for (int i = 0; i < 4; ++i) b[2 + i] = static_cast<std::uint8_t>(qs[i]);
  std::vector<float> out(32, -1.0f);
  dequantize_q8_0(b, out);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -0.5f);
  EXPECT_EQ(out[2], 63.5f);
  EXPECT_EQ(out[3], -64.0f);
  for (int i = 4; i < 32; ++i) EXPECT_EQ(out[i], 0.0f) << i;

  // Quantizer: amax 127 -> d = 1 exactly, q = x.
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = static_cast<float>(i % 2 ? -i : i) * 127.0f / 31.0f;
  w[31] = -127.0f;
  const auto q = quantize(quant_format::q8_0, 1, 32, w);
  ASSERT_EQ(q.data.size(), 34u);
  EXPECT_EQ(q.data[0], 0x00);
  EXPECT_EQ(q.data[1], 0x3c);  // fp16 1.0
  EXPECT_EQ(static_cast<std::int8_t>(q.data[2 + 31]), -127);
  EXPECT_EQ(static_cast<std::int8_t>(q.data[2 + 2]), 8);  // 2 * 127 / 31 = 8.19 -> 8
}

TEST(Quant, Q4_0HandWorkedBlock) {
  std::vector<std::uint8_t> b(18, 0);
  put_u16(b, 0, 0x4000);  // d = 2
  b[2] = 0xf0;            // element 0: q 0 -> -16; element 16: q 15 -> 14
  b[3] = 0x98;            // element 1: q 8 -> 0;   element 17: q 9 -> 2
  for (int i = 2; i < 16; ++i) b[2 + i] = 0x88;
  std::vector<float> out(32, -1.0f);
  dequantize_q4_0(b, out);
  EXPECT_EQ(out[0], -16.0f);
  EXPECT_EQ(out[16], 14.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[17], 2.0f);
  for (int i : {2, 15, 18, 31}) EXPECT_EQ(out[i], 0.0f) << i;

  // Quantizer: m = -16 -> d = 2; x = 14 -> q 15, x = 16 -> 16/2 + 8 = 16 clamps to 15 (14).
  std::vector<float> w(32, 0.0f);
  w[0] = -16.0f;
  w[16] = 14.0f;
  w[17] = 15.9f;
  w[5] = 3.0f;  // 1.5 rounds away from zero -> 2 -> q 10
  const auto q = quantize(quant_format::q4_0, 1, 32, w);
  EXPECT_EQ(q.data[0], 0x00);
  EXPECT_EQ(q.data[1], 0x40);
  EXPECT_EQ(q.data[2], 0xf0);
  EXPECT_EQ(q.data[3], 0xf8);
  EXPECT_EQ(q.data[2 + 5], 0x8a);
  const auto back = dequantize(q.view());
  EXPECT_EQ(back[17], 14.0f);
  EXPECT_EQ(back[5], 4.0f);
}

TEST(Quant, Int4GroupHandWorkedPacking) {
  // One row, 16 columns, group 8: two groups.
  quantized_matrix q;
  q.format = quant_format::int4_group;
  q.rows = 1;
  q.cols = 16;
  q.group_size = 8;
  // word 0 = 0x76543210: element c = c for c < 8; word 1 = 0xfedcba98: element 8 + k = 8 + k.
  q.data = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
  q.scales = {0.5f, 2.0f};
  q.zeros = {0x3a, 0x00, 0x00, 0x00};  // group 0 zero = 0xa (10), group 1 zero = 3
  const auto w = dequantize(q.view());
  for (int c = 0; c < 8; ++c) EXPECT_EQ(w[c], 0.5f * static_cast<float>(c - 10)) << c;
  for (int c = 8; c < 16; ++c) EXPECT_EQ(w[c], 2.0f * static_cast<float>(c - 3)) << c;

  // Quantizer: group 0 spans [0, 15] -> s = 1, z = 0, q = x (exact); group 1 spans [-7, 0].
  std::vector<float> x = {0, 1, 2, 3, 4, 5, 6, 15, 0, -1, -2, -3, -4, -5, -6, -7};
  const auto r = quantize(quant_format::int4_group, 1, 16, x, 8);
  EXPECT_EQ(r.scales[0], 1.0f);
  EXPECT_EQ(r.data[0], 0x10);
  EXPECT_EQ(r.data[3], 0xf6);
  EXPECT_EQ(r.zeros[0] & 0x0f, 0);
  EXPECT_EQ(r.scales[1], 7.0f / 15.0f);
  EXPECT_EQ(r.zeros[0] >> 4, 15);  // group 1: lo = -7, hi = 0 -> z = 15
  EXPECT_EQ(dequantize(r.view())[0], 0.0f);
  EXPECT_EQ(dequantize(r.view())[7], 15.0f);
  EXPECT_NEAR(dequantize(r.view())[15], -7.0f, 1e-6);
}

TEST(Quant, Int8AndFp8ChannelHandWorked) {
  quantized_matrix q;
  q.format = quant_format::int8_channel;
  q.rows = 2;
  q.cols = 3;
  q.data = {1, 0xff, 0x7f, 0x80, 0x00, 0x02};  // 1, -1, 127 | -128, 0, 2
  q.scales = {0.25f, 3.0f};
  EXPECT_EQ(dequantize(q.view()), (std::vector<float>{0.25f, -0.25f, 31.75f, -384.0f, 0.0f, 6.0f}));

  quantized_matrix f;
  f.format = quant_format::fp8_e4m3_channel;
  f.rows = 1;
  f.cols = 4;
  f.data = {0x38, 0xc0, 0x7e, 0x01};  // 1.0, -2.0, 448, 2^-9
  f.scales = {0.5f};
  EXPECT_EQ(dequantize(f.view()), (std::vector<float>{0.5f, -1.0f, 224.0f, std::ldexp(1.0f, -10)}));
}

TEST(Quant, E4m3EdgeCases) {
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_float(0x80)));  // negative zero
  EXPECT_EQ(fp8_e4m3_to_float(0x80), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));      // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));  // largest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));      // smallest normal
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x78), 256.0f);  // exponent 15 is a normal binade (no infinities)
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0xff)));
  // Every other code is finite and round-trips through the encoder.
  for (int v = 0; v < 256; ++v) {
    if (v == 0x7f || v == 0xff) continue;
    const float f = fp8_e4m3_to_float(static_cast<std::uint8_t>(v));
    ASSERT_TRUE(std::isfinite(f)) << v;
    EXPECT_EQ(float_to_fp8_e4m3(f), v) << v;
  }
  // Encoder: saturates to +-448, ties to even.
  EXPECT_EQ(float_to_fp8_e4m3(1000.0f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(float_to_fp8_e4m3(1.0625f), 0x38);  // halfway 1 and 1.125 -> even (1.0)
  EXPECT_EQ(float_to_fp8_e4m3(1.1875f), 0x3a);  // halfway 1.125 and 1.25 -> even (1.25)
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -10)), 0x00);      // half the smallest: even (0)
  EXPECT_EQ(float_to_fp8_e4m3(3 * std::ldexp(1.0f, -10)), 0x02);  // 1.5 steps -> 2
}

TEST(Quant, RoundTripWithinBoundAtOddShapes) {
  struct shape {
    quant_format f;
    int rows, cols, group;
  };
  const shape shapes[] = {{quant_format::q8_0, 1, 32, 0},
                          {quant_format::q8_0, 7, 96, 0},
                          {quant_format::q4_0, 13, 64, 0},
                          {quant_format::q4_0, 1, 160, 0},
                          {quant_format::int4_group, 5, 256, 128},
                          {quant_format::int4_group, 3, 24, 8},
                          {quant_format::int8_channel, 1, 1, 0},
                          {quant_format::int8_channel, 11, 37, 0},
                          {quant_format::fp8_e4m3_channel, 1, 1, 0},
                          {quant_format::fp8_e4m3_channel, 9, 131, 0}};
  std::uint32_t seed = 1;
  for (const auto& s : shapes) {
    const int group = s.group ? s.group : k_default_group_size;
    auto w = random_floats(static_cast<std::size_t>(s.rows) * s.cols, seed++, 0.02f);
    if (s.rows > 1) {  // an all-zero row and a row of one repeated value
      for (int c = 0; c < s.cols; ++c) w[static_cast<std::size_t>(c)] = 0.0f;
      for (int c = 0; c < s.cols; ++c) w[static_cast<std::size_t>(s.cols + c)] = -0.5f;
    }
    const auto q = quantize(s.f, s.rows, s.cols, w, group);
    const auto back = dequantize(q.view());
    ASSERT_EQ(back.size(), w.size());
    double worst = 0;
    for (int r = 0; r < s.rows; ++r) {
      for (int c = 0; c < s.cols; ++c) {
        const std::size_t i = static_cast<std::size_t>(r) * s.cols + c;
        const double err = std::fabs(static_cast<double>(back[i]) - w[i]);
        const double bound = error_bound(q, r, c, w[i]);
        worst = std::max(worst, err / std::max(bound, 1e-30));
        ASSERT_TRUE(std::isfinite(back[i]));
        ASSERT_LE(err, bound) << quant_format_name(s.f) << " [" << r << "][" << c << "] x=" << w[i]
                              << " got " << back[i];
      }
    }
    if (s.rows > 1) {
      for (int c = 0; c < s.cols; ++c) EXPECT_EQ(back[static_cast<std::size_t>(c)], 0.0f);
    }
    // The bound is tight enough to mean something: the error is not trivially zero.
    if (s.cols > 1) {
      EXPECT_GT(worst, 0.05) << quant_format_name(s.f);
    }
  }
}

TEST(Quant, ShapesOffTheBlockThrowWithTheValues) {
  const std::vector<float> w(33 * 3, 0.5f);
  try {
    (void)quantize(quant_format::q8_0, 3, 33, w);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[3][33]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)quantize(quant_format::q4_0, 3, 33, w), std::invalid_argument);
  EXPECT_THROW((void)quantize(quant_format::int4_group, 1, 99, w, 33), std::invalid_argument);
  EXPECT_THROW((void)quantize(quant_format::int4_group, 1, 96, w, 64), std::invalid_argument);
  EXPECT_THROW((void)quantize(quant_format::int8_channel, 3, 32, w), std::invalid_argument);
  EXPECT_THROW((void)quantize(quant_format::int8_channel, 0, 5, w), std::invalid_argument);
  std::vector<float> out(33);
  const std::vector<std::uint8_t> b(34);
  EXPECT_THROW(dequantize_q8_0(b, out), std::invalid_argument);
}

TEST(Quant, MatvecReferenceMatchesDequantizeThenMatvec) {
  const quant_format formats[] = {quant_format::q8_0, quant_format::q4_0, quant_format::int4_group,
                                  quant_format::int8_channel, quant_format::fp8_e4m3_channel};
  const int rows = 7, cols = 256, tokens = 3;
  for (const auto f : formats) {
    const auto w = random_floats(static_cast<std::size_t>(rows) * cols, 42);
    const auto x = random_floats(static_cast<std::size_t>(tokens) * cols, 43);
    const auto q = quantize(f, rows, cols, w);
    const auto wd = dequantize(q.view());
    std::vector<float> y(static_cast<std::size_t>(tokens) * rows, std::nanf(""));
    linear_ref(q.view(), x, y, tokens);
    for (int t = 0; t < tokens; ++t) {
      std::vector<float> yt(rows, std::nanf(""));
      quantized_matvec_ref(q.view(), std::span<const float>(x).subspan(t * cols, cols), yt);
      for (int r = 0; r < rows; ++r) {
        double ref = 0, abs_sum = 0;
        for (int c = 0; c < cols; ++c) {
          ref += static_cast<double>(wd[r * cols + c]) * x[t * cols + c];
          abs_sum += std::fabs(static_cast<double>(w[r * cols + c]) * x[t * cols + c]);
        }
        // One rounding of the double sum to float.
        EXPECT_NEAR(yt[r], ref, std::fabs(ref) * 1e-7 + 1e-30) << quant_format_name(f);
        EXPECT_EQ(y[t * rows + r], yt[r]);
        // Sanity: the quantized product is close to the float one (loose; bounds are per format).
        double exact = 0;
        for (int c = 0; c < cols; ++c)
          exact += static_cast<double>(w[r * cols + c]) * x[t * cols + c];
        EXPECT_NEAR(ref, exact, 0.2 * abs_sum) << quant_format_name(f);
      }
    }
  }
  std::vector<float> y(rows);
  const auto q = quantize(quant_format::q8_0, rows, cols, std::vector<float>(rows * cols, 1.0f));
  EXPECT_THROW(quantized_matvec_ref(q.view(), std::vector<float>(cols - 1), y),
               std::invalid_argument);
}
