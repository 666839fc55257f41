// Linear layers on the GPU (GEMV path and cuBLASLt path) against the naive CPU reference on random
// bf16 inputs at odd shapes. Tolerance: |gpu - ref| <= 2^-7 |ref| + 2^-16 * k * max|x||w| for a
// bf16 output (both sides round to bf16, so they may differ by one unit in the last place near a
// rounding boundary, plus fp32 accumulation); for fp32 output the second term alone.
#include <cmath>
#include <functional>
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

using linear_op = std::function<void(const linear_params&, cudaStream_t)>;

// Runs p through a runner (built with options that may force one path).
linear_op through(cuda::linear_runner& runner) {
  return [&runner](const linear_params& p, cudaStream_t s) { runner.run(p, s); };
}
cuda::linear_options force(cuda::linear_path path) {
  cuda::linear_options o;
  o.force = path;
  return o;
}

void check(int tokens, int in, int out, bool fp32, const linear_op& op) {
  SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in) + " out=" +
               std::to_string(out) + " fp32=" + std::to_string(fp32));
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
  op({dx.data<bf16_bits>(), dw.data<bf16_bits>(), dy.data<unsigned char>() + guard, fp32, tokens,
      in, out},
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
  // Every k split (including slices shorter than a warp's 32 vectors), unroll and PDL setting.
  for (int ks : {1, 2, 4}) {
    for (int unroll : {4, 8}) {
      const cuda::gemv_options o{unroll, ks, unroll == 8};
      const linear_op gemv = [&](const linear_params& p, cudaStream_t s) { cuda::gemv(p, s, o); };
      for (int tokens : {1, 2, 3, 5, 8}) {
        for (auto [in, out] : {std::pair{8, 1}, std::pair{136, 7}, std::pair{1032, 33}, std::pair{4096, 131}}) {
          check(tokens, in, out, false, gemv);
          check(tokens, in, out, true, gemv);
        }
      }
    }
  }
  // The runner's GEMV path (1 token automatically, up to 8 forced).
  cuda::linear_runner automatic, gemv(force(cuda::linear_path::gemv));
  check(1, 1032, 33, false, through(automatic));
  check(7, 1032, 33, true, through(gemv));
}

TEST(Linear, CublasPathMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner(force(cuda::linear_path::cublas));
  for (int tokens : {1, 9, 17, 64}) {
    for (auto [in, out] : {std::pair{136, 8}, std::pair{1032, 40}}) {
      check(tokens, in, out, false, through(runner));
      check(tokens, in, out, true, through(runner));
    }
  }
}

TEST(Linear, SkinnyGemmMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner(force(cuda::linear_path::skinny));
  // Token counts below, at and between the cluster's activation slices (16 rows each for four
  // CTAs), out not a multiple of any tile width (and wide enough to pick each of them), k not a
  // multiple of the 64-wide slot (136, 1032), shorter than the pipeline (8, 136) and longer (4096,
  // 11008).
  for (int tokens : {1, 2, 9, 16, 17, 33, 63, 64}) {
    for (auto [in, out] : {std::pair{8, 1}, std::pair{136, 23}, std::pair{1032, 129},
                           std::pair{4096, 257}}) {
      check(tokens, in, out, false, through(runner));
    }
  }
  for (int out : {4100, 6150, 8200, 12290, 16390}) {
    check(37, 520, out, false, through(runner));
  }
  check(5, 4096, 517, true, through(runner));
  check(64, 11008, 300, false, through(runner));
  check(64, 11008, 300, true, through(runner));
}

// The SwiGLU form against the CPU GEMM followed by the CPU SwiGLU (the GPU rounds the gate and up
// sums to bf16 before the SwiGLU, as the reference's bf16 GEMM output does): one bf16 unit of the
// sums may differ, so the tolerance is the GEMM's, carried through the SwiGLU's slope.
TEST(Linear, SkinnyGemmSwigluMatchesReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::linear_runner runner(force(cuda::linear_path::skinny));
  for (auto [tokens, in, inter] : {std::tuple{1, 8, 1}, std::tuple{7, 136, 23},
                                   std::tuple{33, 1032, 129}, std::tuple{64, 4096, 700},
                                   std::tuple{64, 520, 11008}, std::tuple{19, 264, 14336}}) {
    SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in) +
                 " inter=" + std::to_string(inter));
    std::mt19937 rng(static_cast<unsigned>(tokens * 31 + in + inter));
    const auto x = random_bf16(std::size_t(tokens) * in, rng, 1.0f);
    const auto w = random_bf16(std::size_t(2 * inter) * in, rng, 0.5f);
    std::vector<bf16_bits> gate_up(std::size_t(tokens) * 2 * inter);
    std::vector<bf16_bits> ref(std::size_t(tokens) * inter);
    cpu::linear({x.data(), w.data(), gate_up.data(), false, tokens, in, 2 * inter});
    cpu::swiglu({gate_up.data(), ref.data(), tokens, inter});
    auto dx = test::upload(x), dw = test::upload(w);
    std::vector<bf16_bits> init(ref.size() + 256, 0xffff);  // NaN poison, a guard after
    auto dout = test::upload(init);
    cuda::device_buffer scratch(std::size_t(tokens) * 2 * inter * 2);
    cuda::stream s;
    const linear_params p{dx.data<bf16_bits>(), dw.data<bf16_bits>(), scratch.data(), false,
                          tokens, in, 2 * inter};
    runner.run_swiglu(p, {nullptr, dout.data<bf16_bits>(), tokens, inter}, s.get());
    s.synchronize();
    const auto got = test::download<bf16_bits>(dout, 0, init.size());
    for (std::size_t i = ref.size(); i < init.size(); ++i) ASSERT_EQ(got[i], 0xffff);
    const double acc_tol = std::ldexp(1.0, -16) * in * 0.5;
    int bad = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double gv = cpu::bf16_to_float(got[i]), r = cpu::bf16_to_float(ref[i]);
      const std::size_t t = i / inter, j = i % inter;
      const double g = cpu::bf16_to_float(gate_up[t * 2 * inter + j]);
      const double u = cpu::bf16_to_float(gate_up[t * 2 * inter + inter + j]);
      // |d swiglu| <= 1.1 |u| dg + (|g| + 0.3) du, each sum off by a bf16 unit plus accumulation.
      const double dg = std::ldexp(1.0, -7) * std::fabs(g) + acc_tol;
      const double du = std::ldexp(1.0, -7) * std::fabs(u) + acc_tol;
      const double tol =
          std::ldexp(1.0, -7) * std::fabs(r) + 1.1 * std::fabs(u) * dg + (std::fabs(g) + 0.3) * du;
      if (!(std::fabs(gv - r) <= tol) && bad++ < 5) {
        ADD_FAILURE() << "element " << i << " (token " << t << ", column " << j << "): got " << gv
                      << ", reference " << r << ", tolerance " << tol;
      }
    }
    EXPECT_EQ(bad, 0);
  }
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
  cuda::skinny_gemm_plans plans;
  const linear_params p1{dx.data<bf16_bits>(), dw.data<bf16_bits>(), y1.data(), true, tokens, in, out};
  linear_params p2 = p1;
  p2.y = y2.data();
  cuda::skinny_gemm(p1, plans, false, s.get());
  cuda::skinny_gemm(p2, plans, true, s.get());
  s.synchronize();
  EXPECT_EQ(test::download<float>(y1, 0, std::size_t(tokens) * out),
            test::download<float>(y2, 0, std::size_t(tokens) * out));
  // The launch is a function of the shape, whoever owns the plans: 389 features fill one wave at
  // every width, so the narrowest tile wins (13 CTAs of 32 features).
  cuda::skinny_gemm_plans other;
  const cuda::skinny_gemm_config c1 = cuda::skinny_gemm_plan(p1, false, plans);
  const cuda::skinny_gemm_config c2 = cuda::skinny_gemm_plan(p1, false, other);
  EXPECT_EQ(c1.features_per_cta, 32);
  EXPECT_EQ(c1.ctas, 13);
  EXPECT_EQ(c2.features_per_cta, c1.features_per_cta);
  EXPECT_EQ(c2.ctas, c1.ctas);
  // A token's row does not depend on the other rows of the batch.
  linear_params p3 = p1;
  p3.num_tokens = 1;
  p3.x = dx.data<bf16_bits>() + std::size_t(11) * in;
  cuda::skinny_gemm(p3, plans, false, s.get());
  s.synchronize();
  EXPECT_EQ(test::download<float>(y1, 0, std::size_t(out)),
            test::download<float>(y2, std::size_t(11) * out * 4, std::size_t(out)));
  linear_params bad = p1;
  bad.num_tokens = cuda::k_skinny_max_tokens + 1;
  EXPECT_THROW(cuda::skinny_gemm(bad, plans, false, s.get()), std::invalid_argument);
  bad = p1;
  bad.in_features = 4100;
  EXPECT_THROW(cuda::skinny_gemm(bad, plans, false, s.get()), std::invalid_argument);
  EXPECT_THROW(cuda::skinny_gemm_swiglu(p1, {nullptr, y2.data<bf16_bits>(), tokens, 100}, plans,
                                        false, s.get()),
               std::invalid_argument);
}

// The automatic path from 2 to 64 tokens is the skinny GEMM on compute capability 9.0 (same bits
// as the forced path), cuBLASLt above 64 tokens and with linear_options::gemm = "cublas".
TEST(Linear, AutomaticPathPicksSkinnyGemmUpTo64Tokens) {
  RIDGELINE_REQUIRE_GPU();
  int device = 0, major = 0, minor = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  std::mt19937 rng(11);
  const int in = 1032, out = 389;
  const auto x = random_bf16(std::size_t(65) * in, rng, 1.0f);
  const auto w = random_bf16(std::size_t(out) * in, rng, 0.5f);
  auto dx = test::upload(x), dw = test::upload(w);
  cuda::device_buffer y1(std::size_t(65) * out * 4), y2(y1.bytes());
  cuda::stream s;
  auto run = [&](cuda::linear_runner& r, int tokens, cuda::device_buffer& y) {
    r.run({dx.data<bf16_bits>(), dw.data<bf16_bits>(), y.data(), true, tokens, in, out}, s.get());
    s.synchronize();
    return test::download<float>(y, 0, std::size_t(tokens) * out);
  };
  cuda::linear_options cublas_options;
  cublas_options.gemm = "cublas";
  cuda::linear_runner automatic, forced(force(cuda::linear_path::skinny)), cublas(cublas_options);
  for (int tokens : {2, 37, 64}) {
    SCOPED_TRACE("tokens=" + std::to_string(tokens));
    const auto a = run(automatic, tokens, y1);
    const auto c = run(cublas, tokens, y2);
    if (major == 9 && minor == 0) {
      EXPECT_EQ(a, run(forced, tokens, y2));
      EXPECT_NE(a, c);  // another kernel: other rounding somewhere
    } else {
      EXPECT_EQ(a, c);  // cuBLASLt either way
    }
  }
  EXPECT_EQ(run(automatic, 65, y1), run(cublas, 65, y2));
  cuda::linear_options bad;
  bad.gemm = "fast";
  EXPECT_THROW(cuda::linear_runner{bad}, std::invalid_argument);
  bad = {};
  bad.gemm_candidates = 0;
  EXPECT_THROW(cuda::linear_runner{bad}, std::invalid_argument);
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
  cuda::linear_options o;
  o.batch_invariant = true;
  cuda::linear_runner runner(o);
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
