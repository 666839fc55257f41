// ridgeline.kv/v1, the serving-results format: per-capacity rows of a serving run (hit rates,
// recompute, latency distributions). `ridgeline kv` writes it from the simulated executor;
// `ridgeline replay` from a real run (config.executor "cuda" or "cpu"), whose one row adds a
// `measured` section: per-step time series, per-request records, submission lag, and what kv's
// simulation of the same window and capacity says. docs/results-formats.md lists every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_serving_results_schema = "ridgeline.kv/v1";

// One latency distribution over requests (or inter-token gaps). The quantiles are written only
// when count > 0.
struct latency_quantiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
  std::vector<std::pair<double, double>> cdf;  // [quantile, seconds], quantiles ascending
};
struct latency_distribution {
  std::int64_t count = 0;
  std::optional<latency_quantiles> quantiles;  // present exactly when count > 0
};
// Count, mean, p50/p90/p99, max and the CDF points (every 5%, then 0.99 and 0.999) of the values,
// through core's one quantile (statistics.hpp); kv, replay and load write theirs with it.
latency_distribution distribution_of(std::vector<double> values);

// The window of the workload a real run served (replay, load), as the run's options gave it, so
// `plan accuracy --serving` can rebuild the same requests and arrivals: first turns arriving in
// [start, start + duration) of the trace (duration 0: to the end), at most `requests` of them (0:
// all), arrivals divided by `rate_scale`. `seed`: load's Poisson arrivals of its --rate levels
// (null for replay). Absent in files written before it existed.
struct serving_window {
  double start_seconds = 0, duration_seconds = 0;
  std::int64_t requests = 0;
  double rate_scale = 1;
  std::optional<std::int64_t> seed;
};

struct serving_config {
  std::string workload;  // "generator:<spec>" or the trace path
  std::int64_t requests = 0, prompt_tokens = 0, output_tokens = 0;
  std::string model, gpu, gpu_source, step_time_model;
  std::int64_t block_tokens = 0;
  std::string kv_dtype;
  std::int64_t bytes_per_block = 0, unlimited_blocks = 0, host_memory_bytes = 0;
  double pcie_bytes_per_second = 0;
  std::int64_t max_running = 0, max_batched_tokens = 0;
  bool chunked_prefill = false;
  std::int64_t max_model_len = 0, mooncake_block_tokens = 0;
  std::map<std::string, std::string> definitions;
  std::optional<std::string> executor;  // absent: "simulated" (kv); replay: "cuda" or "cpu"
  // replay: the weight format the executor ran ("bf16", "fp8", "int8", "int4"; --weights, or a
  // quantized checkpoint's own); absent in kv and load files and in replays before --weights,
  // which ran bf16 (weight_format_or_bf16).
  std::optional<std::string> weight_format;
  std::optional<serving_window> window;  // replay and load; absent in kv and older files
};

// A real run's measurements (replay): columns of equal length per step and per request. The
// host-tier step columns (copy_seconds, blocks_to_host, blocks_to_gpu) are empty when a file
// predates them; when present, all three are.
struct serving_steps {
  std::vector<double> start_seconds, gpu_seconds, host_seconds, gap_seconds, copy_seconds, flops,
      bytes;
  std::vector<std::int64_t> sequences, prefill_tokens, decode_tokens, running, waiting, kv_used,
      kv_cached, kv_free, hit_tokens, preemptions, blocks_to_host, blocks_to_gpu, graph;
};
struct serving_requests {
  std::vector<std::int64_t> id, prompt_tokens, output_tokens, cached_tokens, preemptions;
  std::vector<std::string> outcome;
  std::vector<double> arrival_seconds, ttft_seconds, tpot_seconds, e2e_seconds,
      submit_lag_seconds;  // tpot -1 where undefined; ttft and e2e -1 unless finished
};
struct serving_measured {
  std::string executor, device;  // "cuda" / "cpu"; the GPU's (or host's) name
  double wall_seconds = 0;
  std::int64_t cancelled = 0;
  latency_distribution submit_lag_seconds, step_gpu_seconds, step_host_seconds, step_gap_seconds;
  double mean_running = 0;  // time-weighted over the run's steps
  // kv's simulation (simulated executor) of the same requests, capacity and scheduler settings.
  double simulated_token_hit_rate = 0, simulated_block_hit_rate = 0;
  serving_steps steps;
  serving_requests requests;
};

struct serving_row {
  std::string capacity;  // the label asked for (unlimited, 50%, 8GiB, ...)
  std::int64_t capacity_blocks = 0, capacity_tokens = 0, capacity_bytes = 0;
  std::int64_t requests = 0, finished = 0, rejected = 0;
  std::map<std::string, std::int64_t> rejected_by_reason;
  std::int64_t lookup_tokens = 0, hit_tokens = 0, hit_tokens_tier1 = 0, hit_tokens_tier2 = 0;
  double token_hit_rate = 0;
  std::int64_t lookup_blocks = 0, hit_blocks = 0;
  double block_hit_rate = 0;
  std::int64_t evictions_tier1 = 0, evictions_tier2 = 0, tier2_blocks_loaded = 0;
  std::int64_t preemptions = 0, recomputed_tokens = 0, preempted_tokens_recomputed = 0;
  double flops_saved = 0, seconds_saved = 0, recompute_flops = 0, recompute_seconds = 0;
  std::int64_t prefill_tokens_computed = 0, decode_tokens = 0, steps = 0;
  double simulated_seconds = 0, busy_seconds = 0, output_tokens_per_second = 0;
  std::int64_t peak_used_blocks = 0, peak_running = 0;
  latency_distribution ttft_seconds, tpot_seconds, itl_seconds, e2e_seconds;
  std::optional<serving_measured> measured;  // replay only
};

struct serving_results {
  environment env;
  serving_config config;
  std::vector<serving_row> rows;
};

serving_results parse_serving_results(const nlohmann::json& doc, std::string_view source);
serving_results read_serving_results(const std::filesystem::path& path);
nlohmann::json to_json(const latency_distribution& d);
nlohmann::json to_json(const serving_config& c);
nlohmann::json to_json(const serving_measured& m);
nlohmann::json to_json(const serving_row& r);
nlohmann::json to_json(const serving_results& doc);

}  // namespace ridgeline::schema
