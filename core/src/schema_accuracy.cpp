// Readers of ridgeline.accuracy/v1 and ridgeline.peer/v1, the accuracy writer
// (schemas/accuracy.hpp).
#include "ridgeline/core/schemas/accuracy.hpp"

namespace ridgeline::schema {

using nlohmann::json;

namespace {

accuracy_point parse_point(const node& n) {
  return {n.string("phase"), n.integer("batch"), n.integer("context")};
}

}  // namespace

accuracy_document parse_accuracy(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_accuracy_schema};
  const node top = open_document(doc, ctx);
  accuracy_document out;
  out.env = parse_environment(top.object("environment"));
  const node c = top.object("config");
  out.sweep = c.string("sweep");
  out.model = c.string("model");
  out.gpu = c.string("gpu");
  out.ceilings = c.string("ceilings");
  out.step_time_model = c.string("step_time_model");
  for (const auto& [k, v] : c.object("definitions").members()) out.definitions[k] = v.as_string();
  const node s = top.object("summary");
  out.points = s.integer("points");
  out.mape = s.number("mape");
  out.worst_abs_error = s.number("worst_abs_error");
  out.worst_point = parse_point(s.object("worst_point"));
  for (const auto& r : top.array("rows").elements()) {
    out.rows.push_back({parse_point(r), r.number("measured_seconds"), r.number("predicted_seconds"),
                        r.number("error")});
  }
  return out;
}

accuracy_document read_accuracy(const std::filesystem::path& path) {
  return parse_accuracy(read_json(path, k_accuracy_schema), path.string());
}

json to_json(const accuracy_document& doc) {
  auto point = [](const accuracy_point& p) {
    return json{{"phase", p.phase}, {"batch", p.batch}, {"context", p.context}};
  };
  json rows = json::array();
  for (const auto& r : doc.rows) {
    json j = point(r.point);
    j["measured_seconds"] = r.measured_seconds;
    j["predicted_seconds"] = r.predicted_seconds;
    j["error"] = r.error;
    rows.push_back(j);
  }
  return {{"schema", k_accuracy_schema},
          {"environment", to_json(doc.env)},
          {"config",
           {{"sweep", doc.sweep},
            {"model", doc.model},
            {"gpu", doc.gpu},
            {"ceilings", doc.ceilings},
            {"step_time_model", doc.step_time_model},
            {"definitions", doc.definitions}}},
          {"summary",
           {{"points", doc.points},
            {"mape", doc.mape},
            {"worst_abs_error", doc.worst_abs_error},
            {"worst_point", point(doc.worst_point)}}},
          {"rows", rows}};
}

peer_document parse_peer(const json& doc, std::string_view source) {
  const document_context ctx{std::string(source), k_peer_schema};
  const node top = open_document(doc, ctx);
  peer_document out;
  const node env = top.object("environment");
  out.gpu = env.string("gpu");
  env.string("time_utc");
  env.string("torch");
  out.environment = env.value();
  const node c = top.object("config");
  c.object("model");
  c.string("peer");
  c.string("dtype");
  out.config = c.value();
  for (const auto& r : top.array("rows").elements()) {
    peer_row row;
    row.batch = r.integer("batch");
    row.context = r.integer("context");
    row.phase = r.string("phase");
    row.skipped = r.optional_string("skipped");
    if (!row.skipped) {
      const node s = r.object("step_seconds");
      row.step_seconds = peer_step_seconds{s.number("median"), s.number("p10"), s.number("p90"),
                                           s.number("min"),    s.number("max"), s.integer("count")};
      row.tokens_per_second = r.number("tokens_per_second");
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

peer_document read_peer(const std::filesystem::path& path) {
  return parse_peer(read_json(path, k_peer_schema), path.string());
}

}  // namespace ridgeline::schema
