// Accuracy of a step-time model against measured sweep points: error per point, MAPE and the
// worst point (`plan accuracy`, and the fit's own figures).
//   accuracy_report r = accuracy(sweep_points(doc), model);   // r.mape, r.worst
#pragma once

#include <cstddef>
#include <vector>

#include "ridgeline/perfmodel/step_time_model.hpp"
#include "ridgeline/perfmodel/sweep_points.hpp"

namespace ridgeline::planner {

// Prediction against measurement per point, and the summary.
struct accuracy_row {
  sweep_point point;
  double predicted_seconds = 0;
  double error = 0;  // (predicted - measured) / measured
};
struct accuracy_report {
  std::vector<accuracy_row> rows;
  double mape = 0;   // mean |error|
  double worst = 0;  // max |error|
  std::size_t worst_index = 0;
};
accuracy_report accuracy(const std::vector<sweep_point>& points, const step_time_model& model);
// MAPE and worst |error| of (predicted, measured) pairs; throws on a non-positive measurement.
accuracy_report summarize(std::vector<accuracy_row> rows);

}  // namespace ridgeline::planner
