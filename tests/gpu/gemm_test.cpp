// cuBLASLt GEMM of every dtype against the naive CPU reference on random inputs at odd shapes.
// Tolerance per element: |gpu - ref| <= (u_in + k * u_acc + u_out) * sum_k |a * b|, a rounding
// bound for any summation order (one table below), so wrong indexing fails by orders of magnitude.
// Outputs are poisoned before the run and sit between guard bands that must stay untouched.
// Also: the algorithm chooser (gemm_chooser.hpp) applies its policy's rule and caches per shape.
#include <cmath>
#include <cstring>
#include <random>

#include "cuda/gemm_chooser.hpp"
#include "cuda/gemm_lt.hpp"
#include "cuda/random.hpp"
#include "gpu_test_util.hpp"
#include "ridgeline/kernels/gemm_reference.hpp"
#include "ridgeline/kernels/numeric.hpp"

using namespace ridgeline;

namespace {

struct tolerance {
  double u_in, u_acc, u_out;
};

tolerance tolerance_of(dtype t) {
  const double u24 = std::ldexp(1.0, -24);
  switch (t) {
    case dtype::fp32: return {0, u24, u24};
    // tf32 tensor cores keep 10 mantissa bits of each fp32 operand (truncated or rounded).
    case dtype::tf32: return {2 * std::ldexp(1.0, -10), u24, u24};
    case dtype::fp16: return {0, u24, std::ldexp(1.0, -11)};
    case dtype::bf16: return {0, u24, std::ldexp(1.0, -8)};
    // Hopper's fp8 tensor cores accumulate with fewer bits than fp32 between promotions; 2^-14 per
    // addition covers that. Output is bf16.
    case dtype::fp8_e4m3: return {0, std::ldexp(1.0, -14), std::ldexp(1.0, -8)};
    case dtype::int8: return {0, 0, 0};  // exact
  }
  return {};
}

// Random operand values representable in t, as floats, and their device encoding.
std::vector<float> random_operand(dtype t, std::size_t count, std::mt19937& rng,
                                  std::vector<unsigned char>& encoded) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> i8(-127, 127);
  std::vector<float> values(count);
  encoded.resize(count * operand_bytes(t));
  for (std::size_t i = 0; i < count; ++i) {
    switch (t) {
      case dtype::fp32:
      case dtype::tf32: {
        values[i] = u(rng);
        std::memcpy(&encoded[4 * i], &values[i], 4);
        break;
      }
      case dtype::fp16: {
        const auto h = cpu::float_to_fp16(u(rng));
        values[i] = cpu::fp16_to_float(h);
        std::memcpy(&encoded[2 * i], &h, 2);
        break;
      }
      case dtype::bf16: {
        const auto b = cpu::float_to_bf16(u(rng));
        values[i] = cpu::bf16_to_float(b);
        std::memcpy(&encoded[2 * i], &b, 2);
        break;
      }
      case dtype::fp8_e4m3: {
        const auto e = cpu::float_to_fp8_e4m3(u(rng) * 4.0f);
        values[i] = cpu::fp8_e4m3_to_float(e);
        encoded[i] = e;
        break;
      }
      case dtype::int8: {
        const int v = i8(rng);
        values[i] = static_cast<float>(v);
        encoded[i] = static_cast<unsigned char>(static_cast<signed char>(v));
        break;
      }
    }
  }
  return values;
}

double decode_output(dtype t, const unsigned char* p) {
  switch (t) {
    case dtype::fp32:
    case dtype::tf32: { float f; std::memcpy(&f, p, 4); return f; }
    case dtype::fp16: { std::uint16_t h; std::memcpy(&h, p, 2); return cpu::fp16_to_float(h); }
    case dtype::bf16:
    case dtype::fp8_e4m3: { std::uint16_t b; std::memcpy(&b, p, 2); return cpu::bf16_to_float(b); }
    case dtype::int8: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
  }
  return NAN;
}

struct shape {
  std::size_t m, n, k;
};

void check_gemm(dtype t, shape s, cublasLtHandle_t h, const cuda::stream& st) {
  SCOPED_TRACE(std::string(name(t)) + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
               " k=" + std::to_string(s.k));
  std::mt19937 rng(static_cast<unsigned>(s.m * 7919 + s.n * 31 + s.k));
  std::vector<unsigned char> a_enc, b_enc;
  const auto a = random_operand(t, s.m * s.k, rng, a_enc);
  const auto b = random_operand(t, s.n * s.k, rng, b_enc);
  std::vector<double> ref, abs_sum;
  cpu::gemm_reference({s.m, s.n, s.k, a, b}, ref, abs_sum);

  cuda::device_buffer ws(32u << 20);
  cuda::lt_gemm g(h, t, s.m, s.n, s.k, ws.bytes());
  ASSERT_GT(g.algorithm_count(), 0);
  auto da = test::upload(a_enc), db = test::upload(b_enc);
  constexpr std::size_t guard = 256;
  constexpr unsigned char poison = 0xff;  // NaN for floats, -1 for int32
  std::vector<unsigned char> init(g.d_bytes() + 2 * guard, poison);
  auto dd = test::upload(init);
  // Every algorithm the heuristic offers must be right, not only the first.
  for (int algo = 0; algo < g.algorithm_count(); ++algo) {
    RIDGELINE_CUDA_CHECK(cudaMemset(dd.data<unsigned char>() + guard, poison, g.d_bytes()));
    g.run(algo, da.data(), db.data(), dd.data<unsigned char>() + guard, ws.data(), st.get());
    st.synchronize();
    const auto out = test::download<unsigned char>(dd, 0, init.size());
    for (std::size_t i = 0; i < guard; ++i) {
      ASSERT_EQ(out[i], poison) << "guard before D overwritten, algorithm " << algo;
      ASSERT_EQ(out[guard + g.d_bytes() + i], poison) << "guard after D overwritten, algorithm " << algo;
    }
    const tolerance tol = tolerance_of(t);
    double worst = 0;
    std::size_t worst_i = 0, mismatches = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double got = decode_output(t, &out[guard + i * output_bytes(t)]);
      const double bound = (tol.u_in + double(s.k) * tol.u_acc + tol.u_out) * abs_sum[i] + 1e-30;
      const double err = std::fabs(got - ref[i]);
      if (!(err <= bound)) {  // NaN fails here too
        if (mismatches++ < 5) {
          ADD_FAILURE() << "algorithm " << algo << " element " << i << " (row " << i / s.m
                        << ", col " << i % s.m << "): got " << got << ", reference " << ref[i]
                        << ", bound " << bound;
        }
      }
      if (bound > 0 && err / bound > worst) worst = err / bound, worst_i = i;
    }
    EXPECT_EQ(mismatches, 0u) << "worst element " << worst_i << " at " << worst << " of its bound";
  }
}

}  // namespace

TEST(Gemm, EveryDtypeMatchesCpuReference) {
  RIDGELINE_REQUIRE_GPU();
  cuda::cublaslt_handle h;
  cuda::stream st;
  for (dtype t : k_all_dtypes) {
    const bool narrow = t == dtype::fp8_e4m3 || t == dtype::int8;
    // Odd shapes where the dtype allows them: fp8 and int8 tensor-core GEMMs need m and k
    // multiples of 16 (16-byte aligned leading dimensions), so only n (the tokens) is odd there.
    const std::vector<shape> shapes =
        narrow ? std::vector<shape>{{16, 1, 16}, {16, 3, 48}, {48, 17, 144}, {144, 67, 272}}
               : std::vector<shape>{{1, 1, 8}, {7, 3, 37}, {33, 17, 129}, {129, 67, 271}};
    for (const auto& s : shapes) check_gemm(t, s, h.get(), st);
  }
}

TEST(Gemm, RejectsUnsupportedShapes) {
  RIDGELINE_REQUIRE_GPU();
  cuda::cublaslt_handle h;
  EXPECT_THROW(cuda::lt_gemm(h.get(), dtype::bf16, 0, 4, 4, 1 << 20), std::invalid_argument);
  EXPECT_THROW(cuda::lt_gemm(h.get(), dtype::fp8_e4m3, 7, 4, 16, 1 << 20), std::invalid_argument);
  EXPECT_THROW(cuda::lt_gemm(h.get(), dtype::int8, 16, 4, 12, 1 << 20), std::invalid_argument);
}

// The chooser's winner is pick_fastest over its own medians with the policy's margin, for a cold
// (engine) and a hot (peak) policy; a second choose() for the shape is the cached entry, untimed;
// the process-wide chooser is one object per policy.
TEST(GemmChooser, AppliesItsPolicyAndCachesPerShape) {
  RIDGELINE_REQUIRE_GPU();
  cuda::cublaslt_handle h;
  cuda::stream st;
  cuda::device_buffer ws(32u << 20);
  const std::size_t m = 1024, n = 128, k = 1024;
  cuda::device_buffer a(m * k * 2), b(n * k * 2), d(m * n * 2);
  cuda::fill_uniform(a.data(), dtype::bf16, m * k, 1, 0.05f, st.get());
  cuda::fill_uniform(b.data(), dtype::bf16, n * k, 2, 1.0f, st.get());
  for (const gemm_choice_policy& policy : {k_engine_gemm_policy, k_peak_gemm_policy}) {
    SCOPED_TRACE(describe(policy));
    cuda::gemm_chooser chooser(policy);
    const cuda::lt_gemm g(h.get(), dtype::bf16, m, n, k, ws.bytes(), chooser.candidates());
    EXPECT_EQ(chooser.find(g), nullptr);
    const cuda::gemm_choice& c = chooser.choose(g, a.data(), b.data(), d.data(), ws.data(), st.get());
    EXPECT_EQ(c.candidates, g.algorithm_count());
    EXPECT_LE(c.candidates, policy.candidates);
    if (c.candidates > 1) {
      ASSERT_EQ(c.medians.size(), static_cast<std::size_t>(c.candidates));
      for (double t : c.medians) EXPECT_TRUE(std::isfinite(t) && t > 0) << t;
      EXPECT_EQ(c.index, pick_fastest(c.medians, policy.margin));
    } else {
      EXPECT_EQ(c.index, 0);
      EXPECT_TRUE(c.medians.empty());
    }
    EXPECT_EQ(std::memcmp(&c.algo, &g.algorithm(c.index), sizeof c.algo), 0);
    EXPECT_EQ(cuda::describe(c.algo).rfind("algo ", 0), 0u) << cuda::describe(c.algo);
    EXPECT_EQ(&chooser.choose(g, a.data(), b.data(), d.data(), ws.data(), st.get()), &c);
    EXPECT_EQ(chooser.find(g), &c);
    // Another shape (tokens) is another entry.
    const cuda::lt_gemm other(h.get(), dtype::bf16, m, n / 2, k, ws.bytes(), chooser.candidates());
    EXPECT_EQ(chooser.find(other), nullptr);
  }
  EXPECT_EQ(cuda::shared_gemm_chooser(k_engine_gemm_policy),
            cuda::shared_gemm_chooser(k_engine_gemm_policy));
  EXPECT_NE(cuda::shared_gemm_chooser(k_engine_gemm_policy),
            cuda::shared_gemm_chooser(k_peak_gemm_policy));
  gemm_choice_policy even = k_engine_gemm_policy;
  even.repetitions = 4;
  EXPECT_THROW(cuda::gemm_chooser{even}, std::invalid_argument);
}
