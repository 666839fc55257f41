// ridgeline.serving_accuracy/v1 (`ridgeline plan accuracy --serving`): serving metrics of measured
// runs (replay, load) against the simulator's prediction for the same window, rate and KV pool,
// the median error per metric over the runs against its bound, and the max-rate check of a
// `load --find-max` result. docs/results-formats.md lists every field; docs/plan.md the method.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_serving_accuracy_schema = "ridgeline.serving_accuracy/v1";

// One metric of one run: error = |predicted - measured| / measured.
struct serving_metric_error {
  double measured = 0, predicted = 0, error = 0;
};

struct serving_accuracy_run {
  std::string file;    // the measured document
  std::string level;   // its row's capacity label ("engine pool"; load: "rate 4/s", ...)
  std::string gpu;     // the profile the prediction used
  std::string workload;
  std::string window;  // how the window was rebuilt ("config.window", "measured request ids")
  std::int64_t requests = 0, simulated_requests = 0, kv_blocks = 0;
  std::map<std::string, serving_metric_error> metrics;  // by metric name (ttft_p50, ...)
};

// A metric over the runs: the median of the runs' errors against its bound (none: reported only).
struct serving_accuracy_summary {
  std::string metric;
  std::int64_t runs = 0;
  double median_error = 0;
  std::optional<double> bound;
  std::optional<bool> met;  // present exactly when bound is
};

// The highest rate meeting an SLO: measured by `load --find-max`, predicted by plan's rate search.
struct max_rate_accuracy {
  std::string file, slo;
  double measured_rate_per_second = 0, predicted_rate_per_second = 0, error = 0;
  bool capped = false;  // the search stopped at its steady-state cap with the SLO still met
  std::optional<double> bound;
  std::optional<bool> met;
};

struct serving_accuracy_document {
  environment env;
  // config
  std::string step_time_model, fit;
  std::map<std::string, double> bounds;  // metric -> largest median error allowed
  std::optional<double> max_rate_bound;
  std::map<std::string, std::string> definitions;
  std::vector<serving_accuracy_run> runs;
  std::vector<serving_accuracy_summary> summary;
  std::vector<max_rate_accuracy> max_rate;
  // verdict: every bound met; else one line per broken bound.
  bool passed = true;
  std::vector<std::string> broken;
};

serving_accuracy_document parse_serving_accuracy(const nlohmann::json& doc,
                                                 std::string_view source);
serving_accuracy_document read_serving_accuracy(const std::filesystem::path& path);
nlohmann::json to_json(const serving_accuracy_document& doc);

}  // namespace ridgeline::schema
