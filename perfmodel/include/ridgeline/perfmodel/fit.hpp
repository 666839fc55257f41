// Fitting the step-time model's efficiencies to measured sweeps: least squares on relative error
// with every efficiency in (0, 1], smoothness between neighbouring knots and a weak prior; the
// fixed per-step cost is an input, measured apart from the sweeps (a traced decode step's kernels
// outside the op groups), never a fitted parameter (docs/plan.md).
//   fit_options o;  o.fixed = fixed_costs_from_kernels(roofline_doc);
//   fitted_parameters f = fit_sweeps({{sweep_doc, measured_profile, "h100-sxm_sweep.json"}}, o);
//   accuracy_report r = held_out_accuracy({...}, held_out::batch, o);   // leave one batch out
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/accuracy.hpp"
#include "ridgeline/perfmodel/fitted_parameters.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"

namespace ridgeline::planner {

struct fit_input {
  nlohmann::json sweep;  // ridgeline.sweep/v1
  gpu_profile gpu;       // the ceilings of the GPU it ran on
  std::string label;     // where the sweep came from (a path), for the fit's stats
};
struct fit_options {
  double smoothness = 1e-3;    // weight of first differences between neighbouring knots
  double prior_weight = 1e-4;  // pull toward the prior (probe linear efficiency, else defaults)
  int max_sweeps = 200000;     // coordinate-descent passes at most
  // The fixed per-step cost the fit subtracts before fitting efficiencies; unset: the default's
  // (30 us per step, marked "not measured").
  std::optional<fixed_costs> fixed;
};
// Least squares on relative error over every point of every input, every u >= 1 (efficiency at
// most 1); stats: points, mape, worst_abs_error, gpus, models, sweeps (labels).
fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o = {});

// Cross-validation of the fit: for each batch size (or context) in the inputs, fit on the points
// of every other one and predict the points of that one; the report holds every held-out
// prediction (so its MAPE is the held-out MAPE). Values whose removal leaves no point are skipped.
enum class held_out { batch, context };
accuracy_report held_out_accuracy(const std::vector<fit_input>& inputs, held_out by,
                                  const fit_options& o = {});

// The fixed cost of a step from a `ridgeline roofline` document's traced decode kernels
// (decode_kernels[]): the kernels whose work the step-work count does not model (kernel names
// starting rms_norm, embedding, sampling, gather_rows). Those called a multiple of the model's
// layers per step are per-layer cost, the others per-step cost, each the mean over the traced
// batches. Throws std::invalid_argument when the document has no traced kernels.
fixed_costs fixed_costs_from_kernels(const nlohmann::json& roofline_doc, const std::string& label);

}  // namespace ridgeline::planner
