// The cuBLASLt algorithm choice rule and policy checks (see gemm_choice.hpp).
#include "ridgeline/kernels/gemm_choice.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace ridgeline {

void validate(const gemm_choice_policy& p) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("GEMM choice policy: " + what);
  };
  if (p.candidates < 1) fail("candidates must be at least 1, got " + std::to_string(p.candidates));
  if (p.warmup < 0) fail("warmup must be 0 or more, got " + std::to_string(p.warmup));
  if (p.repetitions < 1 || p.repetitions % 2 == 0) {
    fail("repetitions must be odd and positive (the median is one sample), got " +
         std::to_string(p.repetitions));
  }
  if (!(p.margin >= 0.0 && p.margin < 1.0)) {
    fail("margin must be in [0, 1), got " + std::to_string(p.margin));
  }
}

std::string describe(const gemm_choice_policy& p) {
  char margin[32];
  std::snprintf(margin, sizeof margin, "%g%%", p.margin * 100.0);
  std::string s = std::to_string(p.candidates) + " candidates, " +
                  (p.cold ? "cold (L2 flushed before each run)" : "hot (no L2 flush)") + ", " +
                  std::to_string(p.warmup) + " warm-up, median of " +
                  std::to_string(p.repetitions) + ", ";
  if (p.margin > 0) return s + "a later candidate must be " + margin + " faster";
  return s + "strictly fastest (first of equal times)";
}

double median_of_odd(std::vector<double>& samples) {
  if (samples.empty() || samples.size() % 2 == 0) {
    throw std::invalid_argument("median_of_odd: needs an odd number of samples, got " +
                                std::to_string(samples.size()));
  }
  const auto mid = samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2);
  std::nth_element(samples.begin(), mid, samples.end());
  return *mid;
}

int pick_fastest(const std::vector<double>& medians, double margin) {
  if (medians.empty()) throw std::invalid_argument("pick_fastest: no candidates");
  if (!(margin >= 0.0 && margin < 1.0)) {
    throw std::invalid_argument("pick_fastest: margin must be in [0, 1), got " +
                                std::to_string(margin));
  }
  int best = 0;
  double best_t = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < medians.size(); ++i) {
    if (medians[i] < best_t * (1.0 - margin)) {
      best_t = medians[i];
      best = static_cast<int>(i);
    }
  }
  return best;
}

}  // namespace ridgeline
