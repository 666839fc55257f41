// `ridgeline report`: turns result files (GPU profiles, sweeps, KV runs, replays and loads over
// HTTP with their find-max searches, serving accuracy, plans, divergence audits) into one
// self-contained HTML page. build_report_data condenses the files into the JSON the page
// draws from; render_html puts that JSON and the chart library's JS into the page template
// (tools/report/template.html, embedded at build time). docs/report.md says what each chart shows.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::report {

// Where Debian's libjs-chart.js puts Chart.js (UMD build); RIDGELINE_CHART_JS overrides it.
inline constexpr const char* k_chart_js_path = "/usr/share/javascript/chart.js/chart.min.js";
inline constexpr const char* k_chart_js_package = "libjs-chart.js";

struct report_options {
  std::string title = "ridgeline report";
  double slo_tpot_seconds = 0.05;  // drawn on the TPOT chart; a plan's own SLO wins when present
};

struct input_file {
  std::string path;
  nlohmann::json doc;
};

// Schemas the report reads; anything else is an error (std::invalid_argument naming the file).
const std::vector<std::string>& known_schemas();

// Reads and parses one result file: io_error when unreadable, std::invalid_argument when it is not
// JSON or its schema is unknown.
input_file load_input(const std::string& path);

// The data blob of the page: one section per kind of result, already in chart units.
// Throws std::invalid_argument when a known schema lacks the fields its charts need.
nlohmann::json build_report_data(const std::vector<input_file>& inputs, const report_options& o);

// The chart library's JS: from `path` if given, else RIDGELINE_CHART_JS, else k_chart_js_path.
// Throws io_error naming the Debian package when it is missing.
std::string load_chart_js(const std::string& path = "");

// The whole page: template + data + chart library, no network needed to view it.
std::string render_html(const nlohmann::json& data, std::string_view chart_js);

// The page template (tools/report/template.html) as embedded at build time.
std::string_view html_template();

// Text safe inside <script>...</script>: every "</" becomes "<\/" (valid in JS strings and JSON).
std::string escape_for_script(std::string_view text);

}  // namespace ridgeline::report
