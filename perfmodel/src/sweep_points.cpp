// Reading the measured points of a sweep document (see sweep_points.hpp).
#include "ridgeline/perfmodel/sweep_points.hpp"

#include <stdexcept>

#include "ridgeline/core/schemas/sweep.hpp"

namespace ridgeline::planner {

// Sweeps are read by the format's strict reader (core/schemas/sweep.hpp): a missing or mistyped
// field is an error naming the field and the schema.
std::string sweep_model(const nlohmann::json& doc) {
  return schema::parse_sweep(doc, "sweep").config.model;
}

std::vector<sweep_point> sweep_points(const nlohmann::json& doc) {
  const schema::sweep_document sweep = schema::parse_sweep(doc, "sweep");
  std::vector<sweep_point> out;
  for (std::size_t i = 0; i < sweep.rows.size(); ++i) {
    const auto& r = sweep.rows[i];
    if (!r.measured) continue;
    if (r.context < 1) {
      throw std::invalid_argument("sweep: rows[" + std::to_string(i) +
                                  "].context: must be at least 1 for the fit");
    }
    out.push_back({r.phase, r.batch, r.context, r.measured->step_seconds.median});
  }
  if (out.empty()) throw std::invalid_argument("sweep: no measured rows (all skipped?)");
  return out;
}

step_shape shape_of(const sweep_point& p) {
  return p.phase == "decode" ? decode_shape(p.batch, p.context) : prefill_shape(p.batch, p.context);
}

}  // namespace ridgeline::planner
