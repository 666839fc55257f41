// Reader and writer of ridgeline.history_trend/v1 (schemas/history_trend.hpp).
#include "ridgeline/core/schemas/history_trend.hpp"

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

using nlohmann::json;

history_trend_document parse_history_trend(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_history_trend_schema};
  const node top = open_document(doc, ctx);
  history_trend_document out;
  out.history = top.string("history");
  out.threshold = top.number("threshold");
  for (const auto& b : top.array("benchmarks").elements()) {
    trend_benchmark t;
    t.name = b.string("name");
    t.x_time_utc = b.strings("x_time_utc");
    t.y_median_seconds = b.numbers("y_median_seconds");
    for (const auto& p : b.array("points").elements()) {
      t.points.push_back({p.integer("run_id"), p.string("time_utc"), p.string("git_sha"),
                          p.string("branch"), p.number("median_seconds"),
                          p.number("iqr_seconds"), p.integer("count")});
    }
    if (t.x_time_utc.size() != t.points.size() || t.y_median_seconds.size() != t.points.size()) {
      b.fail("x_time_utc, y_median_seconds and points must have one entry per point");
    }
    for (const auto& c : b.array("change_points").elements()) {
      trend_change_point cp;
      cp.start_index = c.integer("start_index");
      cp.detected_index = c.integer("detected_index");
      cp.start_run_id = c.integer("start_run_id");
      cp.start_git_sha = c.string("start_git_sha");
      cp.detected_run_id = c.integer("detected_run_id");
      cp.before_seconds = c.number("before_seconds");
      cp.after_seconds = c.number("after_seconds");
      cp.relative_change = c.number("relative_change");
      cp.kind = c.string("kind");
      t.change_points.push_back(std::move(cp));
    }
    out.benchmarks.push_back(std::move(t));
  }
  return out;
}

history_trend_document read_history_trend(const std::filesystem::path& path) {
  return parse_history_trend(read_json(path, k_history_trend_schema), path.string());
}

json to_json(const history_trend_document& doc) {
  json benchmarks = json::array();
  for (const auto& b : doc.benchmarks) {
    json points = json::array(), changes = json::array();
    for (const auto& p : b.points) {
      points.push_back({{"run_id", p.run_id},
                        {"time_utc", p.time_utc},
                        {"git_sha", p.git_sha},
                        {"branch", p.branch},
                        {"median_seconds", p.median_seconds},
                        {"iqr_seconds", p.iqr_seconds},
                        {"count", p.count}});
    }
    for (const auto& c : b.change_points) {
      changes.push_back({{"start_index", c.start_index},
                         {"detected_index", c.detected_index},
                         {"start_run_id", c.start_run_id},
                         {"start_git_sha", c.start_git_sha},
                         {"detected_run_id", c.detected_run_id},
                         {"before_seconds", c.before_seconds},
                         {"after_seconds", c.after_seconds},
                         {"relative_change", c.relative_change},
                         {"kind", c.kind}});
    }
    benchmarks.push_back({{"name", b.name},
                          {"x_time_utc", b.x_time_utc},
                          {"y_median_seconds", b.y_median_seconds},
                          {"points", points},
                          {"change_points", changes}});
  }
  return {{"schema", k_history_trend_schema},
          {"history", doc.history},
          {"threshold", doc.threshold},
          {"benchmarks", benchmarks}};
}

}  // namespace ridgeline::schema
