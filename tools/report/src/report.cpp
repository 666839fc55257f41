// Condenses result files into the report's data blob and writes the page (see report.hpp). Each
// known schema has one function that picks what its charts need, in the units the axes show;
// plans and divergence audits, whose formats are still moving, become generic tables.
#include "ridgeline/report/report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/core/build_info.hpp"
#include "ridgeline/telemetry/environment.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/files.hpp"

namespace ridgeline::report {
namespace {

using nlohmann::json;

constexpr const char* k_profile = "ridgeline.gpu_profile/v1";
constexpr const char* k_sweep = "ridgeline.sweep/v1";
constexpr const char* k_kv = "ridgeline.kv/v1";
constexpr const char* k_plan = "ridgeline.plan/v1";
constexpr const char* k_diverge = "ridgeline.diverge/v1";
constexpr const char* k_diverge_compare = "ridgeline.diverge_compare/v1";
constexpr const char* k_roofline = "ridgeline.roofline/v1";

std::string base_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

double num(const json& j, const char* key, double fallback = 0) {
  if (!j.is_object()) return fallback;
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  if (!j.is_object()) return fallback;
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

[[noreturn]] void malformed(const input_file& f, const std::string& what) {
  throw std::invalid_argument(f.path + ": " + what);
}

const json& rows_of(const input_file& f) {
  const auto it = f.doc.find("rows");
  if (it == f.doc.end() || !it->is_array()) malformed(f, "has no \"rows\" array");
  return *it;
}

// Input and output bytes per element of the probe's peak GEMMs (fp8 writes bf16, int8 int32).
std::pair<double, double> gemm_element_bytes(const std::string& t) {
  if (t == "fp32" || t == "tf32") return {4, 4};
  if (t == "fp16" || t == "bf16") return {2, 2};
  if (t == "fp8_e4m3") return {1, 2};
  if (t == "int8") return {1, 4};
  return {0, 0};
}

// One roofline per GPU profile: measured memory roofs (HBM read plateau, L2 from the working-set
// sweep), measured compute roofs per dtype with their ridge points, the datasheet beside, and the
// probe's kernels (linear layers, whole blocks, peak GEMMs) at their counted intensity.
json roofline_of(const input_file& f, const gpu_profile& p) {
  json memory = json::array();
  if (p.read_bytes_per_second > 0) {
    memory.push_back({{"label", "HBM read (measured)"},
                      {"bytes_per_second", p.read_bytes_per_second},
                      {"measured", true}});
  }
  if (p.datasheet_bytes_per_second > 0) {
    memory.push_back({{"label", "HBM (datasheet)"},
                      {"bytes_per_second", p.datasheet_bytes_per_second},
                      {"measured", false}});
  }
  double l2 = 0;
  for (const auto& r : p.rows) {
    if (str(r, "kind") != "working_set") continue;
    if (p.l2_bytes > 0 && num(r, "buffer_bytes") > static_cast<double>(p.l2_bytes) / 2) continue;
    l2 = std::max(l2, num(r, "bytes_per_second"));
  }
  if (l2 > 0) {
    memory.push_back({{"label", "L2 (measured, working set <= L2/2)"},
                      {"bytes_per_second", l2},
                      {"measured", true}});
  }
  json compute = json::array();
  for (const auto& [t, peak] : p.peaks) {
    json c = {{"dtype", std::string(name(t))},
              {"flops_per_second", peak.flops_per_second},
              {"datasheet_flops_per_second", peak.datasheet_flops_per_second}};
    if (auto r = p.ridge_point(t)) c["ridge_flops_per_byte"] = *r;
    if (auto r = p.datasheet_ridge_point(t)) c["datasheet_ridge_flops_per_byte"] = *r;
    compute.push_back(c);
  }
  json points = json::array();
  for (const auto& r : p.rows) {
    const std::string kind = str(r, "kind");
    if (kind == "linear" || kind == "linear_block") {
      const double flops = num(r, "flops"), bytes = num(r, "bytes");
      const double rate = num(r, "flops_per_second");
      if (!(flops > 0 && bytes > 0 && rate > 0)) continue;
      const double tokens = kind == "linear" ? num(r, "n") : num(r, "tokens");
      const std::string label =
          kind == "linear"
              ? str(r, "layer") + ", " + std::to_string(std::lround(tokens)) + " tokens"
              : "block, " + std::to_string(std::lround(tokens)) + " tokens";
      points.push_back(
          {{"series", kind == "linear" ? "linear layers (" + str(r, "model") + ")"
                                       : "4 linear layers of a block (" + str(r, "model") + ")"},
           {"label", label},
           {"intensity_flops_per_byte", flops / bytes},
           {"flops_per_second", rate}});
    } else if (kind == "gemm") {
      const auto [in, out] = gemm_element_bytes(str(r, "dtype"));
      const double m = num(r, "m"), n = num(r, "n"), k = num(r, "k");
      const double bytes = (m * k + k * n) * in + m * n * out;
      if (!(bytes > 0 && num(r, "flops") > 0)) continue;
      points.push_back(
          {{"series", "peak GEMMs"},
           {"label", str(r, "dtype") + " " + std::to_string(std::lround(m)) + "x" +
                         std::to_string(std::lround(n)) + "x" + std::to_string(std::lround(k))},
           {"intensity_flops_per_byte", num(r, "flops") / bytes},
           {"flops_per_second", num(r, "flops_per_second")}});
    }
  }
  return {{"title", (p.key.empty() ? p.name : p.key) + ": " + p.name},
          {"gpu", p.name},
          {"source", f.path},
          {"profile_source", p.source},
          {"memory_roofs", memory},
          {"compute_roofs", compute},
          {"points", points}};
}

// `ridgeline roofline`: a roofline from the document's own ceilings, with its measured points:
// intensity-sweep kernels, engine steps at their measured (else counted) intensity, and each
// kernel of the traced decode steps.
json roofline_doc_of(const input_file& f) {
  const json& c = f.doc.contains("ceilings") ? f.doc["ceilings"] : json::object();
  if (!c.is_object() || num(c, "dram_read_bytes_per_second") <= 0) {
    malformed(f, "a roofline document lacks ceilings.dram_read_bytes_per_second");
  }
  json memory = json::array({{{"label", "HBM read (measured)"},
                              {"bytes_per_second", num(c, "dram_read_bytes_per_second")},
                              {"measured", true}}});
  if (num(c, "datasheet_dram_bytes_per_second") > 0) {
    memory.push_back({{"label", "HBM (datasheet)"},
                      {"bytes_per_second", num(c, "datasheet_dram_bytes_per_second")},
                      {"measured", false}});
  }
  json compute = json::array();
  for (const auto& d : c.value("dtypes", json::array())) {
    json roof = {{"dtype", str(d, "dtype")},
                 {"flops_per_second", num(d, "peak_flops_per_second")},
                 {"datasheet_flops_per_second", num(d, "datasheet_flops_per_second")}};
    if (d.contains("ridge_flops_per_byte") && d["ridge_flops_per_byte"].is_number()) {
      roof["ridge_flops_per_byte"] = d["ridge_flops_per_byte"];
    }
    compute.push_back(roof);
  }
  json points = json::array();
  auto add = [&](const std::string& series, const std::string& label, double i, double rate) {
    if (i > 0 && rate > 0) {
      points.push_back({{"series", series},
                        {"label", label},
                        {"intensity_flops_per_byte", i},
                        {"flops_per_second", rate}});
    }
  };
  if (f.doc.contains("intensity_sweep")) {
    for (const auto& p : f.doc["intensity_sweep"].value("points", json::array())) {
      add("intensity sweep: " + str(p, "kernel"),
          str(p, "kernel") + " at " + std::to_string(num(p, "flop_per_byte")).substr(0, 6) +
              " FLOP/B",
          num(p, "flop_per_byte"), num(p, "flop_per_second"));
    }
  }
  for (const auto& r : f.doc.value("engine", json::array())) {
    if (r.contains("skipped")) continue;
    const bool measured = r.contains("measured") && r["measured"].is_object();
    add(std::string("engine steps (") + (measured ? "measured" : "counted") + " intensity)",
        str(r, "phase") + " batch " + std::to_string(std::lround(num(r, "batch"))),
        num(r, "intensity_flops_per_byte"), num(r, "flops_per_second"));
  }
  for (const auto& k : f.doc.value("decode_kernels", json::array())) {
    const std::string batch = std::to_string(std::lround(num(k, "batch")));
    for (const auto& r : k.value("kernels", json::array())) {
      add("decode kernels, batch " + batch, str(r, "phase") + ": " + str(r, "kernel"),
          num(r, "intensity_flops_per_byte"), num(r, "flops_per_second"));
    }
  }
  return {{"title", str(c, "gpu") + ": measured roofline (" + base_name(f.path) + ")"},
          {"gpu", str(c, "gpu")},
          {"source", f.path},
          {"profile_source", str(c, "source")},
          {"memory_roofs", memory},
          {"compute_roofs", compute},
          {"points", points}};
}

json working_set_of(const input_file& f, const gpu_profile& p) {
  std::map<std::string, json> by_op;
  for (const auto& r : p.rows) {
    if (str(r, "kind") != "working_set") continue;
    by_op[str(r, "op", "read")].push_back(
        {{"bytes", num(r, "buffer_bytes")}, {"bytes_per_second", num(r, "bytes_per_second")}});
  }
  json series = json::array();
  for (auto& [op, pts] : by_op) {
    std::sort(pts.begin(), pts.end(),
              [](const json& a, const json& b) { return a["bytes"] < b["bytes"]; });
    series.push_back({{"op", op}, {"points", pts}});
  }
  return {{"title", (p.key.empty() ? p.name : p.key) + ": bandwidth against working set"},
          {"source", f.path},
          {"l2_bytes", p.l2_bytes},
          {"series", series}};
}

// Sweep rows grouped by (phase, context), batches ascending; skipped points keep their reason and
// the memory limit (max_sequences) of each context.
json sweep_of(const input_file& f) {
  const json& rows = rows_of(f);
  std::map<std::pair<std::string, int>, json> groups;
  json engine_points = json::array();
  for (const auto& r : rows) {
    if (!r.is_object() || !r.contains("phase") || !r.contains("batch") || !r.contains("context")) {
      malformed(f, "a sweep row lacks phase, batch or context");
    }
    const std::string phase = str(r, "phase");
    const int context = static_cast<int>(num(r, "context"));
    json& g = groups[{phase, context}];
    if (g.is_null()) {
      g = {{"phase", phase},
           {"context", context},
           {"points", json::array()},
           {"skipped", json::array()},
           {"max_sequences", nullptr}};
    }
    if (r.contains("max_sequences") && r["max_sequences"].is_number()) {
      g["max_sequences"] = r["max_sequences"];
    }
    const double batch = num(r, "batch");
    if (r.contains("skipped")) {
      g["skipped"].push_back({{"batch", batch}, {"reason", str(r, "skipped")}});
      continue;
    }
    const json& s = r.contains("step_seconds") ? r["step_seconds"] : json::object();
    if (!(num(s, "median") > 0)) malformed(f, "a sweep row lacks step_seconds.median");
    g["points"].push_back({{"batch", batch},
                           {"tokens_per_second", num(r, "tokens_per_second")},
                           {"step_seconds", num(s, "median")},
                           {"step_seconds_p10", num(s, "p10", num(s, "median"))},
                           {"step_seconds_p90", num(s, "p90", num(s, "median"))},
                           {"pct_of_floor", num(r, "pct_of_floor")}});
    if (num(r, "intensity_flops_per_byte") > 0 && num(r, "flops_per_second") > 0) {
      engine_points.push_back({{"series", "engine " + phase + " steps"},
                               {"label", phase + " batch " + std::to_string(std::lround(batch)) +
                                             ", context " + std::to_string(context)},
                               {"intensity_flops_per_byte", num(r, "intensity_flops_per_byte")},
                               {"flops_per_second", num(r, "flops_per_second")}});
    }
  }
  json series = json::array();
  for (auto& [key, g] : groups) {
    std::sort(g["points"].begin(), g["points"].end(),
              [](const json& a, const json& b) { return a["batch"] < b["batch"]; });
    series.push_back(g);
  }
  const json& cfg = f.doc.contains("config") ? f.doc["config"] : json::object();
  const json& env = f.doc.contains("environment") ? f.doc["environment"] : json::object();
  const std::string gpu =
      env.contains("gpu") ? str(env["gpu"], "name", "unknown GPU") : "unknown GPU";
  return {{"title", str(cfg, "model", "model?") + " on " + gpu},
          {"source", f.path},
          {"gpu", gpu},
          {"model", str(cfg, "model")},
          {"floor_bytes_per_second", num(cfg, "floor_bytes_per_second")},
          {"peak_flops_per_second", num(cfg, "peak_bf16_flops_per_second")},
          {"note", str(cfg, "note")},
          {"series", series},
          {"engine_points", engine_points}};
}

// Quantile points of one latency distribution: the full "cdf" when kv wrote one, else p50, p90,
// p99 and max.
json cdf_of(const json& d) {
  json pts = json::array();
  if (!d.is_object()) return pts;
  if (d.contains("cdf") && d["cdf"].is_array()) {
    for (const auto& q : d["cdf"]) {
      if (q.is_array() && q.size() == 2 && q[0].is_number() && q[1].is_number()) {
        pts.push_back({{"q", q[0]}, {"seconds", q[1]}});
      }
    }
    return pts;
  }
  for (const auto& [key, q] : {std::pair{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"max", 1.0}}) {
    if (d.contains(key) && d[key].is_number()) pts.push_back({{"q", q}, {"seconds", d[key]}});
  }
  return pts;
}

json kv_of(const input_file& f) {
  json rows = json::array();
  for (const auto& r : rows_of(f)) {
    if (!r.is_object() || !r.contains("capacity_bytes") || !r.contains("token_hit_rate")) {
      malformed(f, "a kv row lacks capacity_bytes or token_hit_rate");
    }
    json cdfs = json::object();
    for (const char* m : {"ttft_seconds", "tpot_seconds", "itl_seconds", "e2e_seconds"}) {
      cdfs[m] = cdf_of(r.contains(m) ? r[m] : json());
    }
    rows.push_back({{"capacity", str(r, "capacity")},
                    {"capacity_bytes", num(r, "capacity_bytes")},
                    {"capacity_blocks", num(r, "capacity_blocks")},
                    {"token_hit_rate", num(r, "token_hit_rate")},
                    {"block_hit_rate", num(r, "block_hit_rate")},
                    {"recomputed_tokens", num(r, "recomputed_tokens")},
                    {"preemptions", num(r, "preemptions")},
                    {"rejected", num(r, "rejected")},
                    {"cdf", cdfs}});
  }
  std::sort(rows.begin(), rows.end(),
            [](const json& a, const json& b) { return a["capacity_bytes"] < b["capacity_bytes"]; });
  const json& cfg = f.doc.contains("config") ? f.doc["config"] : json::object();
  return {{"title", base_name(str(cfg, "workload", f.path)) + ", " + str(cfg, "model") + " on " +
                        str(cfg, "gpu") + ", blocks of " +
                        std::to_string(std::lround(num(cfg, "block_tokens"))) + " tokens"},
          {"source", f.path},
          {"requests", num(cfg, "requests")},
          {"rows", rows}};
}

// Generic table of any result: rows flattened one level ("a.b"), config as key/value pairs.
void flatten(const json& j, const std::string& prefix, json& out, int depth) {
  if (j.is_object() && depth < 2) {
    for (const auto& [k, v] : j.items())
      flatten(v, prefix.empty() ? k : prefix + "." + k, out, depth + 1);
    return;
  }
  if (j.is_array() || j.is_object()) {
    std::string text = j.dump();
    if (text.size() > 120) text = text.substr(0, 117) + "...";
    out[prefix] = text;
  } else {
    out[prefix] = j;
  }
}

json table_of(const input_file& f, const std::string& kind) {
  json columns = json::array();
  std::set<std::string> seen;
  json rows = json::array();
  if (f.doc.contains("rows") && f.doc["rows"].is_array()) {
    for (const auto& r : f.doc["rows"]) {
      json flat = json::object();
      flatten(r, r.is_object() ? "" : "value", flat, 0);
      for (const auto& [k, v] : flat.items()) {
        if (seen.insert(k).second) columns.push_back(k);
      }
      rows.push_back(flat);
    }
  }
  json cells = json::array();
  for (const auto& r : rows) {
    json line = json::array();
    for (const auto& c : columns)
      line.push_back(r.contains(c.get<std::string>()) ? r[c.get<std::string>()] : json());
    cells.push_back(line);
  }
  json config = json::object();
  if (f.doc.contains("config")) flatten(f.doc["config"], "", config, 0);
  return {{"kind", kind},     {"title", kind + ": " + base_name(f.path)},
          {"source", f.path}, {"schema", str(f.doc, "schema")},
          {"config", config}, {"columns", columns},
          {"rows", cells},    {"raw_rows", f.doc.contains("rows") ? f.doc["rows"] : json::array()}};
}

// A plot of a divergence audit when its rows carry a step-like x and divergence-like numbers.
json divergence_plot_of(const input_file& f) {
  if (!f.doc.contains("rows") || !f.doc["rows"].is_array() || f.doc["rows"].empty()) return nullptr;
  const json& rows = f.doc["rows"];
  std::string x_key;
  for (const char* k : {"step", "position", "token", "token_index", "index", "batch"}) {
    const bool all = std::all_of(rows.begin(), rows.end(), [&](const json& r) {
      return r.is_object() && r.contains(k) && r[k].is_number();
    });
    if (all) {
      x_key = k;
      break;
    }
  }
  if (x_key.empty()) return nullptr;
  std::vector<std::string> y_keys;
  for (const auto& [k, v] : rows[0].items()) {
    if (k == x_key || !v.is_number()) continue;
    std::string lower = k;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* w : {"kl", "margin", "diverg", "diff", "error", "distance", "mismatch"}) {
      if (lower.find(w) != std::string::npos) {
        y_keys.push_back(k);
        break;
      }
    }
  }
  if (y_keys.empty()) return nullptr;
  json series = json::array();
  for (const auto& y : y_keys) {
    json pts = json::array();
    for (const auto& r : rows) {
      if (r.contains(y) && r[y].is_number()) pts.push_back({{"x", r[x_key]}, {"y", r[y]}});
    }
    series.push_back({{"label", y}, {"points", pts}});
  }
  return {{"title", "divergence: " + base_name(f.path)},
          {"source", f.path},
          {"x", x_key},
          {"series", series}};
}

// Environment summary (the fields a reader checks first) plus the whole block.
json environment_of(const input_file& f) {
  const json env = f.doc.contains("environment") ? f.doc["environment"] : json::object();
  const json gpu = env.contains("gpu") ? env["gpu"] : json::object();
  const json rl = env.contains("ridgeline") ? env["ridgeline"] : json::object();
  const json host = env.contains("host") ? env["host"] : json::object();
  json summary = {
      {"gpu", str(gpu, "name", "-")},
      {"driver", str(gpu, "driver_version", "-")},
      {"cuda", str(gpu, "cuda_runtime_version", "-")},
      {"sm_clock_mhz", num(gpu, "sm_clock_mhz")},
      {"throttled", gpu.contains("throttle_reasons") && gpu["throttle_reasons"].is_array() &&
                        !gpu["throttle_reasons"].empty()},
      {"host", str(host, "hostname", "-")},
      {"git_sha", str(rl, "git_sha", "-").substr(0, 12)},
      {"git_dirty", rl.value("git_dirty", false)},
      {"time_utc", str(env, "time_utc", "-")}};
  return {
      {"source", f.path}, {"schema", str(f.doc, "schema")}, {"summary", summary}, {"full", env}};
}

}  // namespace

const std::vector<std::string>& known_schemas() {
  static const std::vector<std::string> k = {k_profile, k_sweep,   k_kv,
                                             k_plan,    k_diverge, k_diverge_compare,
                                             k_roofline};
  return k;
}

input_file load_input(const std::string& path) {
  input_file f{path, {}};
  const std::string text = read_text_file(path);
  try {
    f.doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(path + ": not valid JSON (" + e.what() + ")");
  }
  const std::string schema = f.doc.is_object() ? str(f.doc, "schema") : "";
  const auto& k = known_schemas();
  if (std::find(k.begin(), k.end(), schema) == k.end()) {
    std::string list;
    for (const auto& s : k) list += (list.empty() ? "" : ", ") + s;
    throw std::invalid_argument(
        path + ": " +
        (schema.empty() ? std::string("no \"schema\" field") : "unknown schema '" + schema + "'") +
        " (report reads " + list + ")");
  }
  return f;
}

json build_report_data(const std::vector<input_file>& inputs, const report_options& o) {
  if (inputs.empty()) throw std::invalid_argument("report: no result files given");
  json roofline = json::array(), working_set = json::array(), sweeps = json::array(),
       kv = json::array(), plans = json::array(), divergence = json::array(),
       divergence_plots = json::array(), environments = json::array(), sources = json::array();
  double slo = o.slo_tpot_seconds;
  std::string slo_source = "--slo-tpot-ms";
  for (const auto& f : inputs) {
    const std::string schema = str(f.doc, "schema");
    sources.push_back({{"path", f.path}, {"schema", schema}});
    environments.push_back(environment_of(f));
    if (schema == k_profile) {
      gpu_profile p;
      try {
        p = gpu_profile_from_json(f.doc);
      } catch (const std::invalid_argument& e) {
        malformed(f, e.what());
      }
      roofline.push_back(roofline_of(f, p));
      json ws = working_set_of(f, p);
      if (!ws["series"].empty()) working_set.push_back(ws);
    } else if (schema == k_roofline) {
      roofline.push_back(roofline_doc_of(f));
    } else if (schema == k_sweep) {
      sweeps.push_back(sweep_of(f));
    } else if (schema == k_kv) {
      kv.push_back(kv_of(f));
    } else if (schema == k_plan) {
      plans.push_back(table_of(f, "plan"));
      const json& cfg = f.doc.contains("config") ? f.doc["config"] : json::object();
      for (const char* k : {"slo_tpot_seconds", "tpot_slo_seconds"}) {
        if (num(cfg, k) > 0) {
          slo = num(cfg, k);
          slo_source = f.path;
        }
      }
    } else if (schema == k_diverge_compare) {
      // `ridgeline diverge compare`: the per-prompt verdicts as a table, and each divergence as
      // a point (step, top-1/top-2 margin where it happened).
      divergence.push_back(table_of(f, "divergence"));
      json pts = json::array();
      if (f.doc.contains("divergences") && f.doc["divergences"].is_array()) {
        for (const auto& d : f.doc["divergences"]) {
          const char* m = d.contains("margin_a") ? "margin_a" : "margin";  // A's margin
          if (d.contains("step") && d.contains(m) && d["step"].is_number() && d[m].is_number()) {
            pts.push_back({{"x", d["step"]}, {"y", d[m]}});
          }
        }
      }
      if (!pts.empty()) {
        divergence_plots.push_back({{"title", "divergence step against margin: " + base_name(f.path)},
                                    {"source", f.path},
                                    {"x", "step"},
                                    {"series", json::array({{{"label", "margin (log-prob) at divergence"},
                                                             {"points", pts}}})}});
      }
    } else if (schema == k_diverge) {
      divergence.push_back(table_of(f, "divergence"));
      json plot = divergence_plot_of(f);
      if (!plot.is_null()) divergence_plots.push_back(plot);
    }
  }
  // Engine steps join the roofline of the GPU they ran on; without a profile of that GPU, the
  // first roofline; without any profile, a roofline from the sweep's own ceilings.
  for (const auto& s : sweeps) {
    if (s["engine_points"].empty()) continue;
    json* target = nullptr;
    for (auto& r : roofline) {
      if (r["gpu"] == s["gpu"]) target = &r;
    }
    if (target == nullptr && !roofline.empty()) target = &roofline[0];
    if (target == nullptr && s["floor_bytes_per_second"].get<double>() > 0) {
      json compute = json::array();
      if (s["peak_flops_per_second"].get<double>() > 0) {
        const double peak = s["peak_flops_per_second"], bw = s["floor_bytes_per_second"];
        compute.push_back({{"dtype", "bf16"},
                           {"flops_per_second", peak},
                           {"datasheet_flops_per_second", 0},
                           {"ridge_flops_per_byte", peak / bw}});
      }
      roofline.push_back(
          {{"title", s["gpu"].get<std::string>() + " (ceilings from the sweep's config)"},
           {"gpu", s["gpu"]},
           {"source", s["source"]},
           {"profile_source", "sweep config"},
           {"memory_roofs", json::array({{{"label", "floor bandwidth"},
                                          {"bytes_per_second", s["floor_bytes_per_second"]},
                                          {"measured", true}}})},
           {"compute_roofs", compute},
           {"points", json::array()}});
      target = &roofline.back();
    }
    if (target == nullptr) continue;
    for (const auto& p : s["engine_points"]) (*target)["points"].push_back(p);
  }
  const auto& b = current_build();
  return {{"schema", "ridgeline.report_data/v1"},
          {"title", o.title},
          {"generated_utc", metrics::utc_now_iso8601()},
          {"ridgeline", {{"version", b.version}, {"git_sha", b.git_sha}}},
          {"slo_tpot_seconds", slo},
          {"slo_source", slo_source},
          {"sources", sources},
          {"roofline", roofline},
          {"working_set", working_set},
          {"sweeps", sweeps},
          {"kv", kv},
          {"plans", plans},
          {"divergence", divergence},
          {"divergence_plots", divergence_plots},
          {"environments", environments}};
}

std::string load_chart_js(const std::string& path) {
  std::string p = path;
  if (p.empty()) {
    const char* env = std::getenv("RIDGELINE_CHART_JS");
    p = env != nullptr && *env != '\0' ? env : k_chart_js_path;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) {
    throw io_error("report: chart library not found at " + p + " (install Debian's " +
                   k_chart_js_package + ": apt-get install " + k_chart_js_package +
                   ", or run scripts/setup.sh)");
  }
  std::string js = read_text_file(p);
  if (js.find("Chart") == std::string::npos) {
    throw io_error("report: " + p + " does not look like Chart.js (from " + k_chart_js_package +
                   ")");
  }
  return js;
}

std::string escape_for_script(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/') out += '\\';
  }
  return out;
}

std::string render_html(const json& data, std::string_view chart_js) {
  const std::string_view tpl = html_template();
  // Placeholders in the order they appear; each is replaced once, so text inserted for one is
  // never searched for the next.
  const std::vector<std::pair<std::string, std::string>> parts = {
      {"{{TITLE}}",
       [&] {
         std::string t = data.value("title", "ridgeline report"), out;
         for (char c : t) {
           if (c == '<')
             out += "&lt;";
           else if (c == '>')
             out += "&gt;";
           else if (c == '&')
             out += "&amp;";
           else
             out += c;
         }
         return out;
       }()},
      {"{{CHART_JS}}", escape_for_script(chart_js)},
      {"{{DATA}}", escape_for_script(data.dump())},
  };
  std::string out;
  out.reserve(tpl.size() + chart_js.size() + 1024);
  std::size_t pos = 0;
  for (const auto& [key, value] : parts) {
    const std::size_t at = tpl.find(key, pos);
    if (at == std::string_view::npos) {
      throw std::logic_error("report template lacks the placeholder " + key);
    }
    out.append(tpl.substr(pos, at - pos));
    out += value;
    pos = at + key.size();
  }
  out.append(tpl.substr(pos));
  return out;
}

}  // namespace ridgeline::report
