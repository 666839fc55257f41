// The engine's quantized linear layer (cuda::linear_runner::run_quant, kernels/cuda/linear.hpp) on
// every path, against quant.hpp's linear_ref (dequantize, double sums) at odd shapes:
// - one quant_gemv launch (<= 64 tokens) and 64-token slices (65 ... 256 tokens): within the
//   quantized GEMV's tolerance (docs/kernels.md), and a slice's rows are those of the same tokens
//   run alone (the last slice of 65 tokens is one token);
// - dequantize + bf16 GEMM (above 256 tokens, forced at any count, and every count in
//   batch-invariant mode): bitwise the runner's bf16 path on the reference's bf16 weights
//   (cpu::dequantize_packed_bf16), and within the bf16 rounding of the weights of linear_ref;
// - outputs poisoned before each run; shape mismatches and a missing scratch refused.
//   build/tests/ridgeline_gpu_tests --gtest_filter='QuantLinear*'
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/linear.hpp"
#include "gpu_test_util.hpp"
#include "quant_test_util.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/quant.hpp"
#include "ridgeline/kernels/quant_pack.hpp"

using namespace ridgeline;

namespace {

using device_packed = test::device_packed_matrix;

struct linear_case {
  cpu::quantized_matrix q;
  cpu::packed_quant_matrix p;
  std::vector<float> xf;
  std::vector<bf16_bits> xb;
  std::vector<float> ref;      // linear_ref [tokens][rows]
  std::vector<double> abs_wx;  // sum |w x| per output
  std::vector<double> abs_sx;  // int4: sum |s x| per output (the zero-point-as-mma rounding)
};

linear_case make_case(cpu::quant_format f, int rows, int cols, int tokens, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(rows) * cols);
  for (auto& v : w) v = n(rng);
  linear_case c;
  c.q = cpu::quantize(f, rows, cols, w, 128);
  c.p = cpu::pack_quantized(c.q.view());
  c.xf.resize(static_cast<std::size_t>(tokens) * cols);
  c.xb.resize(c.xf.size());
  for (std::size_t i = 0; i < c.xf.size(); ++i) {
    c.xb[i] = cpu::float_to_bf16(u(rng));
    c.xf[i] = cpu::bf16_to_float(c.xb[i]);
  }
  c.ref.resize(static_cast<std::size_t>(tokens) * rows);
  cpu::linear_ref(c.q.view(), c.xf, c.ref, tokens);
  const std::vector<float> wd = cpu::dequantize(c.q.view());
  c.abs_wx.assign(c.ref.size(), 0.0);
  c.abs_sx.assign(c.ref.size(), 0.0);
  const packed_quant_view pv = c.p.view();
  for (int t = 0; t < tokens; ++t) {
    for (int r = 0; r < rows; ++r) {
      double a = 0, b = 0;
      for (int k = 0; k < cols; ++k) {
        const double x = c.xf[static_cast<std::size_t>(t) * cols + k];
        a += std::fabs(double(wd[static_cast<std::size_t>(r) * cols + k]) * x);
        if (pv.kind == packed_quant_kind::int4_group) {
          const float s = c.p.scales[packed_scale_index(pv.groups(), r, k / pv.group_size)];
          b += std::fabs(double(s) * x);
        }
      }
      c.abs_wx[static_cast<std::size_t>(t) * rows + r] = a;
      c.abs_sx[static_cast<std::size_t>(t) * rows + r] = b;
    }
  }
  return c;
}

// run_quant with y poisoned (bf16 NaN) and a guard band after it; returns y as floats.
std::vector<float> run_quant(cuda::linear_runner& lr, const linear_case& c, const device_packed& w,
                             int tokens, bf16_bits* scratch, cudaStream_t s) {
  const int rows = c.q.rows, cols = c.q.cols;
  const std::size_t n = static_cast<std::size_t>(tokens) * rows, guard = 128;
  auto x = test::upload(c.xb);
  auto y = test::upload(std::vector<bf16_bits>(n + guard, 0x7fc1));
  linear_params p{x.data<bf16_bits>(), nullptr, y.data(), false, tokens, cols, rows};
  lr.run_quant(p, w.view(), scratch, s);
  RIDGELINE_CUDA_CHECK(cudaStreamSynchronize(s));
  const auto got = test::download<bf16_bits>(y, 0, n + guard);
  for (std::size_t i = n; i < n + guard; ++i) EXPECT_EQ(got[i], 0x7fc1) << "guard " << i - n;
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = cpu::bf16_to_float(got[i]);
  return out;
}

// Every output within atol(i) + 2^-8 |ref| (NaN fails); the first mismatches reported.
template <class Atol>
void expect_within(const std::vector<float>& got, const linear_case& c, Atol atol,
                   const std::string& what) {
  int bad = 0;
  double worst = 0;
  for (std::size_t i = 0; i < c.ref.size(); ++i) {
    const double tol = std::ldexp(std::fabs(double(c.ref[i])), -8) + atol(i);
    const double err = std::fabs(double(got[i]) - c.ref[i]);
    worst = std::max(worst, err / tol);
    if (!(err <= tol) && ++bad <= 5) {
      ADD_FAILURE() << what << " output " << i << ": gpu " << got[i] << ", reference " << c.ref[i];
    }
  }
  EXPECT_EQ(bad, 0) << what << ": worst " << worst << " of tolerance";
}

const cpu::quant_format k_formats[] = {cpu::quant_format::int4_group, cpu::quant_format::q4_0,
                                       cpu::quant_format::q8_0, cpu::quant_format::int8_channel,
                                       cpu::quant_format::fp8_e4m3_channel};

}  // namespace

TEST(QuantLinear, EveryPathMatchesTheReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  std::uint32_t seed = 1;
  for (const cpu::quant_format f : k_formats) {
    for (const int rows : {45, 300}) {
      const int cols = 384;
      for (const int tokens : {1, 13, 64, 65, 200, 257}) {
        const std::string what = cpu::quant_format_name(f) + " rows " + std::to_string(rows) +
                                 " tokens " + std::to_string(tokens);
        SCOPED_TRACE(what);
        const linear_case c = make_case(f, rows, cols, tokens, seed++);
        const device_packed w(c.p);
        auto scratch = test::upload(std::vector<bf16_bits>(std::size_t(rows) * cols, 0));
        // The quantized GEMV (one launch or 64-token slices): docs/kernels.md's tolerance.
        cuda::linear_runner gemv({.quant_force = cuda::quant_linear_path::gemv});
        const bool is_int4 = c.p.kind == packed_quant_kind::int4_group;
        expect_within(run_quant(gemv, c, w, tokens, nullptr, s.get()), c,
                      [&](std::size_t i) {
                        return std::ldexp(c.abs_wx[i] + (is_int4 ? c.abs_sx[i] : 0.0), -13);
                      },
                      what + " gemv");
        // Dequantize + bf16 GEMM: weights rounded to bf16 (half a unit of 8 bits each), doubled.
        cuda::linear_runner dq({.quant_force = cuda::quant_linear_path::dequant});
        const std::vector<float> y_dq =
            run_quant(dq, c, w, tokens, scratch.data<bf16_bits>(), s.get());
        expect_within(y_dq, c, [&](std::size_t i) { return std::ldexp(c.abs_wx[i], -8); },
                      what + " dequant");
        // ... bitwise the bf16 path of the same runner on the reference's bf16 weights.
        auto wb = test::upload(cpu::dequantize_packed_bf16(c.p.view()));
        auto x = test::upload(c.xb);
        auto y = test::upload(std::vector<bf16_bits>(std::size_t(tokens) * rows, 0x7fc1));
        dq.run({x.data<bf16_bits>(), wb.data<bf16_bits>(), y.data(), false, tokens, cols, rows},
               s.get());
        s.synchronize();
        const auto y_bf16 = test::download<bf16_bits>(y, 0, std::size_t(tokens) * rows);
        for (std::size_t i = 0; i < y_bf16.size(); ++i) {
          ASSERT_EQ(cpu::bf16_to_float(y_bf16[i]), y_dq[i]) << "output " << i;
        }
        // The automatic choice takes one of the two.
        cuda::linear_runner automatic;
        EXPECT_EQ(automatic.quant_path_for(tokens), tokens <= cuda::k_quant_sliced_max_tokens
                                                        ? cuda::quant_linear_path::gemv
                                                        : cuda::quant_linear_path::dequant);
        const std::vector<float> y_auto =
            run_quant(automatic, c, w, tokens, scratch.data<bf16_bits>(), s.get());
        if (tokens > cuda::k_quant_sliced_max_tokens) {
          EXPECT_EQ(y_auto, y_dq);
        }
      }
    }
  }
}

// A slice's rows are the rows of its tokens run alone: the 65th token of a 65-token step (the
// second slice, one token) equals that token on its own, in every format.
TEST(QuantLinear, SlicesAreTheirTokensAlone) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  std::uint32_t seed = 900;
  for (const cpu::quant_format f : k_formats) {
    SCOPED_TRACE(cpu::quant_format_name(f));
    const int rows = 77, cols = 256, tokens = 65;
    const linear_case c = make_case(f, rows, cols, tokens, seed++);
    const device_packed w(c.p);
    cuda::linear_runner lr;
    const std::vector<float> all = run_quant(lr, c, w, tokens, nullptr, s.get());
    linear_case last = c;
    last.xb.assign(c.xb.end() - cols, c.xb.end());
    const std::vector<float> alone = run_quant(lr, last, w, 1, nullptr, s.get());
    for (int r = 0; r < rows; ++r) {
      ASSERT_EQ(all[std::size_t(64) * rows + r], alone[static_cast<std::size_t>(r)]) << "row " << r;
    }
  }
}

// Batch-invariant mode dequantizes at every token count, so a token's row is the same alone or
// in a batch; a missing scratch and mismatched shapes are refused.
TEST(QuantLinear, BatchInvariantAndErrors) {
  RIDGELINE_REQUIRE_GPU();
  cuda::stream s;
  const int rows = 40, cols = 256;
  const linear_case c = make_case(cpu::quant_format::int4_group, rows, cols, 9, 77);
  const device_packed w(c.p);
  auto scratch = test::upload(std::vector<bf16_bits>(std::size_t(rows) * cols, 0));
  cuda::linear_runner inv({.batch_invariant = true});
  EXPECT_EQ(inv.quant_path_for(1), cuda::quant_linear_path::dequant);
  const std::vector<float> all = run_quant(inv, c, w, 9, scratch.data<bf16_bits>(), s.get());
  linear_case first = c;
  first.xb.resize(cols);
  const std::vector<float> alone = run_quant(inv, first, w, 1, scratch.data<bf16_bits>(), s.get());
  for (int r = 0; r < rows; ++r) ASSERT_EQ(all[static_cast<std::size_t>(r)], alone[std::size_t(r)]);

  auto x = test::upload(c.xb);
  auto y = test::upload(std::vector<bf16_bits>(std::size_t(9) * rows, 0));
  linear_params p{x.data<bf16_bits>(), nullptr, y.data(), false, 9, cols, rows};
  EXPECT_THROW(inv.run_quant(p, w.view(), nullptr, s.get()), std::invalid_argument);
  cuda::linear_runner lr;
  linear_params wrong = p;
  wrong.in_features = 128;
  EXPECT_THROW(lr.run_quant(wrong, w.view(), nullptr, s.get()), std::invalid_argument);
  p.num_tokens = cuda::k_quant_sliced_max_tokens + 1;
  EXPECT_THROW(lr.run_quant(p, w.view(), nullptr, s.get()), std::invalid_argument);
}
