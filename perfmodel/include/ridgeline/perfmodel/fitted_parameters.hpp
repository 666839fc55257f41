// The fitted model's parameters: efficiency curves (inverse efficiency, piecewise linear in log2
// of tokens per step or context per sequence, every efficiency in (0, 1]), the fixed per-step
// cost that is measured apart and never fitted, the defaults of a GPU with no sweep fit, and the
// ridgeline.fit/v2 document that stores a fit.
//   fitted_parameters f = fitted_parameters_from_json(doc);  // throws std::invalid_argument
//   f.linear.at(64);                                    // 1 / efficiency at 64 tokens, >= 1
//   f.fixed.seconds(model_preset_by_name("llama-2-7b"));  // per step + per layer x layers
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline::planner {

// v2: efficiencies are bounded by 1 and the fixed cost is measured, not fitted. A v1 document
// (unbounded efficiencies, a fitted overhead) is refused with a line saying how to refit.
inline constexpr const char* k_fit_schema = "ridgeline.fit/v2";

// Inverse efficiency (time multiplier over the roofline, >= 1) at knots log2(x); linear between
// knots, constant beyond the ends. Every knot >= 1 keeps every value between them >= 1.
struct efficiency_curve {
  std::vector<double> log2_x;
  std::vector<double> inverse;  // 1 / efficiency, >= 1
  double at(double x) const;
  // Weights w (size of knots) with at(x) = sum w[k] inverse[k].
  void weights(double x, std::vector<double>& w) const;
  static efficiency_curve flat(double lo_log2, double hi_log2, double efficiency);
};

// What a step costs besides its op groups, kept apart from the efficiencies: the kernels whose
// work the step-work count does not model (norms, embedding, sampling, gathering the sampled rows),
// measured from a traced decode step (fixed_costs_from_kernels, fit.hpp), or a default.
struct fixed_costs {
  double per_step_seconds = 0;
  double per_layer_seconds = 0;
  std::string source;
  double seconds(const model_preset& m) const {
    return per_step_seconds + per_layer_seconds * m.layers;
  }
};

// What the serving loop adds between two forward passes: the GPU's idle time before a step,
// measured from serving runs' step records (loop_gaps_of, serving_steps.hpp) as the mean before a
// step that follows work, one figure for decode-only steps (with overlap, planned while the
// previous one runs) and one for steps with prefill tokens. The simulator adds it to every step's
// period (docs/plan.md, "Calibration from serving"); it is not part of a step's forward time, so
// sweep accuracy never sees it. A fit of sweeps alone has none (both 0, "not measured").
struct loop_gaps {
  double decode_seconds = 0;
  double prefill_seconds = 0;
  std::int64_t decode_steps = 0, prefill_steps = 0;  // steps each mean is over
  std::string source = "not measured (no serving run in the fit)";
  // The gap before a step of this shape (0 for a step of no sequence).
  double seconds(const step_shape& s) const {
    if (s.sequences <= 0) return 0;
    return s.prefill_tokens > 0 ? prefill_seconds : decode_seconds;
  }
  bool measured() const { return decode_steps > 0 || prefill_steps > 0; }
};

struct fitted_parameters {
  efficiency_curve linear;             // by tokens per step (GEMM rows), 2^0 .. 2^14
  efficiency_curve attention_memory;   // by context per sequence, 2^4 .. 2^17
  efficiency_curve attention_compute;  // by context per sequence, 2^4 .. 2^17
  fixed_costs fixed;
  loop_gaps loop;      // between steps of a serving loop (0 unless the fit saw serving runs)
  std::string gpu;     // key of the GPU the sweeps ran on ("" for defaults)
  std::string source;  // "fit of <gpu> on <models>", or "default (uncalibrated)"
  nlohmann::json stats = nlohmann::json::object();  // the fit's own error figures and inputs
};
// Efficiencies of a GPU with no sweep fit: linear from the probe's linear-block rows when the
// profile has them (at most 1; else 0.7), attention 0.7 (memory) and 0.5 (compute), a fixed cost
// of 30 us per step.
fitted_parameters default_parameters(const gpu_profile* probe = nullptr);

nlohmann::json to_json(const fitted_parameters& f);
// Throws std::invalid_argument naming the field: a missing or mistyped field, an efficiency
// outside (0, 1], knots that do not increase, a negative fixed cost or loop gap, or another
// schema. `loop_gaps` is the one optional object (fits of sweeps alone, written before it, have
// none): absent, both gaps are 0 and its source says "not measured".
fitted_parameters fitted_parameters_from_json(const nlohmann::json& j);

}  // namespace ridgeline::planner
