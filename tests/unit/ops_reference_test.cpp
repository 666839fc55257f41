// CPU references of the decoder ops (reference.hpp) against hand-computed values, plus the
// statistical sanity of the sampler's draw (chi-square over many seeds).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ridgeline/kernels/numeric.hpp"
#include "ridgeline/kernels/reference.hpp"

using namespace ridgeline;
using ridgeline::cpu::bf16_to_float;
using ridgeline::cpu::float_to_bf16;

namespace {

std::vector<bf16_bits> bf16s(const std::vector<float>& v) {
  std::vector<bf16_bits> out;
  for (float x : v) out.push_back(float_to_bf16(x));
  return out;
}

// Expects out to hold exactly the bf16 roundings of the given values.
void expect_bf16(const std::vector<bf16_bits>& out, const std::vector<double>& want) {
  ASSERT_EQ(out.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(out[i], float_to_bf16(static_cast<float>(want[i])))
        << "element " << i << ": got " << bf16_to_float(out[i]) << " want " << want[i];
  }
}

struct sampler_case {
  std::vector<float> logits;
  std::vector<sampling_row> rows;
  std::vector<std::int32_t> prev, prev_offsets;
};

std::vector<std::int32_t> sample(const std::vector<float>& logits, int vocab,
                                 const std::vector<sampling_row>& rows,
                                 const std::vector<std::int32_t>& prev = {},
                                 const std::vector<std::int32_t>& prev_offsets = {}) {
  std::vector<std::int32_t> out(rows.size(), -7);
  sampling_params p;
  p.logits = logits.data();
  p.num_rows = static_cast<int>(rows.size());
  p.vocab = vocab;
  p.rows = rows.data();
  p.prev_tokens = prev_offsets.empty() ? nullptr : prev.data();
  p.prev_offsets = prev_offsets.empty() ? nullptr : prev_offsets.data();
  p.out_tokens = out.data();
  cpu::sampling(p);
  return out;
}

sampling_row row(float temperature, int top_k = 0, float top_p = 1.0f, float penalty = 1.0f,
                 std::uint64_t seed = 0, std::uint64_t step = 0) {
  return sampling_row{temperature, top_k, top_p, penalty, seed, step};
}

}  // namespace

TEST(OpsReference, EmbeddingCopiesRows) {
  const auto table = bf16s({0, 1, 2, 10, 11, 12, 20, 21, 22});  // [3][3]
  const std::vector<std::int32_t> ids = {2, 0, 2};
  std::vector<bf16_bits> out(9, 0xffff);
  cpu::embedding({ids.data(), table.data(), out.data(), 3, 3, 3});
  EXPECT_EQ(out, bf16s({20, 21, 22, 0, 1, 2, 20, 21, 22}));
}

TEST(OpsReference, RmsNormWithoutResidual) {
  // Row [3, 4]: mean square 12.5, eps 0 -> x / sqrt(12.5); row [1, 1] -> 1 scaled by the weight.
  const auto input = bf16s({3, 4, 1, 1});
  const auto weight = bf16s({1, 2});
  std::vector<bf16_bits> out(4, 0xffff);
  rms_norm_params p{input.data(), nullptr, weight.data(), out.data(), 2, 2, 0.0f};
  cpu::rms_norm(p);
  expect_bf16(out, {3 / std::sqrt(12.5), 2 * 4 / std::sqrt(12.5), 1, 2});
}

TEST(OpsReference, RmsNormWithResidualUpdatesInPlaceAndMayAliasOutput) {
  // residual 1 + input 1 = 2 everywhere: rms 2, out = weight; eps 1 -> 2 / sqrt(5) * weight.
  auto io = bf16s({1, 1, 1, 1});
  auto residual = bf16s({1, 1, 1, 1});
  const auto weight = bf16s({1, 0.5, 2, -1});
  rms_norm_params p{io.data(), residual.data(), weight.data(), io.data(), 1, 4, 1.0f};
  cpu::rms_norm(p);
  EXPECT_EQ(residual, bf16s({2, 2, 2, 2}));
  const double s = 2 / std::sqrt(5.0);
  expect_bf16(io, {s, 0.5 * s, 2 * s, -s});
}

TEST(OpsReference, RmsNormResidualSumIsRoundedToBf16) {
  // 256 + 1 = 257 is not a bf16 (8 significant bits): ties to even, 256; the norm reads 256.
  auto input = bf16s({1});
  auto residual = bf16s({256});
  const auto weight = bf16s({1});
  std::vector<bf16_bits> out(1);
  cpu::rms_norm({input.data(), residual.data(), weight.data(), out.data(), 1, 1, 0.0f});
  EXPECT_EQ(residual[0], float_to_bf16(256.0f));
  EXPECT_EQ(out[0], float_to_bf16(1.0f));
}

TEST(OpsReference, RopeRotatesByPositionTimesFrequency) {
  // head_dim 4: inv_freq = [1, theta^-1/2] = [1, 0.01] for theta 1e4. Vector [1, 1, 0, 0] at
  // position 1: x1 = [1, 1], x2 = [0, 0] -> [cos 1, cos .01, sin 1, sin .01]. Position 0 is the
  // identity. k gets the same rotation.
  auto q = bf16s({1, 1, 0, 0, 0.5, -0.25, 0.75, 2});
  auto k = bf16s({1, 1, 0, 0});
  const std::vector<std::int32_t> pos = {1, 0};
  rope_params p;
  p.q = q.data();
  p.k = k.data();
  p.positions = pos.data();
  p.num_tokens = 1;
  p.num_q_heads = 1;
  p.num_kv_heads = 1;
  p.head_dim = 4;
  p.theta = 10000.0f;
  cpu::rope(p);
  expect_bf16(q,
              {std::cos(1.0), std::cos(0.01), std::sin(1.0), std::sin(0.01), 0.5, -0.25, 0.75, 2});
  expect_bf16(k, {std::cos(1.0), std::cos(0.01), std::sin(1.0), std::sin(0.01)});
  // Second token, position 0: unchanged.
  p.q = q.data() + 4;
  p.positions = pos.data() + 1;
  p.num_kv_heads = 0;
  cpu::rope(p);
  expect_bf16({q.begin() + 4, q.end()}, {0.5, -0.25, 0.75, 2});
}

TEST(OpsReference, RopeLlama3ScalingBranches) {
  // head_dim 2: one frequency, inv_freq = 1, wavelength 2 pi = 6.283. Factor 8, low 1, high 4.
  //   original 8192: high-frequency wavelength 2048 > 6.283 -> kept: angle 1.
  //   original 1:    low-frequency wavelength 1 < 6.283 -> divided by 8: angle 0.125.
  //   original 8:    6.283 lies in (2, 8): smooth = (8 / 6.283 - 1) / 3 = 0.0910798,
  //                  inv_freq = (1 - smooth) / 8 + smooth = 0.2046949.
  const struct {
    int original;
    double angle;
  } cases[] = {{8192, 1.0}, {1, 0.125}, {8, 0.20469486721442248}};
  for (const auto& c : cases) {
    auto q = bf16s({1, 0});
    const std::int32_t pos = 1;
    rope_params p;
    p.q = q.data();
    p.positions = &pos;
    p.num_tokens = 1;
    p.num_q_heads = 1;
    p.head_dim = 2;
    p.theta = 500000.0f;
    p.llama3_scaling = true;
    p.scaling_factor = 8;
    p.low_freq_factor = 1;
    p.high_freq_factor = 4;
    p.original_max_position = c.original;
    cpu::rope(p);
    SCOPED_TRACE(c.original);
    expect_bf16(q, {std::cos(c.angle), std::sin(c.angle)});
  }
}

TEST(OpsReference, RopeLargePositionUsesExactAngle) {
  // Position 131071 with inv_freq 1: the angle in double, cos/sin of 131071 rad.
  auto q = bf16s({1, 0});
  const std::int32_t pos = 131071;
  rope_params p;
  p.q = q.data();
  p.positions = &pos;
  p.num_tokens = 1;
  p.num_q_heads = 1;
  p.head_dim = 2;
  cpu::rope(p);
  expect_bf16(q, {std::cos(131071.0), std::sin(131071.0)});
}

TEST(OpsReference, SwigluKnownValues) {
  // gate [0, 1, -1, 20], up [5, 2, 3, 0.5]:
  //   silu(0) = 0; silu(1) * 2 = 2 / (1 + e^-1) = 1.4621172; silu(-1) * 3 = -3 / (1 + e) =
  //   -0.8068243; silu(20) * 0.5 ~ 10 (1 - 2e-9).
  const auto gu = bf16s({0, 1, -1, 20, 5, 2, 3, 0.5});
  std::vector<bf16_bits> out(4, 0xffff);
  cpu::swiglu({gu.data(), out.data(), 1, 4});
  expect_bf16(out, {0, 1.4621171572600098, -0.8068243078997255, 9.99999997938846});
}

TEST(OpsReference, GreedyPicksArgmaxLowestIdOnTies) {
  const std::vector<float> logits = {1, 3, -2, 3, 0, /* row 1 */ -5, -4, -4, -9, -4.5f};
  EXPECT_EQ(sample(logits, 5, {row(0), row(0)}), (std::vector<std::int32_t>{1, 1}));
  // -0 and +0 tie: lowest id.
  EXPECT_EQ(sample({-0.0f, 0.0f, -1.0f}, 3, {row(0)})[0], 0);
}

TEST(OpsReference, TopK1AndTinyTopPAreGreedy) {
  const std::vector<float> logits = {0.1f, 2.5f, 2.4f, -1.0f, 2.5f, 0.0f};
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_EQ(sample(logits, 6, {row(1.3f, 1, 1.0f, 1.0f, seed, 7)})[0], 1);
    EXPECT_EQ(sample(logits, 6, {row(0.7f, 0, 1e-6f, 1.0f, seed, 7)})[0], 1);
    EXPECT_EQ(sample(logits, 6, {row(0.7f, 3, 0.0f, 1.0f, seed, 7)})[0], 1);
  }
}

TEST(OpsReference, TopKAndTopPRestrictTheSupport) {
  // Probabilities at T = 1: logits ln(4), ln(3), ln(2), ln(1) -> 0.4, 0.3, 0.2, 0.1.
  const std::vector<float> logits = {std::log(2.0f), std::log(4.0f), std::log(1.0f),
                                     std::log(3.0f)};
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const int k2 = sample(logits, 4, {row(1, 2, 1.0f, 1.0f, seed)})[0];
    EXPECT_TRUE(k2 == 1 || k2 == 3) << k2;
    // top_p 0.65: 0.4 < 0.65 <= 0.7 keeps {1, 3}; top_p 0.75 keeps {1, 3, 0}.
    const int p65 = sample(logits, 4, {row(1, 0, 0.65f, 1.0f, seed)})[0];
    EXPECT_TRUE(p65 == 1 || p65 == 3) << p65;
    const int p75 = sample(logits, 4, {row(1, 0, 0.75f, 1.0f, seed)})[0];
    EXPECT_NE(p75, 2);
  }
}

TEST(OpsReference, RepetitionPenaltyFlipsTheChoice) {
  // Row 0: token 0 (2.0) beats token 1 (1.9); penalized 0 becomes 2.0 / 1.5 = 1.33 -> token 1.
  // Row 1: negative logits: token 2 (-1.0) beats token 0 (-1.2); penalized 2 becomes -1.5.
  const std::vector<float> logits = {2.0f, 1.9f, -3.0f, /* row 1 */ -1.2f, -4.0f, -1.0f};
  const std::vector<std::int32_t> prev = {0, 0, 9, -1, 2};  // duplicates and out-of-range ids
  const std::vector<std::int32_t> offsets = {0, 4, 5};
  EXPECT_EQ(sample(logits, 3, {row(1, 1), row(1, 1)}, prev, offsets),
            (std::vector<std::int32_t>{0, 2}));
  EXPECT_EQ(sample(logits, 3, {row(1, 1, 1.0f, 1.5f), row(1, 1, 1.0f, 1.5f)}, prev, offsets),
            (std::vector<std::int32_t>{1, 0}));
  // Penalties do not apply to greedy (temperature 0), as ops.hpp defines.
  EXPECT_EQ(sample(logits, 3, {row(0, 0, 1.0f, 1.5f), row(0, 0, 1.0f, 1.5f)}, prev, offsets),
            (std::vector<std::int32_t>{0, 2}));
}

TEST(OpsReference, SamplingWeightsAndUniform) {
  EXPECT_EQ(cpu::sampling_weight(3.0f, 3.0f), std::uint64_t{1} << 42);
  // exp(-ln 2) = 1/2, within the float rounding of ln 2 (2e-9 relative).
  EXPECT_NEAR(static_cast<double>(cpu::sampling_weight(-std::log(2.0f), 0.0f)), 0x1.0p41,
              0x1.0p41 * 1e-8);
  EXPECT_EQ(cpu::sampling_weight(-100.0f, 3.0f), 0u);
  EXPECT_EQ(cpu::sampling_weight(-INFINITY, 3.0f), 0u);
  // The uniform depends on seed and step, lies in [0, 1), and its mean over 10^5 draws is 1/2
  // within 5 sigma (sigma = sqrt(1/12 / 1e5) = 0.00091).
  EXPECT_NE(cpu::sampling_uniform(1, 2), cpu::sampling_uniform(2, 1));
  EXPECT_NE(cpu::sampling_uniform(1, 2), cpu::sampling_uniform(1, 3));
  double sum = 0;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const double u = cpu::sampling_uniform(i / 100, i % 100);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 5 * 0.00091);
}

TEST(OpsReference, SampledFrequenciesMatchProbabilities) {
  // Vocab 5 with logits ln p (p = .05 .1 .15 .3 .4) at T = 1, then T = 0.5 (p^2 renormalized),
  // then top-k 3 (the top three renormalized). 20000 draws over seeds; chi-square with 4 (or 2)
  // degrees of freedom below its 0.999 quantile (18.47, 13.82): fails for a biased draw.
  const std::vector<double> p = {0.05, 0.1, 0.15, 0.3, 0.4};
  std::vector<float> logits;
  for (double x : p) logits.push_back(static_cast<float>(std::log(x)));
  const struct {
    float temperature;
    int top_k;
    double limit;
  } cases[] = {{1.0f, 0, 18.47}, {0.5f, 0, 18.47}, {1.0f, 3, 13.82}};
  for (const auto& c : cases) {
    std::vector<double> q(5);
    double norm = 0;
    for (int i = 0; i < 5; ++i) {
      q[i] = (c.top_k && i < 5 - c.top_k) ? 0 : std::pow(p[i], 1.0 / c.temperature);
      norm += q[i];
    }
    const int n = 20000;
    std::vector<int> count(5, 0);
    for (int i = 0; i < n; ++i) {
      ++count[sample(logits, 5, {row(c.temperature, c.top_k, 1.0f, 1.0f, 12345 + i, i % 3)})[0]];
    }
    double chi2 = 0;
    for (int i = 0; i < 5; ++i) {
      if (q[i] == 0) {
        EXPECT_EQ(count[i], 0);
        continue;
      }
      const double expected = n * q[i] / norm;
      chi2 += (count[i] - expected) * (count[i] - expected) / expected;
    }
    EXPECT_LT(chi2, c.limit) << "temperature " << c.temperature << " top_k " << c.top_k;
  }
}

TEST(OpsReference, TopLogprobsOfRawLogits) {
  // logits [0, ln 3, 0]: softmax [1/5, 3/5, 1/5]; top ids by logit [1, 0, 2] (tie: lowest id),
  // then one slot more than the vocabulary: id -1, -inf.
  const std::vector<float> logits = {0.0f, std::log(3.0f), 0.0f};
  const std::vector<sampling_row> rows = {row(0)};
  std::vector<std::int32_t> out(1), ids(4);
  std::vector<float> lp(4);
  sampling_params p;
  p.logits = logits.data();
  p.num_rows = 1;
  p.vocab = 3;
  p.rows = rows.data();
  p.out_tokens = out.data();
  p.out_logprobs = lp.data();
  p.out_top_ids = ids.data();
  p.top_logprobs = 4;
  cpu::sampling(p);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(ids, (std::vector<std::int32_t>{1, 0, 2, -1}));
  EXPECT_NEAR(lp[0], std::log(0.6), 1e-6);
  EXPECT_NEAR(lp[1], std::log(0.2), 1e-6);
  EXPECT_NEAR(lp[2], std::log(0.2), 1e-6);
  EXPECT_EQ(lp[3], -INFINITY);
}

TEST(OpsReference, SampledLogprobIsLogSoftmaxOfTheRawLogitsAtTheToken) {
  // Odd shapes, greedy and non-greedy rows (penalty, temperature, top-k, top-p): the sampled
  // token's log-probability is log_softmax(raw logits)[token], whatever chose the token; the
  // tokens are those of a run without log-probabilities. The reference: long double, from the
  // formula, no max shift (the logits are small).
  const std::vector<sampling_row> kinds = {row(0),
                                           row(0.7f, 0, 1.0f, 1.0f, 11, 2),
                                           row(1.3f, 5, 1.0f, 1.0f, 12, 0),
                                           row(1.0f, 0, 0.8f, 1.4f, 13, 7),
                                           row(2.0f, 3, 0.5f, 1.0f, 14, 1)};
  for (int vocab : {1, 2, 7, 97, 1001}) {
    for (int top : {1, 3, 8}) {
      const int n = static_cast<int>(kinds.size());
      std::vector<float> logits(static_cast<std::size_t>(n) * vocab);
      for (std::size_t i = 0; i < logits.size(); ++i)
        logits[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + vocab) * 4.0);
      std::vector<std::int32_t> prev = {0, 3, 5}, offsets;
      for (int r = 0; r <= n; ++r) offsets.push_back(r <= 3 ? 0 : 3);  // row 3's history
      for (auto& id : prev) id %= vocab;
      std::vector<std::int32_t> plain(n), tokens(n), ids(static_cast<std::size_t>(n) * top);
      std::vector<float> lp(ids.size()), sampled(n, NAN);
      sampling_params p;
      p.logits = logits.data();
      p.num_rows = n;
      p.vocab = vocab;
      p.rows = kinds.data();
      p.prev_tokens = prev.data();
      p.prev_offsets = offsets.data();
      p.out_tokens = plain.data();
      cpu::sampling(p);
      p.out_tokens = tokens.data();
      p.out_logprobs = lp.data();
      p.out_top_ids = ids.data();
      p.top_logprobs = top;
      p.out_sampled_logprobs = sampled.data();
      cpu::sampling(p);
      EXPECT_EQ(tokens, plain) << "vocab " << vocab << ": log-probabilities changed the tokens";
      for (int r = 0; r < n; ++r) {
        const float* x = logits.data() + static_cast<std::size_t>(r) * vocab;
        long double sum = 0;
        for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<long double>(x[i]));
        const long double want = static_cast<long double>(x[tokens[r]]) - std::log(sum);
        EXPECT_NEAR(sampled[r], static_cast<double>(want), 1e-5)
            << "vocab " << vocab << " top " << top << " row " << r;
        EXPECT_LE(sampled[r], 0.0f);
        for (int j = 0; j < std::min(top, vocab); ++j) {
          const std::size_t at = static_cast<std::size_t>(r) * top + j;
          if (ids[at] == tokens[r]) {
            EXPECT_EQ(lp[at], sampled[r]) << "row " << r << " slot " << j;
          }
        }
        if (kinds[r].temperature == 0.0f) {
          EXPECT_EQ(ids[static_cast<std::size_t>(r) * top], tokens[r]);
        }
      }
    }
  }
  // top_logprobs 0: nothing is written.
  const std::vector<float> logits = {1.0f, 2.0f};
  const std::vector<sampling_row> rows = {row(0)};
  std::int32_t token = -1;
  float sampled = -123.0f;
  sampling_params p;
  p.logits = logits.data();
  p.num_rows = 1;
  p.vocab = 2;
  p.rows = rows.data();
  p.out_tokens = &token;
  p.out_sampled_logprobs = &sampled;
  cpu::sampling(p);
  EXPECT_EQ(token, 1);
  EXPECT_EQ(sampled, -123.0f);
}
