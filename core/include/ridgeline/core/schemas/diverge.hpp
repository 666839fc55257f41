// ridgeline.diverge/v1 (a fingerprint: the top-k log-probs of every (prompt, step) of one engine
// run) and ridgeline.diverge_compare/v1 (two fingerprints compared: verdicts, first divergence,
// KL, margins). tools/diverge validates a fingerprint's consistency (row count, duplicates) before
// comparing; these readers check the shape. The config of a fingerprint is kept as written (it
// is copied verbatim into a comparison); its typed fields are the ones readers use.
// docs/results-formats.md lists every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_diverge_schema = "ridgeline.diverge/v1";
inline constexpr const char* k_diverge_compare_schema = "ridgeline.diverge_compare/v1";

struct fingerprint_config {
  std::string model, weights, executor, prompt_set_id, prompt_set_hash;
  // The block linears' format the run used ("bf16", "fp8", "int8", "int4"); absent in
  // fingerprints before --weights, which ran bf16 (weight_format_or_bf16). `weights` names where
  // the values came from (seed or checkpoint hash), the same for both sides of a comparison;
  // the format may differ between them.
  std::optional<std::string> weight_format;
  std::int64_t prompts = 0, steps = 0, batch = 0;
  bool teacher_forced = false;  // config.teacher_forced is an object (null when not)
  std::optional<std::string> random_weights_caveat;  // without a checkpoint
  nlohmann::json raw;                                // the whole config as written
};

struct fingerprint_row {
  std::int64_t prompt = 0, step = 0, token = 0;
  std::vector<std::int64_t> top_ids;
  std::vector<double> top_logprobs;
  double margin = 0;
  std::string logits_hash;
  std::optional<std::int64_t> fed;  // teacher-forced runs: the token fed at this step
};

struct fingerprint_document {
  environment env;
  fingerprint_config config;
  std::vector<fingerprint_row> rows;
};

struct diverge_summary {
  std::string verdict;
  std::int64_t prompts = 0, prompts_diverged = 0, steps = 0, steps_compared = 0,
               token_mismatches = 0, kl_undefined_steps = 0;
  std::optional<std::int64_t> earliest_divergence_step;  // null when nothing diverged
  double same_top1_share = 0, logits_equal_share = 0, kl_mean = 0, kl_p99 = 0, kl_max = 0,
         max_abs_delta_logprob = 0;
};

struct diverge_prompt_row {
  std::int64_t prompt = 0, steps_compared = 0, token_mismatches = 0;
  std::string verdict;
  std::optional<std::int64_t> divergence_step;  // null: no divergence
  std::optional<double> margin_at_divergence, margin_b_at_divergence, kl_mean, kl_max;  // nullable
  double max_abs_delta_logprob = 0, same_top1_share = 0, logits_equal_share = 0;
};

struct divergence_point {
  std::int64_t prompt = 0, step = 0;
  double margin_a = 0, margin_b = 0;
};

struct margin_bin {
  double lo = 0;
  std::optional<double> hi;  // null on the last bin
  std::int64_t steps = 0, divergences = 0;
};

struct diverge_compare_document {
  environment env;
  nlohmann::json config;  // a and b: file, gpu and each fingerprint's config verbatim
  diverge_summary summary;
  std::vector<diverge_prompt_row> rows;
  std::vector<divergence_point> divergences;
  std::vector<margin_bin> margin_histogram;
  nlohmann::json steps;  // per compared (prompt, step), as written
};

fingerprint_document parse_fingerprint(const nlohmann::json& doc, std::string_view source);
fingerprint_document read_fingerprint(const std::filesystem::path& path);
diverge_compare_document parse_diverge_compare(const nlohmann::json& doc, std::string_view source);
diverge_compare_document read_diverge_compare(const std::filesystem::path& path);

}  // namespace ridgeline::schema
