// Fitting the step-time model's efficiencies and overhead to measured sweeps: non-negative least
// squares on relative error, with smoothness between neighbouring knots and a weak prior
// (docs/plan.md).
//   fitted_parameters f = fit_sweeps({{sweep_doc, measured_profile}});
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "ridgeline/perfmodel/fitted_parameters.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"

namespace ridgeline::planner {

struct fit_input {
  nlohmann::json sweep;  // ridgeline.sweep/v1
  gpu_profile gpu;       // the ceilings of the GPU it ran on
};
struct fit_options {
  double smoothness = 1e-3;    // weight of first differences between neighbouring knots
  double prior_weight = 1e-4;  // pull toward the prior (probe linear efficiency, else defaults)
  int max_sweeps = 200000;     // coordinate-descent passes at most
};
// Least squares on relative error over every point of every input, u >= 0, overhead >= 0.
fitted_parameters fit_sweeps(const std::vector<fit_input>& inputs, const fit_options& o = {});

}  // namespace ridgeline::planner
