// Memory model of one GPU serving one model: weight bytes per weight format (bf16/fp16/fp32, fp8,
// int8 and int4 weight-only), KV bytes per token (layers x KV heads x head dim x 2 x dtype bytes),
// activation workspace for the step's token budget, and a reserve; what is left holds KV blocks,
// which gives the largest number of concurrent sequences at a context length.
//   memory_plan p = plan_memory(model_preset_by_name("llama-2-7b"), 80e9, memory_options{});
//   p.max_sequences(4096);   // sequences of 4096 tokens that fit at once
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/core/dtype.hpp"

namespace ridgeline::planner {

// How the block linears are stored. int8 and int4 are weight-only (dequantized to 16-bit for the
// matmul); fp8 runs fp8 tensor cores. Embedding and LM head stay 16-bit for the quantized formats.
enum class weight_format { fp32, fp16, bf16, fp8, int8, int4 };
std::string_view name(weight_format f);
// "fp32", "fp16", "bf16", "fp8", "int8", "int4"; throws std::invalid_argument listing them.
weight_format parse_weight_format(std::string_view s);
// Bytes per block-linear parameter, scales included (int4: groups of 128 with a 16-bit scale and
// zero point, 0.5 + 4/128 bytes).
double bytes_per_parameter(weight_format f);
// Bytes per parameter of the embedding, LM head and norms.
double bytes_per_other_parameter(weight_format f);

struct memory_options {
  weight_format weights = weight_format::bf16;
  dtype kv_dtype = dtype::bf16;
  std::int32_t block_tokens = 16;
  std::int64_t max_batched_tokens = 8192;  // activation workspace is sized for this many tokens
  std::int32_t max_running = 256;          // logits and attention workspace per sequence
  double memory_fraction = 0.90;           // share of memory the engine may use (its default)
  std::int64_t context_reserve_bytes = 512LL << 20;  // CUDA context, allocator slack
};

// Bytes the weights take in memory (every parameter: block linears, embedding, LM head, norms).
double weight_memory_bytes(const model_preset& m, weight_format f);
// Bytes one step streams for weights: block linears + LM head (the embedding is gathered by row).
double weight_stream_bytes(const model_preset& m, weight_format f);

struct memory_plan {
  double memory_bytes = 0;  // the GPU's memory
  double usable_bytes = 0;  // memory_fraction x (memory - context reserve)
  double weight_bytes = 0;
  double workspace_bytes = 0;  // activations for max_batched_tokens, logits, attention splits
  double kv_budget_bytes = 0;  // usable - weights - workspace (0 when negative)
  std::int64_t kv_bytes_per_token = 0;
  std::int64_t kv_bytes_per_block = 0;
  std::int64_t kv_blocks = 0;
  std::int32_t block_tokens = 16;
  bool fits = false;
  std::string why_not;  // one line when !fits: "weights alone need 140.0 GB; ..."
  // Sequences of `context` tokens whose KV fits at once (0 when !fits).
  std::int64_t max_sequences(std::int64_t context) const;
};

// Never throws for a model that does not fit: fits = false with the reason (`gpu_label` names the
// GPU in it, e.g. "a T4").
memory_plan plan_memory(const model_preset& m, double gpu_memory_bytes, const memory_options& o,
                        const std::string& gpu_label = "the GPU");

}  // namespace ridgeline::planner
