// The measured points of a ridgeline.sweep/v1 document that the planner fits and checks against:
// one (phase, batch, context, median step seconds) per measured row.
//   for (const sweep_point& p : sweep_points(doc)) ...   // throws std::invalid_argument
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline::planner {

// One measured point of a ridgeline.sweep/v1 document.
struct sweep_point {
  std::string phase;  // decode or prefill
  std::int64_t batch = 0, context = 0;
  double seconds = 0;  // median step time
};
// Rows with a median step time; skipped rows are left out. Throws std::invalid_argument on a
// document that is not a sweep or has malformed rows.
std::vector<sweep_point> sweep_points(const nlohmann::json& sweep_doc);
// The model preset a sweep ran (config.model).
std::string sweep_model(const nlohmann::json& sweep_doc);

// The step a point timed: decode_shape or prefill_shape of its batch and context.
step_shape shape_of(const sweep_point& p);

}  // namespace ridgeline::planner
