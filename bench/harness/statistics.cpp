// Statistics for the measurement harness (see statistics.hpp).
#include "ridgeline/bench/statistics.hpp"

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
  if (s.median != 0) {
    // Robust sigma: the larger of the MAD and IQR estimates, so that a two-mode sample (where the
    // MAD can be zero) still reads as noisy.
    const double iqr = quantile_sorted(v, 0.75) - quantile_sorted(v, 0.25);
    const double sigma = std::max(1.4826 * s.mad, iqr / 1.349);
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

}  // namespace ridgeline::bench
