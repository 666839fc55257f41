// Reading result files for compare and history (see results.hpp).
#include "ridgeline/regress/results.hpp"

#include <algorithm>
#include <cmath>

#include <optional>

#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/gpu_profile.hpp"
#include "ridgeline/core/schemas/measurement.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/schemas/sweep.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::bench {
using nlohmann::json;

time_metric parse_time_metric(const std::string& text) {
  if (text == "auto") return time_metric::automatic;
  if (text == "real_time") return time_metric::real_time;
  if (text == "cpu_time") return time_metric::cpu_time;
  throw std::invalid_argument("unknown time metric '" + text +
                              "' (use auto, real_time or cpu_time)");
}

std::string to_string(time_metric m) {
  switch (m) {
    case time_metric::automatic:
      return "auto";
    case time_metric::real_time:
      return "real_time";
    case time_metric::cpu_time:
      return "cpu_time";
  }
  return "unknown";
}

std::string serving_benchmark_name(const std::string& row_key, const std::string& metric) {
  return "serving/" + row_key + "/" + metric;
}

benchmark_series make_series(std::vector<double> seconds) {
  benchmark_series s;
  s.stats = summarize(seconds);
  s.iqr_seconds = s.stats.iqr;
  s.seconds = std::move(seconds);
  return s;
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::invalid_argument(source + ": " + what);
}

double unit_seconds(const std::string& source, const std::string& unit) {
  const double s = seconds_per_unit(unit);
  if (s == 0) fail(source, "unknown time_unit '" + unit + "'");
  return s;
}

double number_field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number())
    fail(where, std::string("'") + key + "' is missing or not a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < 0) fail(where, std::string("'") + key + "' is not a finite time");
  return v;
}

std::string string_field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Google Benchmark JSON: {"context": {...}, "benchmarks": [...]}.
result_set parse_gbench(const json& doc, const std::string& source, time_metric metric) {
  result_set r;
  r.source = source;
  r.format = "google-benchmark";
  const json& context =
      doc.contains("context") && doc["context"].is_object() ? doc["context"] : json::object();
  // ridgeline binaries put the environment block in the context, one key per field, as JSON text.
  json env = json::object();
  for (const auto& [key, value] : context.items()) {
    if (key.rfind("ridgeline_", 0) != 0) continue;
    const std::string field = key.substr(10);
    if (value.is_string()) {
      json parsed = json::parse(value.get<std::string>(), nullptr, false);
      env[field] = parsed.is_discarded() ? value : parsed;
    } else {
      env[field] = value;
    }
  }
  env["google_benchmark"] = {{"host_name", string_field(context, "host_name")},
                             {"num_cpus", context.value("num_cpus", 0)},
                             {"mhz_per_cpu", context.value("mhz_per_cpu", 0)},
                             {"library_build_type", string_field(context, "library_build_type")}};
  r.environment = env;
  if (env.contains("ridgeline") && env["ridgeline"].is_object()) {
    r.git_sha = string_field(env["ridgeline"], "git_sha");
  }
  r.time_utc = env.contains("time_utc") && env["time_utc"].is_string()
                   ? env["time_utc"].get<std::string>()
                   : string_field(context, "date");

  const json& list = doc["benchmarks"];
  if (!list.is_array()) fail(source, "'benchmarks' is not an array");
  std::map<std::string, std::vector<double>> samples;
  std::map<std::string, std::map<std::string, double>> aggregates;
  std::map<std::string, double> repetitions;
  std::map<std::string, std::string> errors;
  std::vector<std::string> order;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& b = list[i];
    const std::string where = source + ": benchmarks[" + std::to_string(i) + "]";
    if (!b.is_object()) fail(where, "not an object");
    std::string name = string_field(b, "run_name");
    if (name.empty()) name = string_field(b, "name");
    if (name.empty()) fail(where, "has no name");
    if (!samples.count(name) && !aggregates.count(name) && !errors.count(name))
      order.push_back(name);
    if (b.value("error_occurred", false)) {
      errors[name] = b.value("error_message", std::string("error"));
      continue;
    }
    const double scale = unit_seconds(where, b.value("time_unit", std::string("ns")));
    const bool wall = metric == time_metric::real_time ||
                      (metric == time_metric::automatic &&
                       (ends_with(name, "/manual_time") || ends_with(name, "/real_time")));
    const double seconds = number_field(b, wall ? "real_time" : "cpu_time", where) * scale;
    if (b.value("run_type", std::string("iteration")) == "aggregate") {
      aggregates[name][b.value("aggregate_name", std::string())] = seconds;
      repetitions[name] = b.value("repetitions", 0.0);
    } else {
      samples[name].push_back(seconds);
    }
  }
  for (const auto& name : order) {
    benchmark_series s;
    if (samples.count(name)) {
      s = make_series(samples[name]);
    } else if (aggregates.count(name) && aggregates[name].count("median")) {
      // --benchmark_report_aggregates_only: rebuild what a summary can from median and stddev.
      const auto& a = aggregates[name];
      s.summary_only = true;
      s.stats.count = static_cast<std::size_t>(repetitions[name]);
      s.stats.median = a.at("median");
      s.stats.mean = a.count("mean") ? a.at("mean") : s.stats.median;
      s.stats.stddev = a.count("stddev") ? a.at("stddev") : 0.0;
      s.iqr_seconds = 1.349 * s.stats.stddev;
      if (s.stats.median > 0 && s.stats.count > 0) {
        s.stats.noise = 1.2533 * s.stats.stddev / std::sqrt(double(s.stats.count)) / s.stats.median;
      }
    }
    if (errors.count(name)) s.error = errors[name];
    if (s.stats.count == 0 && s.error.empty()) continue;  // aggregates without a median
    r.benchmarks[name] = std::move(s);
  }
  return r;
}

// A row's measurement, read with the format's typed reader (schemas/measurement.hpp): its
// "seconds" summary with every statistic, repetitions, stop reason and throttling. A field missing
// is an error naming the file, the row and the field, not a default.
benchmark_series series_from_measurement(const schema::node& n) {
  const schema::measurement_block m = schema::parse_measurement(n);
  const schema::timing_summary& s = m.seconds;
  if (s.count < 0) n.fail("seconds.count must not be negative");
  if (s.median < 0) n.fail("seconds.median must not be negative");
  benchmark_series out;
  out.summary_only = true;
  out.stats.count = static_cast<std::size_t>(s.count);
  out.stats.median = s.median;
  out.stats.mean = s.mean;
  out.stats.min = s.min;
  out.stats.max = s.max;
  out.stats.stddev = s.stddev;
  out.stats.p10 = s.p10;
  out.stats.p90 = s.p90;
  out.stats.mad = s.mad;
  out.stats.noise = s.noise;
  out.iqr_seconds = 2.0 * out.stats.mad;  // IQR = 2 MAD for a normal distribution
  return out;
}

// One latency column of a serving row's per-request table: the defined values (-1 marks a value
// that does not exist: TTFT and E2E of an unfinished request, TPOT of one with fewer than two
// tokens); any other negative value is an error naming the element.
benchmark_series per_request_series(const std::vector<double>& column, const std::string& path,
                                    const std::string& source) {
  std::vector<double> defined;
  for (std::size_t k = 0; k < column.size(); ++k) {
    if (column[k] == -1.0) continue;
    if (column[k] < 0) {
      throw schema::schema_error(source, path + "[" + std::to_string(k) + "]",
                                 "negative and not -1 (undefined)",
                                 schema::k_serving_results_schema);
    }
    defined.push_back(column[k]);
  }
  benchmark_series s;
  if (defined.empty()) {
    s.error = "no request of " + std::to_string(column.size()) + " has a defined value (" + path +
              ")";
  } else {
    s = make_series(std::move(defined));
  }
  s.per_request = true;
  return s;
}

// The run's throughput as a time, so that lower is better like every other benchmark here: one
// value per run (summary only; compare has no repetitions to test it with, history trends it).
benchmark_series run_level_series(double output_tokens_per_second, const std::string& path) {
  benchmark_series s;
  if (!(output_tokens_per_second > 0)) {
    s.error = "no output tokens (" + path + " is 0)";
    return s;
  }
  const double v = 1.0 / output_tokens_per_second;
  s.summary_only = true;
  s.stats.count = 1;
  s.stats.median = s.stats.mean = s.stats.min = s.stats.max = s.stats.p10 = s.stats.p90 = v;
  return s;
}

// Serving results (ridgeline.kv/v1 of replay and load), read whole by the format's typed reader.
// Every row with a `measured` section gives serving/<capacity>/ttft, tpot and e2e from its
// per-request columns, and serving/<capacity>/seconds_per_output_token; kv's simulated rows
// (no `measured`) are not measurements and are skipped.
result_set parse_serving(const json& doc, const std::string& source) {
  const schema::serving_results sr = schema::parse_serving_results(doc, source);
  result_set r;
  r.source = source;
  r.format = schema::k_serving_results_schema;
  r.environment = sr.env.raw;
  r.git_sha = sr.env.git_sha;
  r.time_utc = sr.env.time_utc;
  r.client_environment = sr.config.executor && *sr.config.executor == "http";
  for (std::size_t i = 0; i < sr.rows.size(); ++i) {
    const schema::serving_row& row = sr.rows[i];
    if (!row.measured) continue;
    const std::string at = "rows[" + std::to_string(i) + "]";
    if (row.capacity.empty()) {
      throw schema::schema_error(source, at + ".capacity", "empty (the row's label names it)",
                                 schema::k_serving_results_schema);
    }
    std::string key = row.capacity;
    auto taken = [&](const std::string& k) {
      return std::any_of(r.serving_rows.begin(), r.serving_rows.end(),
                         [&](const serving_row_ref& x) { return x.key == k; });
    };
    if (taken(key)) {
      int k = 2;
      while (taken(key + "#" + std::to_string(k))) ++k;
      key += "#" + std::to_string(k);
    }
    const schema::serving_requests& q = row.measured->requests;
    const std::string columns = at + ".measured.requests.";
    const std::pair<const char*, const std::vector<double>*> latencies[] = {
        {"ttft", &q.ttft_seconds}, {"tpot", &q.tpot_seconds}, {"e2e", &q.e2e_seconds}};
    serving_row_ref ref{key, {}};
    for (const auto& [metric, column] : latencies) {
      r.benchmarks[serving_benchmark_name(key, metric)] =
          per_request_series(*column, columns + metric + "_seconds", source);
      ref.metrics.push_back(metric);
    }
    r.benchmarks[serving_benchmark_name(key, "seconds_per_output_token")] =
        run_level_series(row.output_tokens_per_second, at + ".output_tokens_per_second");
    ref.metrics.push_back("seconds_per_output_token");
    r.serving_rows.push_back(std::move(ref));
  }
  if (r.serving_rows.empty()) {
    fail(source,
         "serving results without a measured row (a `ridgeline kv` simulation?): compare and "
         "history read the measured rows of `replay` and `load` results");
  }
  return r;
}

result_set parse_ridgeline(const json& doc, const std::string& source) {
  result_set r;
  r.source = source;
  r.format = doc["schema"].get<std::string>();
  if (r.format.rfind("ridgeline.", 0) != 0 || r.format.size() < 4 ||
      r.format.substr(r.format.size() - 3) != "/v1") {
    fail(source, "unknown schema '" + r.format + "' (expected ridgeline.<kind>/v1)");
  }
  // The formats whose rows carry measurements are read whole by their typed readers, so a file
  // that is not a complete profile or sweep is refused naming the field; the environment's sha and
  // time come from the typed block. Other ridgeline documents: their rows, environment as written.
  if (r.format == schema::k_serving_results_schema) return parse_serving(doc, source);
  std::optional<schema::environment> env;
  if (r.format == schema::k_gpu_profile_schema) {
    env = schema::parse_gpu_profile(doc, source).env;
  } else if (r.format == schema::k_sweep_schema) {
    env = schema::parse_sweep(doc, source).env;
  }
  if (env) {
    r.environment = env->raw;
    r.git_sha = env->git_sha;
    r.time_utc = env->time_utc;
  } else {
    if (doc.contains("environment") && doc["environment"].is_object()) {
      r.environment = doc["environment"];
    }
    if (r.environment.contains("ridgeline") && r.environment["ridgeline"].is_object()) {
      r.git_sha = string_field(r.environment["ridgeline"], "git_sha");
    }
    r.time_utc = string_field(r.environment, "time_utc");
  }
  if (!doc.contains("rows") || !doc["rows"].is_array())
    fail(source, "'rows' is missing or not an array");
  const schema::document_context ctx{source, r.format};
  const json& rows = doc["rows"];
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const json& row = rows[i];
    const std::string where = source + ": rows[" + std::to_string(i) + "]";
    if (!row.is_object()) fail(where, "not an object");
    if (!row.contains("measurement"))
      continue;  // derived rows (e.g. linear_block) carry no samples
    const schema::node measurement(row["measurement"], ctx,
                                   "rows[" + std::to_string(i) + "].measurement");
    std::string name = row_name(row);
    if (r.benchmarks.count(name)) {
      int k = 2;
      while (r.benchmarks.count(name + "#" + std::to_string(k))) ++k;
      name += "#" + std::to_string(k);
    }
    r.benchmarks[name] = series_from_measurement(measurement);
  }
  return r;
}

}  // namespace

std::string row_name(const json& row) {
  if (row.contains("name") && row["name"].is_string()) return row["name"].get<std::string>();
  std::string name = row.contains("kind") && row["kind"].is_string()
                         ? row["kind"].get<std::string>()
                         : std::string("row");
  // Fields chosen at run time, not by the configuration, would split one benchmark in two.
  static const char* const k_outputs[] = {"kind", "algorithm_index", "algorithm_candidates",
                                          "bound"};
  for (const auto& [key, value] : row.items()) {  // nlohmann::json objects iterate in key order
    if (std::find(std::begin(k_outputs), std::end(k_outputs), key) != std::end(k_outputs)) continue;
    if (value.is_string()) {
      name += "/" + key + "=" + value.get<std::string>();
    } else if (value.is_number_integer() || value.is_boolean()) {
      name += "/" + key + "=" + value.dump();
    }
  }
  return name;
}

result_set parse_results(const json& doc, const std::string& source, time_metric metric) {
  if (!doc.is_object()) fail(source, "not a result: the top level is not a JSON object");
  result_set r;
  if (doc.contains("schema") && doc["schema"].is_string()) {
    r = parse_ridgeline(doc, source);
  } else if (doc.contains("benchmarks")) {
    r = parse_gbench(doc, source, metric);
  } else {
    fail(source,
         "not a result this reader knows (expected Google Benchmark JSON with 'benchmarks' or a "
         "ridgeline document with 'schema')");
  }
  if (r.benchmarks.empty()) fail(source, "holds no measured benchmarks");
  return r;
}

result_set merge_results(std::vector<result_set> parts) {
  if (parts.empty()) throw std::invalid_argument("no result files");
  result_set out = std::move(parts[0]);
  for (std::size_t i = 1; i < parts.size(); ++i) {
    for (auto& [name, s] : parts[i].benchmarks) {
      if (out.benchmarks.count(name)) {
        throw std::invalid_argument(name + " appears in both " + out.source + " and " +
                                    parts[i].source);
      }
      out.benchmarks[name] = std::move(s);
    }
    // A row key in both files made the same benchmark names, refused above.
    for (auto& row : parts[i].serving_rows) out.serving_rows.push_back(std::move(row));
    out.client_environment = out.client_environment || parts[i].client_environment;
    out.source += "," + parts[i].source;
    if (out.format != parts[i].format) out.format = "mixed";
  }
  return out;
}

result_set load_results(const std::filesystem::path& path, time_metric metric) {
  const std::string text = read_text_file(path);
  const std::string source = path.string();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    fail(source, "empty file, not a result");
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    const bool at_end = e.byte >= text.size();
    fail(source, "not valid JSON at byte " + std::to_string(e.byte) +
                     (at_end ? " (the file ends early: truncated or still being written?)"
                             : " (corrupt?)"));
  }
  return parse_results(doc, source, metric);
}

}  // namespace ridgeline::bench
