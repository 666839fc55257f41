// Statistics over repeated measurements: the one quantile definition of the project (linear
// interpolation between order statistics, numpy's default "linear" method: the medians, p90s and
// p99s ridgeline prints go through it; docs/measurement.md lists the exception), summary (median,
// spread, percentiles), the noise-based stopping rule the harness uses, and the Mann-Whitney U
// test `ridgeline compare` runs over the repetitions of two results. Host-only, no CUDA.
//   quantile(samples, 0.99);   // any order; throws on an empty sample
//   median(samples);           // quantile(samples, 0.5): the mean of the middle two when n is even
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

namespace ridgeline::bench {

struct summary {
  std::size_t count = 0;
  double median = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
  double stddev = 0;  // sample standard deviation (n - 1)
  double p10 = 0;
  double p90 = 0;
  double iqr = 0;  // interquartile range: quantile 0.75 - quantile 0.25
  double mad = 0;  // median absolute deviation from the median
  // Relative standard error of the median, estimated robustly:
  // 1.2533 * sigma / sqrt(n) / median, sigma = max(1.4826 * MAD, IQR / 1.349)
  // (normal-theory efficiency of the median; the IQR term catches two-mode samples).
  double noise = 0;
};

// Quantile q in [0, 1] of sorted values by linear interpolation: position q (n - 1), between the
// order statistics either side of it (numpy's default "linear" method; q = 0 is the minimum,
// q = 1 the maximum). Throws std::invalid_argument on an empty sample and on q outside [0, 1].
double quantile_sorted(std::span<const double> sorted, double q);
// The same quantile of values in any order (sorts a copy).
double quantile(std::span<const double> values, double q);
// quantile(values, 0.5).
double median(std::span<const double> values);
// Several quantiles of the same values with one sort, in the order of qs.
std::vector<double> quantiles(std::span<const double> values, std::span<const double> qs);
// Summary of values (any order); an empty span gives a zero summary with count 0.
summary summarize(std::span<const double> values);
nlohmann::json to_json(const summary& s);

// When to stop repeating a measurement: after at least min_repetitions, once the relative noise of
// the median is at or below max_noise, or when max_repetitions or max_seconds (of measured time
// plus overhead, wall clock) is reached, whichever comes first.
struct stopping_rule {
  int min_repetitions = 10;
  int max_repetitions = 1000;
  double max_noise = 0.005;
  double max_seconds = 2.0;
};

enum class stop_reason { running, noise_reached, max_repetitions, time_cap };
std::string to_string(stop_reason r);

// Decides after each sample; `elapsed_seconds` is the wall time spent so far on this measurement.
stop_reason should_stop(const stopping_rule& rule, std::span<const double> samples,
                        double elapsed_seconds);

// Mann-Whitney U test (two-sided) of "a and b come from the same distribution" against a shift.
// u_a counts the pairs (a_i, b_j) with a_i > b_j, ties counting one half; u_a + u_b = n_a * n_b.
// Exact null distribution when neither sample has more than k_mann_whitney_exact_max values and
// there are no ties; otherwise the normal approximation with tie correction and a continuity
// correction of 1/2. Throws std::invalid_argument when a sample is empty or holds a NaN.
inline constexpr std::size_t k_mann_whitney_exact_max = 50;
struct mann_whitney_result {
  double u_a = 0;
  double u_b = 0;
  double z = 0;        // standardised U (0 for the exact test)
  double p_value = 1;  // two-sided
  bool exact = false;
};
mann_whitney_result mann_whitney(std::span<const double> a, std::span<const double> b);

// Standard normal upper-tail probability P(Z > z).
double normal_upper_tail(double z);

}  // namespace ridgeline::bench
