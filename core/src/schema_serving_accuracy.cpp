// Reader and writer of ridgeline.serving_accuracy/v1 (schemas/serving_accuracy.hpp).
#include "ridgeline/core/schemas/serving_accuracy.hpp"

#include "ridgeline/core/schema.hpp"

namespace ridgeline::schema {

using nlohmann::json;

namespace {

std::optional<double> parse_bound(const node& n, std::string_view key) {
  const auto b = n.nullable_number(key);
  if (b && !(*b >= 0)) n.fail_member(key, "must not be negative");
  return b;
}

}  // namespace

serving_accuracy_document parse_serving_accuracy(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_serving_accuracy_schema};
  const node top = open_document(doc, ctx);
  serving_accuracy_document out;
  out.env = parse_environment(top.object("environment"));
  const node c = top.object("config");
  out.step_time_model = c.string("step_time_model");
  out.fit = c.string("fit");
  for (const auto& [k, v] : c.object("bounds").members()) out.bounds[k] = v.as_number();
  out.max_rate_bound = parse_bound(c, "max_rate_bound");
  for (const auto& [k, v] : c.object("definitions").members()) out.definitions[k] = v.as_string();
  for (const auto& r : top.array("runs").elements()) {
    serving_accuracy_run run;
    run.file = r.string("file");
    run.level = r.string("level");
    run.gpu = r.string("gpu");
    run.workload = r.string("workload");
    run.window = r.string("window");
    run.requests = r.integer("requests");
    run.simulated_requests = r.integer("simulated_requests");
    run.kv_blocks = r.integer("kv_blocks");
    for (const auto& [k, m] : r.object("metrics").members()) {
      run.metrics[k] = {m.number("measured"), m.number("predicted"), m.number("error")};
    }
    out.runs.push_back(std::move(run));
  }
  for (const auto& s : top.array("summary").elements()) {
    serving_accuracy_summary m;
    m.metric = s.string("metric");
    m.runs = s.integer("runs");
    m.median_error = s.number("median_error");
    m.bound = parse_bound(s, "bound");
    m.met = s.nullable_boolean("met");
    if (m.bound.has_value() != m.met.has_value()) s.fail_member("met", "must be set exactly when bound is");
    out.summary.push_back(std::move(m));
  }
  for (const auto& s : top.array("max_rate").elements()) {
    max_rate_accuracy m;
    m.file = s.string("file");
    m.slo = s.string("slo");
    m.measured_rate_per_second = s.number("measured_rate_per_second");
    m.predicted_rate_per_second = s.number("predicted_rate_per_second");
    m.error = s.number("error");
    m.capped = s.boolean("capped");
    m.bound = parse_bound(s, "bound");
    m.met = s.nullable_boolean("met");
    if (m.bound.has_value() != m.met.has_value()) s.fail_member("met", "must be set exactly when bound is");
    out.max_rate.push_back(std::move(m));
  }
  const node v = top.object("verdict");
  out.passed = v.boolean("passed");
  out.broken = v.strings("broken");
  if (out.passed != out.broken.empty()) v.fail_member("passed", "disagrees with broken");
  return out;
}

serving_accuracy_document read_serving_accuracy(const std::filesystem::path& path) {
  return parse_serving_accuracy(read_json(path, k_serving_accuracy_schema), path.string());
}

json to_json(const serving_accuracy_document& doc) {
  json runs = json::array();
  for (const auto& r : doc.runs) {
    json metrics = json::object();
    for (const auto& [k, m] : r.metrics) {
      metrics[k] = {{"measured", m.measured}, {"predicted", m.predicted}, {"error", m.error}};
    }
    runs.push_back({{"file", r.file},
                    {"level", r.level},
                    {"gpu", r.gpu},
                    {"workload", r.workload},
                    {"window", r.window},
                    {"requests", r.requests},
                    {"simulated_requests", r.simulated_requests},
                    {"kv_blocks", r.kv_blocks},
                    {"metrics", metrics}});
  }
  json summary = json::array();
  for (const auto& s : doc.summary) {
    summary.push_back({{"metric", s.metric},
                       {"runs", s.runs},
                       {"median_error", s.median_error},
                       {"bound", nullable(s.bound)},
                       {"met", nullable(s.met)}});
  }
  json max_rate = json::array();
  for (const auto& m : doc.max_rate) {
    max_rate.push_back({{"file", m.file},
                        {"slo", m.slo},
                        {"measured_rate_per_second", m.measured_rate_per_second},
                        {"predicted_rate_per_second", m.predicted_rate_per_second},
                        {"error", m.error},
                        {"capped", m.capped},
                        {"bound", nullable(m.bound)},
                        {"met", nullable(m.met)}});
  }
  return {{"schema", k_serving_accuracy_schema},
          {"environment", to_json(doc.env)},
          {"config",
           {{"step_time_model", doc.step_time_model},
            {"fit", doc.fit},
            {"bounds", doc.bounds},
            {"max_rate_bound", nullable(doc.max_rate_bound)},
            {"definitions", doc.definitions}}},
          {"runs", runs},
          {"summary", summary},
          {"max_rate", max_rate},
          {"verdict", {{"passed", doc.passed}, {"broken", doc.broken}}}};
}

}  // namespace ridgeline::schema
