// The quantized GEMV / skinny GEMM (kernels/cuda/quant_gemv.cu) against quant.hpp's reference
// (linear_ref: dequantize each row, sum w x in double) for every format, packed by the repacker
// (quant_pack.hpp) and uploaded as the engine would:
// - random weights through the quantizers and random bf16 activations at odd shapes: rows not a
//   multiple of the 16-row tile nor of the 32-row unit, 1 ... 64 tokens (every token-tile
//   variant), columns at several multiples of the group (an odd number of 32-column blocks, fewer
//   chunks than warps, uneven slices), more row units than SMs (the persistent walk);
// - one-hot activations over random codes (every nibble, byte, e4m3 code, zero point): each output
//   is one scaled weight, so the kernel must return the reference's value bit for bit;
// - every launch option (stages, CTAs per SM, PDL) gives the same bits, and so does every token
//   count within one token-tile path (a token's row does not depend on the batch);
// - launcher errors. Outputs are poisoned with NaN and guarded by bands that must come back.
// Tolerance (random cases): |gpu - ref| <= 2^-8 |ref| + 2^-13 (sum_c |w_c x_c| + B) for bf16
// output, without the 2^-8 |ref| term for fp32; B = sum_c |s_c x_c| (s_c the scale of column c's
// group) for int4, 0 otherwise. Rounding to bf16 moves a value by at most half a unit in the last
// place, 2^-8 of it (8 significant bits). The kernel's fp32 accumulation (exact products on the
// tensor cores; at most ~2^9 dependent additions per output at these shapes, each within 2^-23 of
// its running sum, which sum |w x| bounds) stays within 2^-14 sum |w x|. int4 at <= 16 tokens
// sums (128 + q) x and -(128 + z) x apart, terms of up to 143 |x| whose rounding (16 mma roundings
// per at most 128 columns summed before the scale) stays within 2^-14 s sum |x| of those columns:
// the B term. Twice both bounds is allowed.
// A misplaced weight or activation changes an output by about one |w x| term, sum |w x| / cols on
// average: above the tolerance up to 8192 columns (most cases use far fewer), and the one-hot
// test catches any single misplacement exactly.
//   build/tests/ridgeline_gpu_tests --gtest_filter='QuantGemv*'
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/quant_gemv.hpp"
#include "gpu_test_util.hpp"
#include "quant_test_util.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_pack.hpp"

using namespace ridgeline;

namespace {

using device_matrix = test::device_packed_matrix;

struct format_case {
  cpu::quant_format format;
  int group_size;  // int4_group only
};
std::string name_of(const format_case& f) {
  return cpu::quant_format_name(f.format) +
         (f.format == cpu::quant_format::int4_group ? " g" + std::to_string(f.group_size) : "");
}
const format_case k_formats[] = {
    {cpu::quant_format::int4_group, 128},   {cpu::quant_format::int4_group, 64},
    {cpu::quant_format::int4_group, 32},    {cpu::quant_format::int4_group, 96},
    {cpu::quant_format::q4_0, 128},         {cpu::quant_format::q8_0, 128},
    {cpu::quant_format::int8_channel, 128}, {cpu::quant_format::fp8_e4m3_channel, 128},
};
// Columns: the block size a format needs times these (odd block counts included).
int unit_cols(const format_case& f) {
  return f.format == cpu::quant_format::int4_group ? f.group_size : 32;
}

std::vector<float> random_normal(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
// bf16 activations, uniform in [-1, 1), as floats (exactly the bf16 values) and as bits.
void random_x(std::size_t n, std::uint32_t seed, std::vector<float>& xf,
              std::vector<bf16_bits>& xb) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  xf.resize(n);
  xb.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    xb[i] = cpu::float_to_bf16(u(rng));
    xf[i] = cpu::bf16_to_float(xb[i]);
  }
}

// Runs the kernel with outputs poisoned (NaN) and a guard band after them; returns the outputs
// as floats (checking the band).
std::vector<float> run(const device_matrix& w, const cuda::device_buffer& x, int tokens, bool fp32,
                       const cuda::quant_gemv_options& o, cuda::quant_gemv_plans& plans) {
  const std::size_t count = std::size_t(tokens) * w.host.rows, elem = fp32 ? 4 : 2;
  constexpr std::size_t guard = 256;  // bytes
  std::vector<std::uint8_t> init(count * elem + guard);
  for (std::size_t i = 0; i < init.size(); i += 2) {
    // 0x7fc1 in every 16-bit half: a bf16 NaN, and 0x7fc17fc1 a float NaN.
    init[i] = 0xc1;
    init[i + 1] = 0x7f;
  }
  auto y = test::upload(init);
  quant_linear_params p;
  p.x = x.data<bf16_bits>();
  p.w = w.view();
  p.y = y.data();
  p.y_fp32 = fp32;
  p.num_tokens = tokens;
  cuda::stream s;
  cuda::quant_gemv(p, plans, s.get(), o);
  RIDGELINE_CUDA_CHECK_LAUNCH();
  s.synchronize();
  const auto got = test::download<std::uint8_t>(y, 0, init.size());
  for (std::size_t i = count * elem; i < got.size(); ++i) {
    EXPECT_EQ(got[i], init[i]) << "guard byte " << i - count * elem << " overwritten";
  }
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (fp32) {
      std::memcpy(&out[i], &got[4 * i], 4);
    } else {
      bf16_bits b;
      std::memcpy(&b, &got[2 * i], 2);
      out[i] = cpu::bf16_to_float(b);
    }
  }
  return out;
}

std::vector<std::uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<std::uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

// One random case against linear_ref within the tolerance above; every element compared, the
// first five mismatches and the worst one reported.
void check_random(const format_case& f, int rows, int cols, int tokens, bool fp32,
                  const cuda::quant_gemv_options& o, cuda::quant_gemv_plans& plans,
                  std::uint32_t seed) {
  SCOPED_TRACE(name_of(f) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
               " tokens=" + std::to_string(tokens) + (fp32 ? " fp32" : " bf16") +
               " stages=" + std::to_string(o.stages) + " ctas=" + std::to_string(o.ctas_per_sm) +
               " pdl=" + std::to_string(o.pdl));
  const cpu::quantized_matrix q = cpu::quantize(
      f.format, rows, cols, random_normal(std::size_t(rows) * cols, seed), f.group_size);
  std::vector<float> xf;
  std::vector<bf16_bits> xb;
  random_x(std::size_t(tokens) * cols, seed + 1, xf, xb);
  std::vector<float> ref(std::size_t(tokens) * rows);
  cpu::linear_ref(q.view(), xf, ref, tokens);
  const std::vector<float> w = cpu::dequantize(q.view());
  // |s| of each weight (int4_group only: the B term of the tolerance).
  std::vector<float> sw;
  if (f.format == cpu::quant_format::int4_group || f.format == cpu::quant_format::q4_0) {
    sw.resize(w.size());
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        float s = 0;
        if (f.format == cpu::quant_format::int4_group) {
          s = q.scales[std::size_t(r) * (cols / f.group_size) + c / f.group_size];
        } else {
          const std::uint8_t* block =
              q.data.data() + (std::size_t(r) * (cols / 32) + c / 32) * cpu::k_q4_0_block_bytes;
          s = cpu::fp16_to_float(static_cast<std::uint16_t>(block[0] | (block[1] << 8)));
        }
        sw[std::size_t(r) * cols + c] = std::fabs(s);
      }
    }
  }

  const cpu::packed_quant_matrix p = cpu::pack_quantized(q.view());
  const device_matrix dw(p);
  const auto dx = test::upload(xb);
  const std::vector<float> got = run(dw, dx, tokens, fp32, o, plans);

  int bad = 0;
  double worst = 0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const std::size_t t = i / rows, r = i % rows;
    double mag = 0;
    for (int c = 0; c < cols; ++c) {
      mag += std::fabs(double(w[r * cols + c]) * xf[t * cols + c]);
      if (!sw.empty()) mag += double(sw[r * cols + c]) * std::fabs(xf[t * cols + c]);
    }
    const double tol =
        (fp32 ? 0.0 : std::ldexp(1.0, -8) * std::fabs(ref[i])) + std::ldexp(1.0, -13) * mag;
    const double err = std::fabs(double(got[i]) - ref[i]);
    if (!(err <= tol)) {  // NaN fails
      if (bad++ < 5) {
        ADD_FAILURE() << "token " << t << " row " << r << ": gpu " << got[i] << ", reference "
                      << ref[i] << ", tolerance " << tol;
      }
    }
    if (tol > 0 && err / tol > worst) {
      worst = err / tol;
      worst_at = i;
    }
  }
  EXPECT_EQ(bad, 0) << "worst error " << worst << " x tolerance at token " << worst_at / rows
                    << " row " << worst_at % rows;
}

}  // namespace

TEST(QuantGemv, MatchesReferenceAtOddShapes) {
  RIDGELINE_REQUIRE_GPU();
  cuda::quant_gemv_plans plans;
  std::uint32_t seed = 1;
  for (const format_case& f : k_formats) {
    const int u = unit_cols(f);
    // (rows, cols): one row; a partial tile; a partial unit; uneven slices (cols / 64 not a
    // multiple of 8); an odd number of 32-column blocks.
    const int shapes[][2] = {{1, u}, {17, 3 * u}, {45, 9 * u}, {131, 36 * u}, {300, 5 * u}};
    for (const auto& s : shapes) {
      if (s[1] > 8192) continue;
      for (int tokens : {1, 3, 7, 16})
        check_random(f, s[0], s[1], tokens, false, {}, plans, seed++);
    }
    // Every token-tile variant (8, 16, 32, 64 tokens per mma), and fp32 output.
    for (int tokens : {9, 24, 33, 64}) check_random(f, 45, 5 * u, tokens, false, {}, plans, seed++);
    check_random(f, 131, 9 * u, 5, true, {}, plans, seed++);
    check_random(f, 131, 9 * u, 40, true, {}, plans, seed++);
  }
}

// More row units (32 rows) than SMs: each persistent CTA walks several, its weight stream running
// on from one unit to the next; fewer chunks than warps (idle warps still join the reduction).
TEST(QuantGemv, PersistentCtasWalkSeveralUnits) {
  RIDGELINE_REQUIRE_GPU();
  cuda::quant_gemv_plans plans;
  std::uint32_t seed = 1000;
  for (const format_case& f : {k_formats[0], k_formats[2], k_formats[5], k_formats[7]}) {
    for (int ctas : {1, 2}) {
      cuda::quant_gemv_options o;
      o.ctas_per_sm = ctas;
      check_random(f, 8451, 2 * unit_cols(f), 3, false, o, plans, seed++);
      check_random(f, 8451, 9 * unit_cols(f), 16, false, o, plans, seed++);
    }
  }
  // A Llama-2-7B down projection's k (11008: 172 int4 chunks, 21 or 22 per warp), 1 token.
  check_random(k_formats[0], 300, 11008, 1, false, {}, plans, seed++);
  check_random(k_formats[6], 300, 11008, 2, false, {}, plans, seed++);
}

// Random codes (not from the quantizers: every nibble, byte, zero point and finite e4m3 code,
// subnormals included) with one-hot activations: output [t][r] is scale * code of column col(t),
// which the kernel must produce exactly as the reference dequantizes it (bf16: then rounded once).
TEST(QuantGemv, OneHotActivationsGiveExactWeights) {
  RIDGELINE_REQUIRE_GPU();
  cuda::quant_gemv_plans plans;
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  for (const format_case& f : k_formats) {
    const int rows = 45, cols = 3 * unit_cols(f);
    SCOPED_TRACE(name_of(f));
    // Random codes in the source format (as quant_pack_test's random_codes).
    cpu::quantized_matrix q = cpu::quantize(
        f.format, rows, cols, random_normal(std::size_t(rows) * cols, 5), f.group_size);
    for (auto& b : q.data) b = static_cast<std::uint8_t>(byte(rng));
    if (f.format == cpu::quant_format::q8_0 || f.format == cpu::quant_format::q4_0) {
      const int bb =
          f.format == cpu::quant_format::q8_0 ? cpu::k_q8_0_block_bytes : cpu::k_q4_0_block_bytes;
      for (std::size_t b = 0; b < q.data.size() / bb; ++b) {
        const std::uint16_t d = cpu::float_to_fp16(scale(rng));
        q.data[b * bb] = static_cast<std::uint8_t>(d & 0xff);
        q.data[b * bb + 1] = static_cast<std::uint8_t>(d >> 8);
      }
    }
    if (f.format == cpu::quant_format::fp8_e4m3_channel) {
      for (auto& b : q.data) {
        if ((b & 0x7f) == 0x7f) b = static_cast<std::uint8_t>(b ^ 1);  // no NaN codes
      }
    }
    if (f.format == cpu::quant_format::int4_group) {
      const int groups = cols / f.group_size;
      for (int r = 0; r < rows; ++r) {
        for (int g = 0; g < groups; ++g) {
          std::uint8_t& zb = q.zeros[std::size_t(r) * ((groups + 7) / 8) * 4 + g / 2];
          zb = static_cast<std::uint8_t>((zb & ~(0xf << (4 * (g % 2)))) |
                                         ((byte(rng) & 0xf) << (4 * (g % 2))));
        }
      }
    }
    for (auto& s : q.scales) s = scale(rng);
    const std::vector<float> w = cpu::dequantize(q.view());
    const cpu::packed_quant_matrix p = cpu::pack_quantized(q.view());
    const device_matrix dw(p);
    // 64 tokens (64 per mma) and 8 (8 per mma) cover the two int4 zero-point paths.
    for (int tokens : {64, 8}) {
      for (int first = 0; first < cols; first += tokens) {
        std::vector<bf16_bits> x(std::size_t(tokens) * cols, 0);
        for (int t = 0; t < tokens; ++t) {
          x[std::size_t(t) * cols + (first + t) % cols] = cpu::float_to_bf16(1.0f);
        }
        const auto dx = test::upload(x);
        for (bool fp32 : {true, false}) {
          const std::vector<float> got = run(dw, dx, tokens, fp32, {}, plans);
          int bad = 0;
          for (int t = 0; t < tokens; ++t) {
            const int c = (first + t) % cols;
            for (int r = 0; r < rows; ++r) {
              const float ref = w[std::size_t(r) * cols + c];
              const float expect = fp32 ? ref : cpu::bf16_to_float(cpu::float_to_bf16(ref));
              const float g = got[std::size_t(t) * rows + r];
              if (!(g == expect) && bad++ < 5) {
                ADD_FAILURE() << "tokens " << tokens << (fp32 ? " fp32" : " bf16") << ": row " << r
                              << " column " << c << ": gpu " << g << ", reference " << expect;
              }
            }
          }
          EXPECT_EQ(bad, 0);
        }
      }
    }
  }
}

// The launch options change who computes what when, never the arithmetic of an output; a token's
// row is the same bits whatever else is in the batch within one token-tile path. (int4 at <= 16
// tokens folds the zero point into an mma, above 16 it subtracts it in bf16: the two round apart,
// so int4 is compared within 1 ... 16 and within 17 ... 64 tokens.)
TEST(QuantGemv, OptionsAndBatchSizeDoNotChangeTheBits) {
  RIDGELINE_REQUIRE_GPU();
  cuda::quant_gemv_plans plans;
  for (const format_case& f : {k_formats[0], k_formats[5], k_formats[6], k_formats[7]}) {
    SCOPED_TRACE(name_of(f));
    const int rows = 8451, cols = 9 * unit_cols(f);
    const cpu::quantized_matrix q = cpu::quantize(
        f.format, rows, cols, random_normal(std::size_t(rows) * cols, 9), f.group_size);
    const cpu::packed_quant_matrix p = cpu::pack_quantized(q.view());
    const device_matrix dw(p);
    std::vector<float> xf;
    std::vector<bf16_bits> xb;
    random_x(std::size_t(64) * cols, 10, xf, xb);
    const auto dx = test::upload(xb);
    const auto base = bits_of(run(dw, dx, 5, true, {}, plans));
    for (int stages : {4, 8, 16}) {
      for (int ctas : {1, 2}) {
        for (bool pdl : {false, true}) {
          cuda::quant_gemv_options o;
          o.stages = stages;
          o.ctas_per_sm = ctas;
          o.pdl = pdl;
          EXPECT_EQ(bits_of(run(dw, dx, 5, true, o, plans)), base)
              << "stages " << stages << " ctas " << ctas << " pdl " << pdl;
        }
      }
    }
    // Token 0 ... 4's rows alone, in 16 and (other paths for int4) in 17 / 64 tokens.
    auto first_rows = [&](int tokens) {
      auto all = bits_of(run(dw, dx, tokens, true, {}, plans));
      all.resize(std::size_t(5) * rows);
      return all;
    };
    EXPECT_EQ(first_rows(16), base);
    EXPECT_EQ(first_rows(1), std::vector<std::uint32_t>(base.begin(), base.begin() + rows));
    if (f.format == cpu::quant_format::int4_group) {
      EXPECT_EQ(first_rows(17), first_rows(64));
    } else {
      EXPECT_EQ(first_rows(33), base);
      EXPECT_EQ(first_rows(64), base);
    }
  }
}

// The prefill path's dequantizer (kernels/cuda/dequant.cu): bf16 of the reference's dequantized
// float, bit for bit, and equal to its own CPU reference (cpu::dequantize_packed_bf16), at odd
// shapes (rows across 16-row tiles, int4's half-filled last chunk); outputs poisoned first, the
// band after them untouched; a misaligned output refused.
TEST(QuantGemv, DequantizeGivesTheReferenceWeightsInBf16) {
  RIDGELINE_REQUIRE_GPU();
  std::uint32_t seed = 4000;
  cuda::stream s;
  for (const format_case& f : k_formats) {
    for (const auto& shape :
         {std::pair{1, 1}, std::pair{17, 3}, std::pair{45, 9}, std::pair{300, 5}}) {
      const int rows = shape.first, cols = shape.second * unit_cols(f);
      SCOPED_TRACE(name_of(f) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const cpu::quantized_matrix q = cpu::quantize(
          f.format, rows, cols, random_normal(std::size_t(rows) * cols, seed++), f.group_size);
      const std::vector<float> ref = cpu::dequantize(q.view());
      const cpu::packed_quant_matrix p = cpu::pack_quantized(q.view());
      const std::vector<std::uint16_t> packed_ref = cpu::dequantize_packed_bf16(p.view());
      const device_matrix dw(p);
      const std::size_t n = std::size_t(rows) * cols, guard = 64;
      auto out = test::upload(std::vector<bf16_bits>(n + guard, 0x7fc1));
      cuda::quant_dequantize_bf16(dw.view(), out.data<bf16_bits>(), s.get());
      s.synchronize();
      const auto got = test::download<bf16_bits>(out, 0, n + guard);
      int bad = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if ((got[i] != cpu::float_to_bf16(ref[i]) || got[i] != packed_ref[i]) && bad++ < 5) {
          ADD_FAILURE() << "weight [" << i / cols << "][" << i % cols << "]: gpu "
                        << cpu::bf16_to_float(got[i]) << ", reference " << ref[i];
        }
      }
      EXPECT_EQ(bad, 0);
      for (std::size_t i = n; i < n + guard; ++i) ASSERT_EQ(got[i], 0x7fc1) << "guard " << i - n;
      if (rows == 17) {
        EXPECT_THROW(cuda::quant_dequantize_bf16(dw.view(), out.data<bf16_bits>() + 1, s.get()),
                     std::invalid_argument);
      }
    }
  }
}

TEST(QuantGemv, PlanIsOneWaveOfPersistentCtas) {
  RIDGELINE_REQUIRE_GPU();
  int device = 0, sms = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  cuda::quant_gemv_plans plans;
  // Llama-2-7B's four layers in int4 group 128 (pointers only need to be aligned to plan).
  cuda::device_buffer dummy(1 << 12);
  for (const auto& [rows, cols] : {std::pair{12288, 4096}, std::pair{4096, 4096},
                                   std::pair{22016, 4096}, std::pair{4096, 11008}}) {
    quant_linear_params p;
    p.x = dummy.data<bf16_bits>();
    p.y = dummy.data();
    p.w.kind = packed_quant_kind::int4_group;
    p.w.rows = rows;
    p.w.cols = cols;
    p.w.group_size = 128;
    p.w.data = dummy.data<std::uint8_t>();
    p.w.scales = dummy.data<float>();
    p.w.zeros = dummy.data<std::uint8_t>();
    for (int tokens : {1, 16, 64}) {
      p.num_tokens = tokens;
      const cuda::quant_gemv_config c = cuda::quant_gemv_plan(p, plans);
      const int units = (rows / 16 + 1) / 2;
      EXPECT_LE(c.ctas, sms);
      EXPECT_GE(c.ctas * c.units_per_cta, units);
      EXPECT_LT((c.ctas - 1) * c.units_per_cta, units);
      EXPECT_GE(c.tokens_per_mma, tokens);
      EXPECT_EQ(c.rows_per_unit, 32);
    }
  }
}

TEST(QuantGemv, RejectsBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::quant_gemv_plans plans;
  cuda::device_buffer b(1 << 16);
  quant_linear_params good;
  good.x = b.data<bf16_bits>();
  good.y = b.data();
  good.w.kind = packed_quant_kind::int4_group;
  good.w.rows = 16;
  good.w.cols = 128;
  good.w.group_size = 128;
  good.w.data = b.data<std::uint8_t>();
  good.w.scales = b.data<float>();
  good.w.zeros = b.data<std::uint8_t>();
  good.num_tokens = 1;
  EXPECT_NO_THROW(cuda::quant_gemv_plan(good, plans));
  auto expect_bad = [&](quant_linear_params p, const cuda::quant_gemv_options& o,
                        const char* what) {
    EXPECT_THROW(cuda::quant_gemv(p, plans, nullptr, o), std::invalid_argument) << what;
  };
  quant_linear_params p = good;
  p.num_tokens = 0;
  expect_bad(p, {}, "0 tokens");
  p.num_tokens = cuda::k_quant_gemv_max_tokens + 1;
  expect_bad(p, {}, "65 tokens");
  p = good;
  p.w.cols = 48;
  expect_bad(p, {}, "cols not a multiple of 32");
  p = good;
  p.w.group_size = 48;
  expect_bad(p, {}, "group 48");
  p = good;
  p.w.zeros = nullptr;
  expect_bad(p, {}, "int4 without zeros");
  p = good;
  p.x = b.data<bf16_bits>() + 1;
  expect_bad(p, {}, "x misaligned");
  p = good;
  p.w.scales = reinterpret_cast<const float*>(b.data<std::uint8_t>() + 4);
  expect_bad(p, {}, "scales misaligned");
  p = good;
  p.num_tokens = 9;
  cuda::quant_gemv_options o;
  o.stages = 16;
  expect_bad(p, o, "16 stages above 8 tokens");
  o.stages = 6;
  expect_bad(good, o, "6 stages");
  o = {};
  o.ctas_per_sm = 3;
  expect_bad(good, o, "3 CTAs per SM");
}
