// Linear layers on the GPU (GEMV path and cuBLASLt path) against the naive CPU reference on random
// bf16 inputs at odd shapes. Tolerance: |gpu - ref| <= 2^-7 |ref| + 2^-16 * k * max|x||w| for a
// bf16 output (both sides round to bf16, so they may differ by one unit in the last place near a
// rounding boundary, plus fp32 accumulation); for fp32 output the second term alone.
#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "cuda/linear.hpp"
#include "cuda/ops.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/linear_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

using namespace ridgeline;

namespace {

std::vector<bf16_bits> random_bf16(std::size_t n, std::mt19937& rng, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<bf16_bits> v(n);
  for (auto& x : v) x = cpu::float_to_bf16(u(rng));
  return v;
}

void check(int tokens, int in, int out, bool fp32, cuda::linear_runner::path path,
           cuda::linear_runner& runner) {
  SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in) + " out=" +
               std::to_string(out) + " fp32=" + std::to_string(fp32) +
               " path=" + std::to_string(static_cast<int>(path)));
  std::mt19937 rng(static_cast<unsigned>(tokens * 131 + in * 7 + out));
  const auto x = random_bf16(std::size_t(tokens) * in, rng, 1.0f);
  const auto w = random_bf16(std::size_t(out) * in, rng, 0.5f);
  const std::size_t y_elems = std::size_t(tokens) * out, y_bytes = y_elems * (fp32 ? 4 : 2);
  std::vector<unsigned char> ref(y_bytes);
  cpu::linear({x.data(), w.data(), ref.data(), fp32, tokens, in, out});

  auto dx = test::upload(x), dw = test::upload(w);
  constexpr std::size_t guard = 256;
  std::vector<unsigned char> init(y_bytes + 2 * guard, 0xff);  // NaN poison
  auto dy = test::upload(init);
  cuda::stream s;
  runner.set_path(path);
  runner.run({dx.data<bf16_bits>(), dw.data<bf16_bits>(), dy.data<unsigned char>() + guard, fp32,
              tokens, in, out},
             s.get());
  s.synchronize();
  const auto got = test::download<unsigned char>(dy, 0, init.size());
  for (std::size_t i = 0; i < guard; ++i) {
    ASSERT_EQ(got[i], 0xff);
    ASSERT_EQ(got[guard + y_bytes + i], 0xff);
  }
  const double acc_tol = std::ldexp(1.0, -16) * in * 1.0 * 0.5;
  int bad = 0;
  for (std::size_t i = 0; i < y_elems; ++i) {
    double g, r;
    if (fp32) {
      g = reinterpret_cast<const float*>(&got[guard])[i];
      r = reinterpret_cast<const float*>(ref.data())[i];
    } else {
      g = cpu::bf16_to_float(reinterpret_cast<const bf16_bits*>(&got[guard])[i]);
      r = cpu::bf16_to_float(reinterpret_cast<const bf16_bits*>(ref.data())[i]);
    }
    const double tol = (fp32 ? 0.0 : std::ldexp(1.0, -7) * std::fabs(r)) + acc_tol;
    if (!(std::fabs(g - r) <= tol) && bad++ < 5) {
      ADD_FAILURE() << "element " << i << " (token " << i / out << ", out " << i % out
                    << "): got " << g << ", reference " << r << ", tolerance " << tol;
    }
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace

TEST(Linear, GemvMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner;
  // Every k split (including slices shorter than a warp's 32 vectors) and unroll.
  for (int ks : {1, 2, 4}) {
    for (int unroll : {4, 8}) {
      runner.set_gemv_options({unroll, ks, false});
      for (int tokens : {1, 2, 3, 5, 8}) {
        for (auto [in, out] : {std::pair{8, 1}, std::pair{136, 7}, std::pair{1032, 33}, std::pair{4096, 131}}) {
          check(tokens, in, out, false, cuda::linear_runner::path::gemv, runner);
          check(tokens, in, out, true, cuda::linear_runner::path::gemv, runner);
        }
      }
    }
  }
}

TEST(Linear, CublasPathMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner;
  for (int tokens : {1, 9, 17, 64}) {
    for (auto [in, out] : {std::pair{136, 8}, std::pair{1032, 40}}) {
      check(tokens, in, out, false, cuda::linear_runner::path::cublas, runner);
      check(tokens, in, out, true, cuda::linear_runner::path::cublas, runner);
    }
  }
}

TEST(Linear, SkinnyGemmMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner;
  // Every token tile (16, 32, 64 tokens) with partial tiles; out not a multiple of the 128-feature
  // CTA tile; k not a multiple of the 64-wide stage (136, 1032), shorter than the 4-stage pipeline
  // (8, 136) and longer (4096, 11008); 1 to 8 splits, more splits than k tiles included.
  for (int splits : {1, 2, 3, 8}) {
    runner.set_skinny_splits(splits);
    for (int tokens : {1, 2, 9, 16, 17, 33, 63, 64}) {
      for (auto [in, out] : {std::pair{8, 1}, std::pair{136, 23}, std::pair{1032, 129},
                             std::pair{4096, 257}}) {
        check(tokens, in, out, false, cuda::linear_runner::path::skinny, runner);
      }
    }
  }
  runner.set_skinny_splits(0);  // the estimate
  check(5, 4096, 517, true, cuda::linear_runner::path::skinny, runner);
  check(64, 11008, 300, false, cuda::linear_runner::path::skinny, runner);
  check(64, 11008, 300, true, cuda::linear_runner::path::skinny, runner);
}

TEST(Linear, SkinnyGemmIsDeterministicAndRejectsBadShapes) {
  RIDGELINE_REQUIRE_GPU();
  std::mt19937 rng(5);
  const int tokens = 37, in = 4104, out = 389;
  const auto x = random_bf16(std::size_t(tokens) * in, rng, 1.0f);
  const auto w = random_bf16(std::size_t(out) * in, rng, 0.5f);
  auto dx = test::upload(x), dw = test::upload(w);
  cuda::device_buffer y1(std::size_t(tokens) * out * 4), y2(y1.bytes());
  cuda::stream s;
  const linear_params p1{dx.data<bf16_bits>(), dw.data<bf16_bits>(), y1.data(), true, tokens, in, out};
  linear_params p2 = p1;
  p2.y = y2.data();
  cuda::skinny_gemm(p1, 8, false, s.get());
  cuda::skinny_gemm(p2, 8, true, s.get());
  s.synchronize();
  EXPECT_EQ(test::download<float>(y1, 0, std::size_t(tokens) * out),
            test::download<float>(y2, 0, std::size_t(tokens) * out));
  linear_params bad = p1;
  bad.num_tokens = cuda::k_skinny_max_tokens + 1;
  EXPECT_THROW(cuda::skinny_gemm(bad, 1, false, s.get()), std::invalid_argument);
  bad = p1;
  bad.in_features = 4100;
  EXPECT_THROW(cuda::skinny_gemm(bad, 1, false, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::skinny_gemm(p1, 9, false, s.get()), std::invalid_argument);
}

TEST(Linear, AutomaticPathMatchesReferenceAtDecodeBatches) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner;
  // Whatever the plan picks (cuBLASLt or the skinny GEMM) must be right.
  for (int tokens : {2, 24, 64, 65}) {
    check(tokens, 4096, 1000, false, cuda::linear_runner::path::automatic, runner);
  }
}

TEST(Linear, RejectsBadShapes) {
  RIDGELINE_REQUIRE_GPU();
  cuda::device_buffer b(1 << 12);
  const auto* p = b.data<bf16_bits>();
  EXPECT_THROW(cuda::gemv({p, p, b.data(), false, 1, 12, 4}, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::gemv({p, p, b.data(), false, 9, 16, 4}, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::gemv({p, p, b.data(), false, 0, 16, 4}, nullptr), std::invalid_argument);
}

TEST(GatherRows, MatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  std::mt19937 rng(17);
  cuda::stream s;
  // Vectorized (multiples of 8, aligned) and scalar (odd windows) paths; an index map.
  for (auto [rows, stride, col, cols] :
       {std::tuple{5, 96, 32, 32}, std::tuple{3, 37, 11, 13}, std::tuple{1, 24, 8, 8}}) {
    const auto src = random_bf16(std::size_t(rows) * stride, rng, 1.0f);
    auto dsrc = test::upload(src);
    std::vector<std::int32_t> map(rows);
    for (int r = 0; r < rows; ++r) map[r] = rows - 1 - r;
    auto dmap = test::upload(map);
    for (bool mapped : {false, true}) {
      cuda::device_buffer out(std::size_t(rows) * cols * 2);
      cuda::gather_rows({dsrc.data<bf16_bits>(), stride, col, mapped ? dmap.data<std::int32_t>() : nullptr,
                         out.data<bf16_bits>(), rows, cols},
                        s.get());
      s.synchronize();
      std::vector<bf16_bits> ref(std::size_t(rows) * cols);
      cpu::gather_rows({src.data(), stride, col, mapped ? map.data() : nullptr, ref.data(), rows, cols});
      EXPECT_EQ(test::download<bf16_bits>(out, 0, ref.size()), ref) << "mapped " << mapped;
    }
  }
}

// The gate_up GEMV with SwiGLU in its epilogue: against the CPU reference (linear then swiglu,
// within the bf16 tolerance) and bit for bit against the unfused GEMV + swiglu kernel, at odd
// intermediate sizes, every k split and 1 ... 8 tokens. Output poisoned with NaN beforehand.
TEST(Linear, GemvSwigluMatchesReferenceAndUnfusedBits) {
  RIDGELINE_REQUIRE_GPU();
  for (int ks : {1, 2, 4}) {
    for (int tokens : {1, 3, 8}) {
      for (auto [in, inter] : {std::pair{136, 7}, std::pair{1032, 45}, std::pair{4096, 259}}) {
        SCOPED_TRACE("ks=" + std::to_string(ks) + " tokens=" + std::to_string(tokens) +
                     " in=" + std::to_string(in) + " inter=" + std::to_string(inter));
        std::mt19937 rng(static_cast<unsigned>(ks * 7919 + tokens * 131 + in + inter));
        const int out = 2 * inter;
        const auto x = random_bf16(std::size_t(tokens) * in, rng, 1.0f);
        const auto w = random_bf16(std::size_t(out) * in, rng, 0.5f);
        std::vector<bf16_bits> gu(std::size_t(tokens) * out), ref(std::size_t(tokens) * inter);
        cpu::linear({x.data(), w.data(), gu.data(), false, tokens, in, out});
        cpu::swiglu({gu.data(), ref.data(), tokens, inter});

        auto dx = test::upload(x), dw = test::upload(w);
        std::vector<bf16_bits> poison(std::size_t(tokens) * out, 0x7fc1);
        auto dgu = test::upload(poison), dfused = test::upload(poison),
             dplain = test::upload(poison);
        cuda::stream s;
        const cuda::gemv_options o{4, ks, false};
        const linear_params lp{dx.data<bf16_bits>(), dw.data<bf16_bits>(), dgu.data<bf16_bits>(),
                               false, tokens, in, out};
        cuda::gemv_swiglu(lp, {dgu.data<bf16_bits>(), dfused.data<bf16_bits>(), tokens, inter},
                          s.get(), o);
        cuda::gemv(lp, s.get(), o);
        cuda::swiglu({dgu.data<bf16_bits>(), dplain.data<bf16_bits>(), tokens, inter}, s.get());
        s.synchronize();
        const auto fused = test::download<bf16_bits>(dfused, 0, ref.size());
        const auto plain = test::download<bf16_bits>(dplain, 0, ref.size());
        EXPECT_EQ(fused, plain);
        int bad = 0;
        const double acc_tol = std::ldexp(1.0, -16) * in * 0.5 * 4;
        for (std::size_t i = 0; i < ref.size(); ++i) {
          const double g = cpu::bf16_to_float(fused[i]), r = cpu::bf16_to_float(ref[i]);
          const double tol = std::ldexp(1.0, -6) * std::fabs(r) + acc_tol;
          if (!(std::fabs(g - r) <= tol) && bad++ < 5) {
            ADD_FAILURE() << "element " << i << ": got " << g << ", reference " << r;
          }
        }
        EXPECT_EQ(bad, 0);
      }
    }
  }
}

// Batch-invariant mode: a token's output row is bitwise the same whether it is multiplied alone
// or with 7, 31 or 63 other tokens (one fixed cuBLASLt algorithm per weight, no split-K), for a
// bf16 and an fp32 (logits) output at Llama-like and odd shapes. The default runner (GEMV at one
// token, the fastest cuBLASLt algorithm per token count above) is not required to be.
TEST(Linear, BatchInvariantRowsDoNotDependOnTokenCount) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner;
  runner.set_batch_invariant(true);
  for (auto [in, out, fp32] : {std::tuple{4096, 12288, false}, std::tuple{2048, 32000, true},
                               std::tuple{1032, 520, false}}) {
    SCOPED_TRACE("in=" + std::to_string(in) + " out=" + std::to_string(out));
    std::mt19937 rng(static_cast<unsigned>(in + out));
    const int max_tokens = 64;
    const auto x = random_bf16(std::size_t(max_tokens) * in, rng, 1.0f);
    const auto w = random_bf16(std::size_t(out) * in, rng, 0.05f);
    auto dx = test::upload(x), dw = test::upload(w);
    const std::size_t elem = fp32 ? 4 : 2, row_bytes = std::size_t(out) * elem;
    cuda::device_buffer dy(row_bytes * max_tokens);
    cuda::stream s;
    // Token 0 of x in every batch; the other rows differ per batch size (x shifted).
    std::vector<unsigned char> alone;
    for (int tokens : {1, 8, 32, 64}) {
      std::vector<bf16_bits> xb(x.begin(), x.begin() + std::ptrdiff_t(tokens) * in);
      for (int t = 1; t < tokens; ++t) {
        const std::size_t src = std::size_t((t * 7 + tokens) % max_tokens) * in;
        for (int k = 0; k < in; ++k) xb[std::size_t(t) * in + k] = x[src + k];
      }
      auto dxb = test::upload(xb);
      runner.run({dxb.data<bf16_bits>(), dw.data<bf16_bits>(), dy.data(), fp32, tokens, in, out},
                 s.get());
      s.synchronize();
      const auto row = test::download<unsigned char>(dy, 0, row_bytes);
      if (tokens == 1) {
        alone = row;
      } else {
        EXPECT_TRUE(row == alone) << "token 0's row differs at " << tokens << " tokens";
      }
    }
  }
}

namespace {

constexpr bf16_bits k_nan_bf16 = 0x7fc1;
constexpr std::size_t k_guard_elems = 128;  // bf16 guard band on each side of an output

// A device copy of n poisoned bf16 elements with guard bands of the same value on each side.
struct poisoned {
  cuda::device_buffer buf;
  std::size_t n;
  explicit poisoned(std::size_t count)
      : buf(test::upload(std::vector<bf16_bits>(count + 2 * k_guard_elems, k_nan_bf16))),
        n(count) {}
  bf16_bits* data() const { return buf.data<bf16_bits>() + k_guard_elems; }
  // The interior; fails the test when a guard band changed.
  std::vector<bf16_bits> download_checked(const char* what) const {
    const auto all = test::download<bf16_bits>(buf, 0, n + 2 * k_guard_elems);
    for (std::size_t i = 0; i < k_guard_elems; ++i) {
      if (all[i] != k_nan_bf16 || all[k_guard_elems + n + i] != k_nan_bf16) {
        ADD_FAILURE() << what << ": guard band written near element " << i;
        break;
      }
    }
    return {all.begin() + k_guard_elems, all.begin() + k_guard_elems + std::ptrdiff_t(n)};
  }
};

// Bound on |gpu - ref| of a linear layer's bf16 output y[t][o] when the GPU multiplies rms_norm's
// output as the GPU computes it and the reference multiplies the CPU reference's xn: each xn
// element may sit one bf16 ulp (2^-7 relative) away (k_rms_norm_tol of ops_test.cpp), which moves
// y by at most 2^-7 sum_i |w[o][i] xn[t][i]|; plus the plain GEMV's tolerance (one bf16 rounding
// apart, fp32 accumulation).
double norm_linear_bound(const std::vector<bf16_bits>& xn, const std::vector<bf16_bits>& w, int t,
                         int o, int in, double ref, double max_x, double max_w) {
  double shifted = 0;
  for (int i = 0; i < in; ++i) {
    shifted += std::fabs(double(cpu::bf16_to_float(w[std::size_t(o) * in + i])) *
                         cpu::bf16_to_float(xn[std::size_t(t) * in + i]));
  }
  return std::ldexp(1.0, -7) * (std::fabs(ref) + shifted) +
         std::ldexp(1.0, -16) * in * max_x * max_w;
}

// The GEMV with the residual add + RMSNorm in its prologue (gemv_norm, gemv_norm_swiglu with
// glu) on random rows: bitwise against rms_norm (vector path, residual out of place) then the
// GEMV (gemv_swiglu with glu) on the same device, within the bound above against the CPU
// references (rms_norm, linear, swiglu). The new residual is exactly the reference's; the old
// residual and the input are left as they were; the norm's out (unused by the fused path) stays
// poisoned; outputs are poisoned with NaN and guarded. `out` is out_features (glu: intermediate).
void check_gemv_norm(int tokens, int in, int out, bool with_residual, bool glu,
                     const cuda::gemv_options& o) {
  SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in) +
               " out=" + std::to_string(out) + " residual=" + std::to_string(with_residual) +
               " glu=" + std::to_string(glu) + " unroll=" + std::to_string(o.unroll) +
               " ks=" + std::to_string(o.k_splits) + " pdl=" + std::to_string(o.pdl));
  std::mt19937 rng(static_cast<unsigned>(tokens * 7919 + in * 31 + out * 3 + with_residual +
                                         (glu ? 2 : 0) + o.k_splits * 11 + o.unroll));
  const int rows = glu ? 2 * out : out;  // weight rows
  const std::size_t nx = std::size_t(tokens) * in;
  const float eps = 1e-5f;
  const auto input = random_bf16(nx, rng, 2.0f);
  const auto residual = random_bf16(nx, rng, 2.0f);
  const auto gamma = random_bf16(std::size_t(in), rng, 1.5f);
  const auto w = random_bf16(std::size_t(rows) * in, rng, 0.5f);

  // CPU references.
  auto ref_old = residual;
  std::vector<bf16_bits> ref_new(nx), xn(nx), ref_y(std::size_t(tokens) * rows),
      ref_act(std::size_t(tokens) * out);
  cpu::rms_norm({input.data(), with_residual ? ref_old.data() : nullptr, gamma.data(), xn.data(),
                 tokens, in, eps, with_residual ? ref_new.data() : nullptr});
  ASSERT_EQ(ref_old, residual);  // out of place
  cpu::linear({xn.data(), w.data(), ref_y.data(), false, tokens, in, rows});
  if (glu) cpu::swiglu({ref_y.data(), ref_act.data(), tokens, out});

  auto d_input = test::upload(input), d_residual = test::upload(residual),
       d_gamma = test::upload(gamma), d_w = test::upload(w);
  const std::size_t ny = std::size_t(tokens) * (glu ? out : rows);
  poisoned f_new(nx), f_xn(nx), f_y(ny), u_new(nx), u_xn(nx), u_y(ny);
  cuda::stream s;
  auto norm = [&](const poisoned& new_res, const poisoned& xn_out) {
    return rms_norm_params{d_input.data<bf16_bits>(),
                           with_residual ? d_residual.data<bf16_bits>() : nullptr,
                           d_gamma.data<bf16_bits>(),
                           xn_out.data(),
                           tokens,
                           in,
                           eps,
                           with_residual ? new_res.data() : nullptr};
  };
  // With glu, y of the layer is not written (only act); a poisoned placeholder of its size.
  poisoned gate_up(glu ? std::size_t(tokens) * rows : 1);
  auto layer = [&](const poisoned& xn_in, const poisoned& y) {
    return linear_params{
        xn_in.data(), d_w.data<bf16_bits>(), glu ? gate_up.data() : y.data(), false, tokens, in,
        rows};
  };
  const rms_norm_params fused_norm = norm(f_new, f_xn), plain_norm = norm(u_new, u_xn);
  ASSERT_EQ(cuda::gemv_norm_unsupported(fused_norm, layer(f_xn, f_y)), "");
  if (glu) {
    cuda::gemv_norm_swiglu(fused_norm, layer(f_xn, f_y), {gate_up.data(), f_y.data(), tokens, out},
                           s.get(), o);
    cuda::rms_norm(plain_norm, s.get());
    cuda::gemv_swiglu(layer(u_xn, u_y), {gate_up.data(), u_y.data(), tokens, out}, s.get(), o);
  } else {
    cuda::gemv_norm(fused_norm, layer(f_xn, f_y), s.get(), o);
    cuda::rms_norm(plain_norm, s.get());
    cuda::gemv(layer(u_xn, u_y), s.get(), o);
  }
  s.synchronize();
  const auto fused = f_y.download_checked("fused y"), plain = u_y.download_checked("unfused y");
  EXPECT_TRUE(fused == plain) << "fused output differs from rms_norm + GEMV";
  const auto fused_new = f_new.download_checked("fused new residual");
  if (with_residual) {
    EXPECT_TRUE(fused_new == ref_new) << "new residual differs from the reference";
    EXPECT_TRUE(u_new.download_checked("unfused new residual") == ref_new);
  } else {
    EXPECT_TRUE(fused_new == std::vector<bf16_bits>(nx, k_nan_bf16)) << "residual_out written";
  }
  EXPECT_TRUE(test::download<bf16_bits>(d_residual, 0, nx) == residual) << "old residual changed";
  EXPECT_TRUE(test::download<bf16_bits>(d_input, 0, nx) == input) << "input changed";
  EXPECT_TRUE(f_xn.download_checked("fused norm out") == std::vector<bf16_bits>(nx, k_nan_bf16))
      << "the fused path wrote the norm's out";

  double max_x = 0, max_w = 0;
  for (auto v : xn) max_x = std::max(max_x, double(std::fabs(cpu::bf16_to_float(v))));
  for (auto v : w) max_w = std::max(max_w, double(std::fabs(cpu::bf16_to_float(v))));
  int bad = 0;
  double worst = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int c = 0; c < (glu ? out : rows); ++c) {
      const std::size_t at = std::size_t(t) * (glu ? out : rows) + c;
      const double g = cpu::bf16_to_float(fused[at]);
      double r, tol;
      if (!glu) {
        r = cpu::bf16_to_float(ref_y[at]);
        tol = norm_linear_bound(xn, w, t, c, in, r, max_x, max_w);
      } else {
        // act = silu(g) u: |d act| <= 1.1 |d g| |u| + |silu(g)| |d u| + 1.1 |d g| |d u| (|silu'|
        // <= 1.1), then one bf16 rounding on each side.
        const double gate = cpu::bf16_to_float(ref_y[std::size_t(t) * rows + c]);
        const double up = cpu::bf16_to_float(ref_y[std::size_t(t) * rows + out + c]);
        const double eg = norm_linear_bound(xn, w, t, c, in, gate, max_x, max_w);
        const double eu = norm_linear_bound(xn, w, t, out + c, in, up, max_x, max_w);
        const double silu = gate / (1.0 + std::exp(-gate));
        r = cpu::bf16_to_float(ref_act[at]);
        tol = std::ldexp(1.0, -7) * std::fabs(r) + 1.1 * eg * std::fabs(up) + std::fabs(silu) * eu +
              1.1 * eg * eu;
      }
      worst = std::max(worst, std::fabs(g - r) / tol);
      if (!(std::fabs(g - r) <= tol) && bad++ < 5) {  // NaN fails
        ADD_FAILURE() << "token " << t << " output " << c << ": got " << g << ", reference " << r
                      << ", tolerance " << tol;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "worst at " << worst << " of the tolerance";
}

}  // namespace

// Every k split, unroll, token count (1 ... 8: each of the 1, 2, 4 and 8-token kernels, full and
// partial) and rms_norm vector shape (hidden 8: one vector a row; 136: 17 vectors, a partial warp;
// 4096: 512 threads of rms_norm for 256 here; 4104: two vectors per thread; 8200: four), with and
// without a residual, odd out_features. in_features stays a multiple of 8: the GEMV requires it.
TEST(Linear, GemvNormMatchesReferenceAndUnfusedBits) {
  RIDGELINE_REQUIRE_GPU();
  for (int ks : {1, 2, 4}) {
    for (int unroll : {4, 8}) {
      for (int tokens : {1, 2, 3, 5, 8}) {
        for (auto [in, out] : {std::pair{8, 1}, std::pair{136, 7}, std::pair{1032, 33},
                               std::pair{4096, 131}, std::pair{4104, 17}, std::pair{8200, 9}}) {
          for (bool with_residual : {true, false}) {
            check_gemv_norm(tokens, in, out, with_residual, false, {unroll, ks, false});
          }
        }
      }
    }
  }
  // With programmatic dependent launch (the engine's setting): the wait is where the norm starts.
  check_gemv_norm(1, 4096, 131, true, false, {4, 0, true});
}

TEST(Linear, GemvNormSwigluMatchesReferenceAndUnfusedBits) {
  RIDGELINE_REQUIRE_GPU();
  for (int ks : {1, 2, 4}) {
    for (int tokens : {1, 3, 8}) {
      for (auto [in, inter] :
           {std::pair{136, 7}, std::pair{1032, 45}, std::pair{4096, 259}, std::pair{4104, 5}}) {
        for (bool with_residual : {true, false}) {
          check_gemv_norm(tokens, in, inter, with_residual, true, {4, ks, false});
        }
      }
    }
  }
  check_gemv_norm(1, 4096, 259, true, true, {8, 0, true});
}

// linear_runner::run_norm fuses only on the GEMV path (1 token by default, any token count up to
// 8 when the GEMV is forced), with fusion on and a residual out of place; everywhere else it runs
// rms_norm then the linear layer as before. Every case is bitwise rms_norm + run.
TEST(Linear, RunNormFusesOnlyOnTheGemvPath) {
  RIDGELINE_REQUIRE_GPU();
  const int in = 1032, out = 40, max_tokens = 9;
  std::mt19937 rng(99);
  const std::size_t nx = std::size_t(max_tokens) * in;
  const auto input = random_bf16(nx, rng, 2.0f), residual = random_bf16(nx, rng, 2.0f);
  const auto gamma = random_bf16(in, rng, 1.5f), w = random_bf16(std::size_t(out) * in, rng, 0.5f);
  auto d_input = test::upload(input), d_gamma = test::upload(gamma), d_w = test::upload(w);
  cuda::stream s;
  struct want {
    int tokens;
    cuda::linear_runner::path path;
    bool invariant, fuse, in_place, fused;
  };
  using P = cuda::linear_runner::path;
  for (const want c : {want{1, P::automatic, false, true, false, true},
                       want{2, P::automatic, false, true, false, false},
                       want{5, P::gemv, false, true, false, true},
                       want{9, P::automatic, false, true, false, false},
                       want{1, P::automatic, true, true, false, false},
                       want{1, P::automatic, false, false, false, false},
                       want{1, P::automatic, false, true, true, false}}) {
    SCOPED_TRACE("tokens=" + std::to_string(c.tokens) +
                 " path=" + std::to_string(static_cast<int>(c.path)) +
                 " invariant=" + std::to_string(c.invariant) + " fuse=" + std::to_string(c.fuse) +
                 " in_place=" + std::to_string(c.in_place));
    // One runner for both ways: the cuBLASLt algorithm it times and keeps per shape is shared.
    cuda::linear_runner runner;
    runner.set_path(c.path);
    runner.set_batch_invariant(c.invariant);
    runner.set_fuse_norm(c.fuse);
    std::vector<bf16_bits> result[2][2];  // [run_norm, rms_norm + run][y, residual]
    for (int way = 0; way < 2; ++way) {
      auto d_res = test::upload(residual);
      cuda::device_buffer d_new(nx * 2), d_xn(nx * 2), d_y(std::size_t(max_tokens) * out * 2);
      const rms_norm_params n{d_input.data<bf16_bits>(),
                              d_res.data<bf16_bits>(),
                              d_gamma.data<bf16_bits>(),
                              d_xn.data<bf16_bits>(),
                              c.tokens,
                              in,
                              1e-5f,
                              c.in_place ? nullptr : d_new.data<bf16_bits>()};
      const linear_params l{
          d_xn.data<bf16_bits>(), d_w.data<bf16_bits>(), d_y.data(), false, c.tokens, in, out};
      if (way == 0) {
        EXPECT_EQ(runner.fuses_norm(n, l), c.fused);
        runner.run_norm(n, l, s.get());
      } else {
        cuda::rms_norm(n, s.get());
        runner.run(l, s.get());
      }
      s.synchronize();
      result[way][0] = test::download<bf16_bits>(d_y, 0, std::size_t(c.tokens) * out);
      result[way][1] =
          test::download<bf16_bits>(c.in_place ? d_res : d_new, 0, std::size_t(c.tokens) * in);
    }
    EXPECT_TRUE(result[0][0] == result[1][0]) << "outputs differ";
    EXPECT_TRUE(result[0][1] == result[1][1]) << "new residuals differ";
  }
}

TEST(Linear, GemvNormRejectsBadArguments) {
  RIDGELINE_REQUIRE_GPU();
  cuda::device_buffer b(1 << 20);
  auto* p = b.data<bf16_bits>();
  bf16_bits* res = p + 4096;
  bf16_bits* res_out = p + 8192;
  const rms_norm_params good{p, res, p + 16384, p + 20480, 1, 64, 1e-5f, res_out};
  const linear_params l{p + 20480, p + 32768, p + 65536, false, 1, 64, 16};
  EXPECT_EQ(cuda::gemv_norm_unsupported(good, l), "");
  auto rejects = [&](rms_norm_params n, linear_params ll, const char* what) {
    EXPECT_NE(cuda::gemv_norm_unsupported(n, ll), "") << what;
    EXPECT_THROW(cuda::gemv_norm(n, ll, nullptr), std::invalid_argument) << what;
  };
  rms_norm_params n = good;
  n.residual_out = nullptr;
  rejects(n, l, "in-place residual");
  n.residual_out = res;
  rejects(n, l, "residual_out == residual");
  n = good;
  n.hidden = 72;
  rejects(n, l, "hidden != in_features");
  n = good;
  n.residual = nullptr;
  rejects(n, l, "residual_out without residual");
  n = good;
  n.input = p + 1;
  rejects(n, l, "misaligned input");
  linear_params bad = l;
  bad.num_tokens = 9;
  n = good;
  n.num_tokens = 9;
  rejects(n, bad, "9 tokens");
  bad = l;
  bad.y_fp32 = true;
  rejects(good, bad, "fp32 output");
  bad = l;
  bad.in_features = 60;
  n = good;
  n.hidden = 60;
  rejects(n, bad, "in_features not a multiple of 8");
  cuda::linear_runner runner;
  bad = l;
  bad.x = p;  // does not read the norm's out
  EXPECT_THROW(runner.run_norm(good, bad, nullptr), std::invalid_argument);
}
