// Reading the measured points of a sweep document (see sweep_points.hpp).
#include "ridgeline/perfmodel/sweep_points.hpp"

#include <stdexcept>

namespace ridgeline::planner {

std::string sweep_model(const nlohmann::json& doc) {
  if (!doc.is_object() || doc.value("schema", "") != "ridgeline.sweep/v1")
    throw std::invalid_argument("not a sweep: schema must be \"ridgeline.sweep/v1\"");
  if (!doc.contains("config") || !doc["config"].is_object() || !doc["config"].contains("model") ||
      !doc["config"]["model"].is_string())
    throw std::invalid_argument("sweep: config.model missing");
  return doc["config"]["model"];
}

std::vector<sweep_point> sweep_points(const nlohmann::json& doc) {
  sweep_model(doc);
  if (!doc.contains("rows") || !doc["rows"].is_array())
    throw std::invalid_argument("sweep: rows must be an array");
  std::vector<sweep_point> out;
  std::size_t i = 0;
  for (const auto& r : doc["rows"]) {
    const std::string where = "sweep: rows[" + std::to_string(i++) + "]";
    if (!r.is_object()) throw std::invalid_argument(where + " is not an object");
    if (r.contains("skipped")) continue;
    sweep_point p;
    p.phase = r.value("phase", "");
    if (p.phase != "decode" && p.phase != "prefill")
      throw std::invalid_argument(where + ": phase must be decode or prefill");
    if (!r.contains("batch") || !r["batch"].is_number_integer() ||
        r["batch"].get<std::int64_t>() < 1 || !r.contains("context") ||
        !r["context"].is_number_integer() || r["context"].get<std::int64_t>() < 1)
      throw std::invalid_argument(where + ": batch and context must be positive integers");
    p.batch = r["batch"];
    p.context = r["context"];
    if (!r.contains("step_seconds") || !r["step_seconds"].is_object() ||
        !r["step_seconds"].contains("median") || !r["step_seconds"]["median"].is_number() ||
        !(r["step_seconds"]["median"].get<double>() > 0))
      throw std::invalid_argument(where + ": step_seconds.median must be a positive number");
    p.seconds = r["step_seconds"]["median"];
    out.push_back(p);
  }
  if (out.empty()) throw std::invalid_argument("sweep: no measured rows (all skipped?)");
  return out;
}

step_shape shape_of(const sweep_point& p) {
  return p.phase == "decode" ? decode_shape(p.batch, p.context) : prefill_shape(p.batch, p.context);
}

}  // namespace ridgeline::planner
