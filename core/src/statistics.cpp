// Statistics for the measurement harness (see statistics.hpp).
#include "ridgeline/core/statistics.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace ridgeline::bench {

double quantile_sorted(std::span<const double> sorted, double q) {
  if (sorted.empty()) throw std::invalid_argument("quantile of an empty sample");
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile must be in [0, 1]");
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

std::vector<double> quantiles(std::span<const double> values, std::span<const double> qs) {
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> out;
  out.reserve(qs.size());
  for (double q : qs) out.push_back(quantile_sorted(sorted, q));
  return out;
}

double quantile(std::span<const double> values, double q) {
  return quantiles(values, std::span<const double>(&q, 1)).front();
}

double median(std::span<const double> values) {
  return quantile(values, 0.5);
}

summary summarize(std::span<const double> values) {
  summary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::vector<double> v(values.begin(), values.end());
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = quantile_sorted(v, 0.5);
  s.p10 = quantile_sorted(v, 0.1);
  s.p90 = quantile_sorted(v, 0.9);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  std::vector<double> dev(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) dev[i] = std::abs(v[i] - s.median);
  std::sort(dev.begin(), dev.end());
  s.mad = quantile_sorted(dev, 0.5);
  s.iqr = quantile_sorted(v, 0.75) - quantile_sorted(v, 0.25);
  if (s.median != 0) {
    // Robust sigma: the larger of the MAD and IQR estimates, so that a two-mode sample (where the
    // MAD can be zero) still reads as noisy.
    const double sigma = std::max(1.4826 * s.mad, s.iqr / 1.349);
    s.noise = 1.2533 * sigma / std::sqrt(static_cast<double>(v.size())) / std::abs(s.median);
  }
  return s;
}

nlohmann::json to_json(const summary& s) {
  return {{"count", s.count}, {"median", s.median}, {"mean", s.mean},     {"min", s.min},
          {"max", s.max},     {"stddev", s.stddev}, {"p10", s.p10},       {"p90", s.p90},
          {"mad", s.mad},     {"noise", s.noise}};
}

std::string to_string(stop_reason r) {
  switch (r) {
    case stop_reason::running: return "running";
    case stop_reason::noise_reached: return "noise_reached";
    case stop_reason::max_repetitions: return "max_repetitions";
    case stop_reason::time_cap: return "time_cap";
  }
  return "unknown";
}

stop_reason should_stop(const stopping_rule& rule, std::span<const double> samples,
                        double elapsed_seconds) {
  const auto n = static_cast<int>(samples.size());
  if (n >= rule.max_repetitions) return stop_reason::max_repetitions;
  if (n >= rule.min_repetitions) {
    if (summarize(samples).noise <= rule.max_noise) return stop_reason::noise_reached;
  }
  // The time cap applies only once at least one sample exists, so every measurement has data.
  if (n >= 1 && elapsed_seconds >= rule.max_seconds) return stop_reason::time_cap;
  return stop_reason::running;
}

double normal_upper_tail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

namespace {

// Number of arrangements of m values of a and n of b (no ties) with U_a == u, for every u in
// [0, m*n]: f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u), counted in doubles (C(100, 50) is
// about 1e29, well inside a double's range; the relative rounding error stays near 1e-15).
std::vector<double> mann_whitney_counts(std::size_t m, std::size_t n) {
  // f[j][u] for the current i (values of a placed) and every j in [0, n].
  std::vector<std::vector<double>> f(n + 1, std::vector<double>(m * n + 1, 0.0));
  for (std::size_t j = 0; j <= n; ++j) f[j][0] = 1;  // i = 0: one arrangement, U = 0
  for (std::size_t i = 1; i <= m; ++i) {
    std::vector<std::vector<double>> g(n + 1, std::vector<double>(m * n + 1, 0.0));
    g[0][0] = 1;  // j = 0: one arrangement, U = 0
    for (std::size_t j = 1; j <= n; ++j) {
      for (std::size_t u = 0; u <= i * j; ++u) {
        // The largest value is a's (it beats all j of b: U grows by j) or b's (U unchanged).
        const double from_a = u >= j ? f[j][u - j] : 0.0;
        g[j][u] = from_a + g[j - 1][u];
      }
    }
    f = std::move(g);
  }
  return f[n];
}

}  // namespace

mann_whitney_result mann_whitney(std::span<const double> a, std::span<const double> b) {
  if (a.empty() || b.empty()) throw std::invalid_argument("Mann-Whitney U test of an empty sample");
  struct item {
    double value;
    bool from_a;
  };
  std::vector<item> all;
  all.reserve(a.size() + b.size());
  for (double x : a) all.push_back({x, true});
  for (double x : b) all.push_back({x, false});
  for (const auto& it : all) {
    if (std::isnan(it.value)) throw std::invalid_argument("Mann-Whitney U test of a NaN value");
  }
  std::sort(all.begin(), all.end(), [](const item& l, const item& r) { return l.value < r.value; });
  const double m = static_cast<double>(a.size());
  const double n = static_cast<double>(b.size());
  const double total = m + n;
  double rank_sum_a = 0;
  double tie_term = 0;  // sum over tie groups of t^3 - t
  for (std::size_t i = 0; i < all.size();) {
    std::size_t j = i;
    while (j < all.size() && all[j].value == all[i].value) ++j;
    const double mid_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k) {
      if (all[k].from_a) rank_sum_a += mid_rank;
    }
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  mann_whitney_result r;
  r.u_a = rank_sum_a - m * (m + 1) / 2.0;
  r.u_b = m * n - r.u_a;
  const bool small = a.size() <= k_mann_whitney_exact_max && b.size() <= k_mann_whitney_exact_max;
  if (tie_term == 0 && small) {
    const std::vector<double> counts = mann_whitney_counts(a.size(), b.size());
    double all_arrangements = 0;
    for (double c : counts) all_arrangements += c;
    // Without ties U is an integer; the two-sided p doubles the smaller tail.
    const auto u = static_cast<std::size_t>(std::llround(std::min(r.u_a, r.u_b)));
    double lower = 0;
    for (std::size_t k = 0; k <= u; ++k) lower += counts[k];
    r.exact = true;
    r.p_value = std::min(1.0, 2.0 * lower / all_arrangements);
    return r;
  }
  const double mean = m * n / 2.0;
  const double variance = m * n / 12.0 * ((total + 1) - tie_term / (total * (total - 1)));
  if (variance <= 0) {
    r.p_value = 1;  // every value is the same: no evidence of a shift
    return r;
  }
  const double diff = r.u_a - mean;
  const double corrected = std::max(0.0, std::abs(diff) - 0.5);
  r.z = (diff < 0 ? -corrected : corrected) / std::sqrt(variance);
  r.p_value = std::min(1.0, 2.0 * normal_upper_tail(std::abs(r.z)));
  return r;
}

}  // namespace ridgeline::bench
