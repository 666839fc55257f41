// The cuBLASLt algorithm choice rule (ridgeline/kernels/gemm_choice.hpp) without a GPU: the margin,
// ties, the median of the repetitions, and the policies the engine and the peaks use.
#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <vector>

#include "ridgeline/kernels/gemm_choice.hpp"

using namespace ridgeline;

TEST(GemmChoice, FirstOfEqualTimesWins) {
  const std::vector<double> t = {2.0, 1.0, 1.0, 3.0};
  EXPECT_EQ(pick_fastest(t, 0.0), 1);
  EXPECT_EQ(pick_fastest(t, 0.01), 1);
  EXPECT_EQ(pick_fastest(std::vector<double>{5.0}, 0.01), 0);
}

TEST(GemmChoice, LaterCandidateMustBeatTheMargin) {
  // 0.9% faster does not displace the first candidate; 1.1% faster does.
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.991}, 0.01), 0);
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.989}, 0.01), 1);
  // Without a margin any strict improvement wins.
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.999}, 0.0), 1);
}

TEST(GemmChoice, MarginIsMeasuredAgainstTheBestSoFar) {
  // 0.995 does not beat 1.0 by 1%, so the best stays 1.0; 0.985 beats 1.0 (not 0.995) by 1%.
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.995, 0.985}, 0.01), 2);
  // Small steps never add up: each is under 1% of the best, which stays the first.
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.995, 0.991}, 0.01), 0);
  // After a switch the new best is the reference.
  EXPECT_EQ(pick_fastest(std::vector<double>{1.0, 0.98, 0.975}, 0.01), 1);
}

TEST(GemmChoice, NanNeverWins) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(pick_fastest(std::vector<double>{nan, 2.0}, 0.0), 1);
  EXPECT_EQ(pick_fastest(std::vector<double>{2.0, nan, 1.0}, 0.01), 2);
}

TEST(GemmChoice, RejectsEmptyInputAndBadMargins) {
  EXPECT_THROW(pick_fastest(std::vector<double>{}, 0.0), std::invalid_argument);
  EXPECT_THROW(pick_fastest(std::vector<double>{1.0}, -0.1), std::invalid_argument);
  EXPECT_THROW(pick_fastest(std::vector<double>{1.0}, 1.0), std::invalid_argument);
}

TEST(GemmChoice, MedianOfOddSampleIsItsMiddleValue) {
  std::vector<double> t = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(median_of_odd(t), 3);
  std::vector<double> one = {7};
  EXPECT_DOUBLE_EQ(median_of_odd(one), 7);
  std::vector<double> even = {1, 2};
  EXPECT_THROW(median_of_odd(even), std::invalid_argument);
  std::vector<double> none;
  EXPECT_THROW(median_of_odd(none), std::invalid_argument);
}

TEST(GemmChoice, PoliciesAreTheDocumentedOnes) {
  // The engine's choice must not drift: decode speed depends on it (docs/engine.md).
  EXPECT_EQ(k_engine_gemm_policy.candidates, 32);
  EXPECT_TRUE(k_engine_gemm_policy.cold);
  EXPECT_EQ(k_engine_gemm_policy.warmup, 1);
  EXPECT_EQ(k_engine_gemm_policy.repetitions, 5);
  EXPECT_DOUBLE_EQ(k_engine_gemm_policy.margin, 0.01);
  EXPECT_EQ(k_peak_gemm_policy.candidates, 8);
  EXPECT_FALSE(k_peak_gemm_policy.cold);
  EXPECT_DOUBLE_EQ(k_peak_gemm_policy.margin, 0.0);
  EXPECT_NO_THROW(validate(k_engine_gemm_policy));
  EXPECT_NO_THROW(validate(k_peak_gemm_policy));
  EXPECT_EQ(describe(k_engine_gemm_policy),
            "32 candidates, cold (L2 flushed before each run), 1 warm-up, median of 5, a later "
            "candidate must be 1% faster");
  EXPECT_EQ(describe(k_peak_gemm_policy),
            "8 candidates, hot (no L2 flush), 1 warm-up, median of 5, strictly fastest (first of "
            "equal times)");
}

TEST(GemmChoice, ValidateNamesTheBadField) {
  auto message = [](gemm_choice_policy p) {
    try {
      validate(p);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  gemm_choice_policy p;
  p.repetitions = 4;
  EXPECT_NE(message(p).find("repetitions"), std::string::npos);
  p = {};
  p.candidates = 0;
  EXPECT_NE(message(p).find("candidates"), std::string::npos);
  p = {};
  p.margin = 1.5;
  EXPECT_NE(message(p).find("margin"), std::string::npos);
  p = {};
  p.warmup = -1;
  EXPECT_NE(message(p).find("warmup"), std::string::npos);
}
