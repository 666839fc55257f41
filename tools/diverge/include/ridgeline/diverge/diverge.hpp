// `ridgeline diverge`: do two configurations (GPUs, batch sizes, graph/eager, split sizes, weight
// formats) produce the same tokens? `run` decodes a prompt set greedily and records, per prompt and step, the chosen
// token, the top-8 ids and log-probabilities, the top-1/top-2 margin and a hash of the fp32 logits
// row (a ridgeline.diverge/v1 fingerprint); `compare` reads two fingerprints and reports the first
// divergence per prompt, the margin there, per-step KL on the top-k and a verdict
// (ridgeline.diverge_compare/v1). docs/diverge.md has the method. Sources: prompts.cpp (prompt
// sets, hashes), run_loop.cpp (run), fingerprint.cpp (validation), compare.cpp (compare, table).
//   diverge_options o; o.model = "tiny"; o.executor = "cpu"; o.prompt_set = "random:4:16:7";
//   nlohmann::json a = run_diverge(o);            // CUDA executor: src/diverge_run.cpp
//   nlohmann::json r = compare_fingerprints(a, b, "a.json", "b.json");
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ridgeline/core/schemas/diverge.hpp"
#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline::bench {

inline constexpr const char* k_diverge_schema = "ridgeline.diverge/v1";
inline constexpr const char* k_diverge_compare_schema = "ridgeline.diverge_compare/v1";
inline constexpr int k_diverge_top_k = 8;
inline constexpr const char* k_random_weights_caveat =
    "random weights: logits are flatter than a trained model's (small top-1/top-2 margins), so "
    "tokens flip at smaller numerical differences than they would with real weights";

struct diverge_options {
  std::string model = "llama-2-7b";  // preset (ignored when checkpoint is set)
  std::string checkpoint;            // Hugging Face folder (config.json + safetensors) or GGUF
  // The block linears' format (`--weights`: bf16, fp8, int8, int4); unset: bf16, or a quantized
  // checkpoint's own (the engine's load rules, quant_weights.hpp). The same weights (seed or
  // checkpoint) in two formats compare: the difference is the quantization's. The cpu executor
  // runs format F as the bf16 reference of an engine in F (dequantized_weights).
  std::optional<planner::weight_format> weights;
  std::string prompts_file;          // one prompt per line (token ids) or a JSON array of arrays
  std::string prompt_set;            // "random:N:LEN:SEED" (when no prompts_file)
  int steps = 32;                    // tokens generated per prompt (step 0 comes from the prefill)
  int batch = 1;                     // the prompt under test plus batch - 1 co-runners
  std::uint64_t co_runner_seed = 1;  // --co-runners random:SEED
  int split_tokens = 0;              // attention split size (0: the launcher's choice)
  bool cuda_graphs = true;
  bool deterministic = false;  // the engine's batch-invariant mode (engine_options::batch_invariant)
  std::string executor = "cuda";        // "cuda" or "cpu" (tiny models; tests)
  std::uint64_t weight_seed = 1;        // random weights
  std::optional<nlohmann::json> force;  // fingerprint whose tokens are fed (teacher forcing)
  std::string force_source;             // its file name, for the config
  int max_step_tokens = 8192;           // prefill budget per step (longer prefills are chunked)
  int device = 0;
  std::function<void(const std::string&)> progress;
};

// A set of prompts and its identity: id ("random:4:16:7" or "file:NAME") and a hash of the tokens.
struct prompt_set {
  std::string id;
  std::vector<std::vector<token_id>> prompts;
  std::string hash;  // fnv1a64 over lengths and token ids, 16 hex digits
};
// "random:N:LEN:SEED": N prompts of LEN tokens in [0, vocab), from a seeded generator.
prompt_set random_prompt_set(const std::string& spec, int vocab);
// A file of token ids: one prompt per non-empty line (whitespace- or comma-separated), or a JSON
// array of arrays. Ids outside [0, vocab) are rejected naming the line.
prompt_set read_prompt_file(const std::string& path, int vocab);

// 64-bit FNV-1a over the bit patterns of a fp32 logits row, as 16 hex digits.
std::string hash_logits(std::span<const float> row);

// Checks options that need no device; throws std::invalid_argument.
void validate_diverge_options(const diverge_options& o);

// Runs the fingerprint on the executor of o.executor; returns a ridgeline.diverge/v1 document.
// The CUDA executor throws no_device_error without a GPU.
nlohmann::json run_diverge(const diverge_options& o);

// Checks a fingerprint document and returns it typed: its shape through core's reader
// (schema::parse_fingerprint; schema_error naming `source` and the field), then one row per
// (prompt, step) and at least 2 top ids a row; throws std::invalid_argument naming `source`.
schema::fingerprint_document validate_fingerprint(const nlohmann::json& doc,
                                                  const std::string& source);
// Reads a fingerprint file and validates it: io_error when unreadable; std::invalid_argument
// naming the file when it is not JSON ("truncated or malformed JSON"), cut off or not a
// fingerprint.
nlohmann::json load_fingerprint(const std::string& path);
// Two lines on a validated fingerprint: model, weights, prompt set, prompts x steps, batch and
// executor, then the mean and smallest top-1/top-2 margin and the steps below 0.01 (plus the
// random-weights caveat when the config has one).
std::string fingerprint_summary(const nlohmann::json& doc);

// KL(P || Q) estimated on top-k lists: over the ids present in both lists, each side's
// probabilities exp(logprob) renormalized to sum to 1 on that shared set. nullopt when no id is
// shared. (An approximation: the tail beyond the top-k and ids in only one list are ignored.)
std::optional<double> topk_kl(std::span<const std::int32_t> ids_p, std::span<const float> lp_p,
                              std::span<const std::int32_t> ids_q, std::span<const float> lp_q);

// Compares fingerprint b against a (the reference); throws std::invalid_argument when they cannot
// be compared (other model, weights or prompt set). The weight formats may differ (bf16 against
// int4: the same seeded or checkpoint weights, quantized on one side); the report's
// config.weight_formats names both. Returns ridgeline.diverge_compare/v1.
nlohmann::json compare_fingerprints(const nlohmann::json& a, const nlohmann::json& b,
                                    const std::string& name_a, const std::string& name_b);
// Human-readable table of a compare document (with the random-weights caveat when it applies).
std::string compare_table(const nlohmann::json& report);

namespace detail {

struct executor_setup {
  decoder_config decoder;
  std::optional<std::vector<bf16_bits>> weights;  // checkpoint; else seeded random (weight_seed)
  std::uint64_t weight_seed = 1;
  // The engine's block-linear format. Not bf16: the engine loads `checkpoint` itself (a
  // quantized one packed as stored, a bf16 one quantized at load) or quantizes the seeded
  // weights, instead of being given `weights`.
  planner::weight_format weight_format = planner::weight_format::bf16;
  std::string checkpoint;
  int num_kv_blocks = 0, max_seqs = 1, max_tokens = 1, top_k = k_diverge_top_k;
  int split_tokens = 0;
  bool cuda_graphs = true;
  bool batch_invariant = false;
  int device = 0;
};

// The CUDA engine as the run's executor, with top-k log-probabilities and fp32 logits returned:
// diverge_run.cpp (CUDA builds) or diverge_nocuda.cpp (throws no_device_error).
std::unique_ptr<executor> make_cuda_diverge_executor(const executor_setup& s);

}  // namespace detail

}  // namespace ridgeline::bench
