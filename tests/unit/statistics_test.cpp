// Statistics and the stopping rule of the measurement harness.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ridgeline/bench/measure.hpp"
#include "ridgeline/bench/statistics.hpp"

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
