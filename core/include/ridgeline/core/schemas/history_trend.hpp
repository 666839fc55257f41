// ridgeline.history_trend/v1: `ridgeline history show --json`, the export of the results store:
// per benchmark, its points over runs and the change points found in them.
// docs/results-formats.md lists every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::schema {

inline constexpr const char* k_history_trend_schema = "ridgeline.history_trend/v1";

struct trend_point {
  std::int64_t run_id = 0;
  std::string time_utc, git_sha, branch;
  double median_seconds = 0, iqr_seconds = 0;
  std::int64_t count = 0;
};

struct trend_change_point {
  std::int64_t start_index = 0, detected_index = 0, start_run_id = 0, detected_run_id = 0;
  std::string start_git_sha;
  double before_seconds = 0, after_seconds = 0, relative_change = 0;
  std::string kind;  // "step" | "drift"
};

struct trend_benchmark {
  std::string name;
  std::vector<std::string> x_time_utc;     // one per point, for plotting
  std::vector<double> y_median_seconds;    // one per point, for plotting
  std::vector<trend_point> points;
  std::vector<trend_change_point> change_points;
};

struct history_trend_document {
  std::string history;  // the store's path
  double threshold = 0;
  std::vector<trend_benchmark> benchmarks;
};

history_trend_document parse_history_trend(const nlohmann::json& doc, std::string_view source);
history_trend_document read_history_trend(const std::filesystem::path& path);
nlohmann::json to_json(const history_trend_document& doc);

}  // namespace ridgeline::schema
