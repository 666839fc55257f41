// ridgeline.plan/v1: `ridgeline plan`'s answer per GPU (memory, max batch under the TPOT SLO, max
// request rate that meets the SLO, GPUs needed, cost), for the tensor-parallel degree it chose,
// with every degree it weighed in `tp_options`. A row is filled in stages and ends at the first
// stage that fails, with `error` saying why; so every field after the memory stage is optional,
// and present exactly when its stage ran. Fields added with the SLO criterion and tensor
// parallelism are absent in plans written before them (whose rate search was by goodput).
// docs/results-formats.md lists every field.
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

inline constexpr const char* k_plan_schema = "ridgeline.plan/v1";

struct plan_slo {
  double ttft_seconds = 0, tpot_seconds = 0;
  // The SLO's terms as text ("p99 TTFT <= 2000 ms, p99 TPOT <= 50.0 ms"); absent in plans written
  // before the SLO had terms (their rate search was by goodput_target alone).
  std::optional<std::string> terms;
  std::optional<double> ttft_percentile, tpot_percentile;  // each with its percentile term
};

struct plan_config {
  std::string model, weights, kv_dtype, workload;
  std::int64_t requests = 0;
  double mean_prompt_tokens = 0, mean_output_tokens = 0, workload_rate_per_second = 0;
  plan_slo slo;
  double qps = 0, headroom = 0;
  std::optional<double> goodput_target;  // with a goodput term (always in older plans)
  std::int64_t max_running = 0, max_batched_tokens = 0, block_tokens = 0;
  std::string efficiencies;  // fit source of the last GPU that passed the memory check
  std::map<std::string, std::string> definitions;
};

// One op group of a step: predicted seconds, its floor (the least time physics allows) and the
// bound that sets the floor (memory, compute, latency, interconnect, fixed).
struct plan_op_group {
  std::string group, bound;
  double seconds = 0, floor_seconds = 0;
};

// One tensor-parallel degree weighed for a GPU: per-GPU memory, the decode step at the TPOT batch
// (batch 1 when none meets it) with its op groups, and the replica's rate and cost when it meets
// the SLO; `error` where it stopped.
struct plan_tp_option {
  std::int64_t tensor_parallel = 1;
  double weight_bytes = 0, kv_budget_bytes = 0;  // per GPU
  std::int64_t kv_blocks = 0;
  bool chosen = false;
  std::optional<std::string> error;
  std::optional<std::string> all_reduce;  // the all-reduce cost's basis (TP > 1, model fits)
  std::optional<std::int64_t> max_batch_fit, max_batch_slo, step_batch;
  std::optional<double> step_seconds;
  std::vector<plan_op_group> step_breakdown;  // with step_seconds
  std::optional<double> max_rate_per_replica, max_rate_per_gpu, ttft_p99_seconds, tpot_p99_seconds;
  std::optional<std::int64_t> gpus_needed;
  std::optional<double> cost_per_million_output_tokens;
};

struct plan_row {
  // Memory stage (always).
  std::string gpu, gpu_name, profile;
  std::int64_t memory_bytes = 0;
  double context = 0, weight_bytes = 0, workspace_bytes = 0, kv_budget_bytes = 0;
  std::int64_t kv_bytes_per_token = 0, kv_blocks = 0;
  bool derated = false;
  std::optional<std::string> error;  // the stage that failed, and why; the row ends there
  // Ceilings stage (the model fits in memory).
  std::optional<std::string> ceilings, ceilings_basis, compute_dtype, step_time_model;
  std::optional<double> bytes_per_second, flops_per_second;
  std::optional<std::int64_t> tensor_parallel;  // the chosen degree (absent in older plans)
  std::optional<std::string> all_reduce;        // its all-reduce cost's basis, when TP > 1
  std::optional<std::int64_t> max_batch_fit;  // with fit_*: only when a batch of 1 fits
  std::optional<double> fit_step_seconds, fit_tokens_per_second;
  // SLO stage (some batch meets the TPOT SLO).
  std::optional<std::int64_t> max_batch_slo, simulations;
  std::optional<double> slo_step_seconds, slo_tokens_per_second;
  std::optional<std::vector<plan_op_group>> slo_step_breakdown;  // absent in older plans
  // Rate stage (the rate search found a feasible rate).
  std::optional<double> max_rate_per_gpu, goodput_fraction, goodput_requests_per_second,
      ttft_p99_seconds, tpot_p99_seconds, output_tokens_per_second;
  std::optional<std::int64_t> gpus_needed;  // exactly when config.qps > 0
  std::optional<double> price_per_hour, cost_per_million_output_tokens;  // with a --price
  std::optional<double> fleet_cost_per_hour;  // with a price and --qps
  // At the SLO's percentile terms, over every request (each with its term).
  std::optional<double> ttft_at_slo_seconds, tpot_at_slo_seconds;
  std::optional<std::int64_t> rejected_requests;  // absent in older plans
  std::optional<bool> rate_capped;  // the steady-state bound, not the SLO, stopped the search
  // Every degree weighed (absent in older plans, which planned one GPU per replica).
  std::optional<std::vector<plan_tp_option>> tp_options;
};

struct plan_document {
  environment env;
  plan_config config;
  std::vector<plan_row> rows;
};

plan_document parse_plan(const nlohmann::json& doc, std::string_view source);
plan_document read_plan(const std::filesystem::path& path);
nlohmann::json to_json(const plan_config& c);
nlohmann::json to_json(const plan_row& r);
nlohmann::json to_json(const plan_document& doc);

}  // namespace ridgeline::schema
