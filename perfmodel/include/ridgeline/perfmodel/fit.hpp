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
#include "ridgeline/perfmodel/serving_steps.hpp"

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

// A measured serving run's steps (`ridgeline replay`; serving_steps.hpp) as fit input.
struct serving_fit_input {
  std::vector<serving_step_point> steps;
  std::string model;  // preset the run served
  gpu_profile gpu;    // the ceilings of the GPU it ran on
  std::string label;  // where the run came from (a path)
};
// How well a model predicts one run's steps. Every step but the run's first (the process's
// warm-up: no previous forward pass, gap_seconds -1) is compared; error = (predicted - measured)
// / measured of the forward time. The period is the loop gap + the forward time, compared on the
// steps that follow work without host-tier copies (those the loop gap is measured on).
struct serving_step_accuracy {
  std::string label;
  std::int64_t steps = 0;
  double mape = 0, median_error = 0, worst_abs_error = 0;
  double total_ratio = 0;  // sum of predicted / sum of measured forward times
  std::int64_t period_steps = 0;
  double period_mape = 0, period_total_ratio = 0;
};
serving_step_accuracy serving_step_accuracy_of(const serving_fit_input& run,
                                               const fitted_parameters& f);
// {label, steps, mape, median_error, worst_abs_error, total_ratio, period_steps, period_mape,
// period_total_ratio}: the fit document's per-run statistics.
nlohmann::json to_json(const serving_step_accuracy& a);

// The fit of sweeps and serving runs together: every sweep point and every serving step but each
// run's first is a row of the same least squares on relative error (weight 1 each), the same
// bounds, smoothness and prior as fit_sweeps; the loop gaps are loop_gaps_of the runs. With no
// serving run it is fit_sweeps. stats gain `serving` (labels), `serving_steps` and `serving_runs`
// (per run: steps, mape, median_error, worst_abs_error, total_ratio, period_mape,
// period_total_ratio, in sample).
fitted_parameters fit_calibration(const std::vector<fit_input>& sweeps,
                                  const std::vector<serving_fit_input>& serving,
                                  const fit_options& o = {});
// Leave one run out: for each serving run, the fit of the sweeps and every other run (its loop
// gaps from those runs too) predicting that run's steps. Needs two runs or more.
std::vector<serving_step_accuracy> held_out_runs(const std::vector<fit_input>& sweeps,
                                                 const std::vector<serving_fit_input>& serving,
                                                 const fit_options& o = {});

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
