// `ridgeline load`'s results: the serving-results format (ridgeline.kv/v1, the schema `replay` and
// `kv` write, so report, compare and the planner read it) with config.executor "http", one row per
// load level, and in each row's `measured` section the replay fields plus an `http` object this
// file writes and reads: the level's shape, the ITL rule and chunk-token source, token checks, the
// SLO verdict, the server's /metrics series, and every request's raw samples (every chunk's
// arrival), from which everything else in the row is computed, so merges are exact.
//   load_run run = ...;                    // what load.cpp measured
//   nlohmann::json doc = document_of(run); // kv/v1 through core's writer, plus the http parts
//   load_run back = read_load_run(path);   // core's readers for kv/v1 and the load parts
//                                          // (schemas/load_results.hpp), then the http rest
//   load_run both = merge(a, b);           // samples concatenated on a common time axis
//   std::string t = table_of(run);
// docs/load.md and docs/results-formats.md list the fields.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/load/metrics.hpp"
#include "ridgeline/load/record.hpp"
#include "ridgeline/load/scraper.hpp"
#include "ridgeline/load/slo.hpp"

namespace ridgeline::load {

// One load level: a trace at its own pace, a Poisson rate, or a fixed concurrency.
struct level_data {
  std::string label;  // "trace x1", "rate 4/s", "concurrency 16"
  std::string shape;  // "trace", "rate", "concurrency"
  std::optional<double> rate_per_second;
  std::optional<std::int64_t> concurrency;
  double rate_scale = 1;
  itl_rule rule = itl_rule::first;
  std::string chunk_token_source = "chunks";
  // The level's clock: sample times are seconds after this instant, given on both clocks
  // (steady: the same on every process of a host; unix: across hosts, to NTP's precision).
  double epoch_steady_seconds = 0, epoch_unix_seconds = 0;
  bool saturated = false;
  std::string stopped;                  // why it stopped early ("" when it ran to the end)
  std::vector<request_record> records;  // one per request of the level, sent or not
  server_series server;
  std::vector<std::string> merged_from;  // files a merge combined (empty for a run)
};

// --find-max's answer (the highest rate that met the SLO, if any did, and the lowest that did
// not; the search stopped when (lowest failing - highest met) / met <= precision): core's type,
// which the report reads.
using find_max_outcome = schema::load_find_max;

struct load_run {
  std::string url, endpoint, model;
  std::string workload;  // "generator:SPEC" or the trace path
  std::int64_t workload_requests = 0, workload_prompt_tokens = 0, workload_output_tokens = 0;
  std::int32_t mooncake_block_tokens = 0;
  // The window's options and the --rate levels' Poisson seed (config.window; absent in older
  // files): what `plan accuracy --serving` rebuilds the requests and arrivals from.
  std::optional<schema::serving_window> window;
  bool stream = true;
  std::string prompts;  // how prompts were built: "token ids", "text (tokenizer FILE)", "words"
  std::optional<slo_spec> slo;
  std::int32_t workers = 1;
  std::vector<level_data> levels;
  std::optional<find_max_outcome> find_max;
  nlohmann::json environment;  // telemetry's environment block
};

// What a level's row reports, computed from its records (the same for a run and a merge).
struct level_summary {
  level_metrics metrics;
  std::optional<slo_result> slo;
  double mean_in_flight = 0;
  std::int64_t peak_in_flight = 0;
};
level_summary summarize(const level_data& l, const std::optional<slo_spec>& slo);

nlohmann::json document_of(const load_run& run);
load_run parse_load_run(const nlohmann::json& doc, std::string_view source);
load_run read_load_run(const std::filesystem::path& path);
// Levels matched by label (the ones only one side has are kept as they are); within a level the
// records are concatenated, the second run's times moved onto the first's clock through the
// unix-clock epochs (exact for latencies, which are differences within one request; throughput's
// duration is as good as the two hosts' clock agreement). Throws std::invalid_argument when the
// runs differ in endpoint, ITL rule or SLO.
load_run merge(const load_run& a, const load_run& b, const std::string& a_name,
               const std::string& b_name);
std::string table_of(const load_run& run);

}  // namespace ridgeline::load
