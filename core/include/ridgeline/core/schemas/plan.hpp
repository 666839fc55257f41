// ridgeline.plan/v1: `ridgeline plan`'s answer per GPU (memory, max batch under the TPOT SLO, max
// request rate with the goodput target, GPUs needed, cost). A row is filled in stages and ends at
// the first stage that fails, with `error` saying why; so every field after the memory stage is
// optional, and present exactly when its stage ran. docs/results-formats.md lists every field.
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
};

struct plan_config {
  std::string model, weights, kv_dtype, workload;
  std::int64_t requests = 0;
  double mean_prompt_tokens = 0, mean_output_tokens = 0, workload_rate_per_second = 0;
  plan_slo slo;
  double qps = 0, headroom = 0, goodput_target = 0;
  std::int64_t max_running = 0, max_batched_tokens = 0, block_tokens = 0;
  std::string efficiencies;  // fit source of the last GPU that passed the memory check
  std::map<std::string, std::string> definitions;
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
  std::optional<std::int64_t> max_batch_fit;  // with fit_*: only when a batch of 1 fits
  std::optional<double> fit_step_seconds, fit_tokens_per_second;
  // SLO stage (some batch meets the TPOT SLO).
  std::optional<std::int64_t> max_batch_slo, simulations;
  std::optional<double> slo_step_seconds, slo_tokens_per_second;
  // Rate stage (the rate search found a feasible rate).
  std::optional<double> max_rate_per_gpu, goodput_fraction, goodput_requests_per_second,
      ttft_p99_seconds, tpot_p99_seconds, output_tokens_per_second;
  std::optional<std::int64_t> gpus_needed;  // exactly when config.qps > 0
  std::optional<double> price_per_hour, cost_per_million_output_tokens;  // with a --price
  std::optional<double> fleet_cost_per_hour;  // with a price and --qps
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
