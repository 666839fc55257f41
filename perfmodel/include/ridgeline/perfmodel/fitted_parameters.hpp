// The fitted model's parameters: efficiency curves (inverse efficiency, piecewise linear in log2
// of tokens per step or context per sequence) and the per-step overhead; the defaults of a GPU
// with no sweep fit, and the ridgeline.fit/v1 document that stores a fit.
//   fitted_parameters f = fitted_parameters_from_json(doc);   // throws std::invalid_argument
//   f.linear.at(64);                                            // 1 / efficiency at 64 tokens
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"

namespace ridgeline::planner {

inline constexpr const char* k_fit_schema = "ridgeline.fit/v1";

// Inverse efficiency (time multiplier over the roofline) at knots log2(x); linear between knots,
// constant beyond the ends.
struct efficiency_curve {
  std::vector<double> log2_x;
  std::vector<double> inverse;  // 1 / efficiency, > 0
  double at(double x) const;
  // Weights w (size of knots) with at(x) = sum w[k] inverse[k].
  void weights(double x, std::vector<double>& w) const;
  static efficiency_curve flat(double lo_log2, double hi_log2, double efficiency);
};

struct fitted_parameters {
  efficiency_curve linear;             // by tokens per step (GEMM rows), 2^0 .. 2^14
  efficiency_curve attention_memory;   // by context per sequence, 2^4 .. 2^17
  efficiency_curve attention_compute;  // by context per sequence, 2^4 .. 2^17
  double overhead_seconds = 0;
  std::string gpu;     // key of the GPU the sweeps ran on ("" for defaults)
  std::string source;  // "fit of <gpu> on <models>", or "default (uncalibrated)"
  nlohmann::json stats = nlohmann::json::object();  // the fit's own error figures
};
// Efficiencies of a GPU with no sweep fit: linear from the probe's linear-block rows when the
// profile has them (else 0.7), attention 0.7 (memory) and 0.5 (compute), overhead 30 us.
fitted_parameters default_parameters(const gpu_profile* probe = nullptr);

nlohmann::json to_json(const fitted_parameters& f);
fitted_parameters fitted_parameters_from_json(const nlohmann::json& j);  // invalid_argument

}  // namespace ridgeline::planner
