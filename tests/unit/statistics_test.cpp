// Statistics and the stopping rule of the measurement harness.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ridgeline/telemetry/measure.hpp"
#include "ridgeline/core/statistics.hpp"

using namespace ridgeline::bench;

TEST(Statistics, SummaryOfKnownSample) {
  const std::vector<double> v = {5, 1, 4, 2, 3};
  const summary s = summarize(v);
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_NEAR(s.stddev, std::sqrt(2.5), 1e-12);
  EXPECT_DOUBLE_EQ(s.mad, 1);
  EXPECT_NEAR(s.p10, 1.4, 1e-12);  // numpy.quantile([1..5], 0.1) == 1.4
  EXPECT_NEAR(s.p90, 4.6, 1e-12);
}

TEST(Statistics, EvenCountMedianInterpolates) {
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(summarize(v).median, 2.5);
}

TEST(Statistics, EmptyAndSingle) {
  EXPECT_EQ(summarize(std::vector<double>{}).count, 0u);
  const summary one = summarize(std::vector<double>{7});
  EXPECT_DOUBLE_EQ(one.median, 7);
  EXPECT_DOUBLE_EQ(one.stddev, 0);
  EXPECT_DOUBLE_EQ(one.noise, 0);
  EXPECT_THROW(quantile_sorted(std::vector<double>{}, 0.5), std::invalid_argument);
  EXPECT_THROW(quantile_sorted(std::vector<double>{1}, 1.5), std::invalid_argument);
}

// The one quantile of the project, checked against numpy.quantile(v, q) (method "linear").
TEST(Quantile, LinearInterpolationMatchesNumpy) {
  const std::vector<double> v = {7, 1, 3, 10};  // sorted: 1 3 7 10
  EXPECT_DOUBLE_EQ(quantile(v, 0.0), 1);
  EXPECT_DOUBLE_EQ(quantile(v, 1.0), 10);
  EXPECT_DOUBLE_EQ(quantile(v, 0.5), 5);        // between 3 and 7
  EXPECT_NEAR(quantile(v, 0.99), 9.91, 1e-12);  // 7 + 0.97 * 3
  EXPECT_NEAR(quantile(v, 0.25), 2.5, 1e-12);   // position 0.75: 1 + 0.75 * 2
  EXPECT_DOUBLE_EQ(median(v), 5);
  // Not nearest rank: 100 values 1..100 give p99 = 99.01 (nearest rank would give 99).
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  EXPECT_NEAR(quantile(hundred, 0.99), 99.01, 1e-9);
  EXPECT_DOUBLE_EQ(median(hundred), 50.5);
}

TEST(Quantile, EdgeCases) {
  EXPECT_THROW(quantile(std::vector<double>{}, 0.5), std::invalid_argument);
  EXPECT_THROW(median(std::vector<double>{}), std::invalid_argument);
  EXPECT_THROW(quantile(std::vector<double>{1, 2}, -0.01), std::invalid_argument);
  EXPECT_THROW(quantile(std::vector<double>{1, 2}, 1.01), std::invalid_argument);
  EXPECT_THROW(quantile(std::vector<double>{1, 2}, std::nan("")), std::invalid_argument);
  // One value: every quantile is that value.
  for (double q : {0.0, 0.1, 0.5, 0.99, 1.0})
    EXPECT_DOUBLE_EQ(quantile(std::vector<double>{4}, q), 4);
  // Ties and duplicates.
  EXPECT_DOUBLE_EQ(median(std::vector<double>{2, 2, 2, 9}), 2);
  // The input is not reordered.
  const std::vector<double> v = {3, 1, 2};
  median(v);
  EXPECT_EQ(v, (std::vector<double>{3, 1, 2}));
}

TEST(Quantile, SeveralWithOneSortAgreeWithOneAtATime) {
  const std::vector<double> v = {0.3, 0.1, 0.7, 0.2, 0.9, 0.4};
  const std::vector<double> qs = {0.99, 0.5, 0.9, 0.0};
  const std::vector<double> all = quantiles(v, qs);
  ASSERT_EQ(all.size(), qs.size());
  for (std::size_t i = 0; i < qs.size(); ++i) EXPECT_DOUBLE_EQ(all[i], quantile(v, qs[i]));
  const summary s = summarize(v);
  EXPECT_DOUBLE_EQ(s.median, quantile(v, 0.5));
  EXPECT_DOUBLE_EQ(s.p90, quantile(v, 0.9));
  EXPECT_DOUBLE_EQ(s.iqr, quantile(v, 0.75) - quantile(v, 0.25));
  EXPECT_GT(s.iqr, 0);
}

TEST(Statistics, NoiseShrinksWithSamples) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> d(1.0, 0.05);
  std::vector<double> v;
  for (int i = 0; i < 16; ++i) v.push_back(d(rng));
  const double n16 = summarize(v).noise;
  for (int i = 0; i < 1024 - 16; ++i) v.push_back(d(rng));
  const double n1024 = summarize(v).noise;
  // Standard error of the median of N(1, 0.05): 1.2533 * 0.05 / sqrt(n).
  EXPECT_NEAR(n1024, 1.2533 * 0.05 / 32, 0.0006);
  EXPECT_LT(n1024, n16 / 4);
}

TEST(StoppingRule, WaitsForMinimumThenStopsOnNoise) {
  stopping_rule r{5, 100, 0.01, 1e9};
  std::vector<double> v = {1, 1, 1, 1};
  EXPECT_EQ(should_stop(r, v, 0), stop_reason::running);
  v.push_back(1);
  EXPECT_EQ(should_stop(r, v, 0), stop_reason::noise_reached);
}

TEST(StoppingRule, NoisySampleRunsOnUntilCap) {
  stopping_rule r{5, 50, 0.001, 1e9};
  std::vector<double> v;
  for (int i = 0; i < 49; ++i) v.push_back(i % 2 ? 1.0 : 2.0);
  EXPECT_EQ(should_stop(r, v, 0), stop_reason::running);
  v.push_back(1.5);
  EXPECT_EQ(should_stop(r, v, 0), stop_reason::max_repetitions);
}

TEST(StoppingRule, TimeCapNeedsOneSample) {
  stopping_rule r{10, 100, 0.0, 0.5};
  EXPECT_EQ(should_stop(r, std::vector<double>{}, 5.0), stop_reason::running);
  EXPECT_EQ(should_stop(r, std::vector<double>{1.0}, 5.0), stop_reason::time_cap);
}

TEST(Measure, RunsWarmupThenRepetitions) {
  int calls = 0;
  measure_options o;
  o.warmup = 2;
  o.stop = {7, 7, 0.0, 1e9};
  const measurement m = measure([&] { return static_cast<double>(++calls); }, o);
  EXPECT_EQ(calls, 9);
  ASSERT_EQ(m.seconds.size(), 7u);
  EXPECT_DOUBLE_EQ(m.seconds.front(), 3.0);  // warm-up samples are not kept
  EXPECT_DOUBLE_EQ(m.stats.median, 6.0);
  EXPECT_EQ(m.reason, stop_reason::max_repetitions);
}

// Mann-Whitney U: values computed by hand (counts of arrangements, the normal formula with ties).
TEST(MannWhitney, ExactSeparatedSamples) {
  // Every a below every b: U_a = 0; P(U <= 0) = 1 / C(6, 3) = 1/20, two-sided p = 0.1.
  const std::vector<double> a = {1, 2, 3}, b = {4, 5, 6};
  const auto r = mann_whitney(a, b);
  EXPECT_TRUE(r.exact);
  EXPECT_DOUBLE_EQ(r.u_a, 0);
  EXPECT_DOUBLE_EQ(r.u_b, 9);
  EXPECT_NEAR(r.p_value, 0.1, 1e-12);
  // 5 vs 5 separated: 2 / C(10, 5) = 2/252.
  const std::vector<double> c = {1, 2, 3, 4, 5}, d = {6, 7, 8, 9, 10};
  EXPECT_NEAR(mann_whitney(c, d).p_value, 2.0 / 252.0, 1e-12);
  EXPECT_NEAR(mann_whitney(d, c).p_value, 2.0 / 252.0, 1e-12);
}

TEST(MannWhitney, ExactWithOverlap) {
  // a = {1,2,3,4,10}, b = {5..9}: 10 beats all five b, so U_a = 5. Arrangements of 5+5 with
  // U <= 5 number 1+1+2+3+5+7 = 19 (partitions of u into at most 5 parts of at most 5).
  const std::vector<double> a = {1, 2, 3, 4, 10}, b = {5, 6, 7, 8, 9};
  const auto r = mann_whitney(a, b);
  EXPECT_TRUE(r.exact);
  EXPECT_DOUBLE_EQ(r.u_a, 5);
  EXPECT_NEAR(r.p_value, 38.0 / 252.0, 1e-12);
  // U at its mean (U_e = 0 + 2 + 2 + 4 = 8 = 4 * 4 / 2): P(U <= 8) = (70 + 8) / 2 / 70 = 39/70 (8
  // of the C(8,4) = 70 arrangements have U = 8: the partitions of 8 in a 4 x 4 box), so the
  // two-sided p = 78/70 is capped at exactly 1.
  const std::vector<double> e = {1, 4, 5, 8}, f = {2, 3, 6, 7};
  const auto mid = mann_whitney(e, f);
  EXPECT_TRUE(mid.exact);
  EXPECT_DOUBLE_EQ(mid.u_a, 8);
  EXPECT_DOUBLE_EQ(mid.p_value, 1.0);
  // One step off the mean: P(U <= 7) = (70 - 8) / 2 / 70 = 31/70, p = 62/70.
  const std::vector<double> g = {1, 4, 5, 7}, h = {2, 3, 6, 8};
  EXPECT_NEAR(mann_whitney(g, h).p_value, 62.0 / 70.0, 1e-12);
}

TEST(MannWhitney, NormalApproximationWithTies) {
  // a = {1,2,2}, b = {2,3,4}: mid-ranks 1, 3, 3 | 3, 5, 6 -> U_a = 7 - 6 = 1. Mean 4.5; one tie
  // group of 3 (t^3 - t = 24): var = 9/12 * (7 - 24/30) = 4.65; z = (1 - 4.5 + 0.5) / sqrt(4.65)
  // = -1.391217, p = erfc(1.391217 / sqrt 2) = 0.164160.
  const std::vector<double> a = {1, 2, 2}, b = {2, 3, 4};
  const auto r = mann_whitney(a, b);
  EXPECT_FALSE(r.exact);
  EXPECT_DOUBLE_EQ(r.u_a, 1);
  EXPECT_NEAR(r.z, -1.3912167, 1e-6);
  EXPECT_NEAR(r.p_value, 0.1641597, 1e-6);
  // a = {1,1,2,3}, b = {1,3,4,5,5}: U_a = 3.5; ties 1x3, 3x2, 5x2 -> 24 + 6 + 6 = 36;
  // var = 20/12 * (10 - 36/72) = 15.8333; z = (3.5 - 10 + 0.5) / 3.9791 = -1.507874, p = 0.131587.
  const std::vector<double> c = {1, 1, 2, 3}, d = {1, 3, 4, 5, 5};
  const auto q = mann_whitney(c, d);
  EXPECT_DOUBLE_EQ(q.u_a, 3.5);
  EXPECT_NEAR(q.z, -1.5078741, 1e-6);
  EXPECT_NEAR(q.p_value, 0.1315868, 1e-6);
}

TEST(MannWhitney, LargeSamplesUseTheNormalApproximation) {
  std::vector<double> a, b;
  for (int i = 0; i < 60; ++i) {
    a.push_back(i);
    b.push_back(i + 30.5);  // no ties, shifted by half the range
  }
  const auto r = mann_whitney(a, b);
  EXPECT_FALSE(r.exact);
  EXPECT_LT(r.p_value, 1e-4);
  EXPECT_GT(mann_whitney(a, a).p_value, 0.99);
}

TEST(MannWhitney, RejectsEmptyAndNaN) {
  const std::vector<double> a = {1, 2}, none;
  EXPECT_THROW(mann_whitney(a, none), std::invalid_argument);
  const std::vector<double> bad = {1, std::nan("")};
  EXPECT_THROW(mann_whitney(a, bad), std::invalid_argument);
}
