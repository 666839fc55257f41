// Result files as `ridgeline compare` and `ridgeline history` see them: a set of named benchmarks,
// each with its per-repetition times (or only a summary), plus the environment it ran in.
// Reads Google Benchmark JSON (per-repetition "iteration" entries; aggregates are ignored and
// recomputed) and ridgeline result documents ({"schema": "ridgeline.<kind>/v1", "environment",
// "config", "rows"}), e.g. ridgeline.gpu_profile/v1 rows with a "measurement" summary, and
// serving results (ridgeline.kv/v1 of `replay` and `load`): each row with a `measured` section
// gives serving/<row label>/ttft, /tpot and /e2e, one sample per request, and
// serving/<row label>/seconds_per_output_token (1 / output tokens per second, one value a run).
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/core/statistics.hpp"

namespace ridgeline::bench {

// Which Google Benchmark time to read: wall time (also the manual time of GPU benchmarks), the
// benchmark thread's CPU time, or automatic (the default): real_time for benchmarks that asked for
// it (names ending in /manual_time or /real_time, e.g. GPU benchmarks timed with CUDA events),
// cpu_time for the others, whose wall time on a shared machine mostly measures the other tenants
// (docs/compare.md has the study behind this choice).
enum class time_metric { automatic, real_time, cpu_time };
time_metric parse_time_metric(const std::string& text);  // "auto" | "real_time" | "cpu_time"
std::string to_string(time_metric m);

struct benchmark_series {
  std::vector<double> seconds;  // one per repetition; empty when the file holds only a summary
  summary stats;                // of `seconds`, or as read from the file
  double iqr_seconds = 0;       // interquartile range (estimated as 2 * MAD for summary-only data)
  bool summary_only = false;
  // The samples are one value per request (a serving latency), not repetitions of one
  // measurement: compare reports their percentiles (p50, p90, p99) beside the median's verdict.
  bool per_request = false;
  std::string error;  // the benchmark reported an error (Google Benchmark "error_message")
};

// A serving-results row as a group of benchmarks (serving/<key>/<metric>): compare pairs rows of
// two files by these (--pair-rows), history keeps the names.
struct serving_row_ref {
  std::string key;                   // the row's `capacity` label; "#2", "#3"... when repeated
  std::vector<std::string> metrics;  // ttft, tpot, e2e, seconds_per_output_token
};
std::string serving_benchmark_name(const std::string& row_key, const std::string& metric);

struct result_set {
  std::string source;  // file path or label, for messages
  std::string format;  // "google-benchmark" or the ridgeline schema, e.g. ridgeline.gpu_profile/v1
  // Environment block in ridgeline's shape: {"gpu": {...} | null, "ridgeline": {...}, "host": ...}.
  nlohmann::json environment = nlohmann::json::object();
  std::string git_sha;   // from the environment; empty when unknown
  std::string time_utc;  // when the result was taken; empty when unknown
  std::map<std::string, benchmark_series> benchmarks;
  std::vector<serving_row_ref> serving_rows;  // serving results: the measured rows in file order
  // A load run (config.executor "http"): the environment is the client's host, which records
  // nothing of the server's GPU, so compare reports GPU differences instead of refusing.
  bool client_environment = false;
};

// Parses a result document; throws std::invalid_argument naming the source and what is wrong
// (unknown format, a field of the wrong type, no benchmarks at all).
result_set parse_results(const nlohmann::json& doc, const std::string& source, time_metric metric);
// Reads and parses a file: io_error when it cannot be read; std::invalid_argument when it is not
// JSON (a truncated file says so, with the byte offset) or not a result this reader knows.
result_set load_results(const std::filesystem::path& path, time_metric metric);

// One result set from several files of one run (e.g. two benchmark binaries): the union of their
// benchmarks, the first file's environment. Throws std::invalid_argument when a benchmark appears
// twice. (Environments are checked by the caller with environment_differences.)
result_set merge_results(std::vector<result_set> parts);

// Name of a ridgeline result row: its "name" when it has one, else its "kind" followed by each
// identifying field (strings, integers, booleans; not outputs such as algorithm_index) as
// /key=value, in key order. Example: gemm/dtype=bf16/k=8192/m=8192/n=8192.
std::string row_name(const nlohmann::json& row);

// Series from per-repetition seconds (summary and IQR computed here).
benchmark_series make_series(std::vector<double> seconds);

}  // namespace ridgeline::bench
