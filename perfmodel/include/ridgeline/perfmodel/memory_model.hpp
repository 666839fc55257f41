// Memory model of one GPU serving one model, the only memory planner of the project: the CUDA
// engine sizes its KV pool with it (from free memory, with the launcher's exact attention
// workspace) and the planner answers "how many sequences fit" with it (from the GPU's memory).
// Weights (weights.hpp) + the step scratch the engine allocates (activations for max_tokens
// tokens, fp32 logits, the attention split workspace, the RoPE table, 64 MiB of slack) come off
// memory_fraction of the memory; what is left holds KV blocks. Under tensor parallelism every
// figure is one GPU's, counted on its shard of the model (tensor_parallel_shard, model.hpp).
//   memory_plan p = plan_memory(model_preset_by_name("llama-2-7b"), 80e9, memory_options{});
//   p.max_sequences(4096);   // sequences of 4096 tokens that fit at once
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline {

// Share of memory the engine may use, and the planner assumes it uses.
inline constexpr double k_default_memory_fraction = 0.90;
// The most KV blocks a pool may have (block ids are 32-bit).
inline constexpr std::int64_t k_max_kv_blocks = std::int64_t{1} << 30;

// KV blocks that hold `tokens` tokens: ceil(tokens / block_tokens).
std::int64_t blocks_for(std::int64_t tokens, std::int32_t block_tokens);

}  // namespace ridgeline

namespace ridgeline::planner {

// Scratch the engine keeps besides the buffers it sizes exactly (inputs, pinned staging, carve
// alignment, allocator rounding).
inline constexpr std::int64_t k_scratch_slack_bytes = 64LL << 20;

// Bytes of one step's buffers for max_tokens tokens and max_seqs logit rows: the layout of
// step_buffers.hpp that the engine's executors allocate (16-bit activations, fp32 logits).
std::int64_t step_activation_bytes(const model_preset& m, std::int64_t max_tokens,
                                   std::int64_t max_seqs);
// Bytes of the engine's RoPE cos/sin table: every position up to max_context, fp32.
std::int64_t rope_table_bytes(const model_preset& m);
// An estimate of the attention split workspace when the launcher cannot be asked (no GPU): fp32
// partials of 8 splits per sequence and head, (head_dim + 2) floats each.
std::int64_t estimate_attention_workspace_bytes(const model_preset& m, std::int64_t max_seqs);
// The whole step scratch: activations + attention workspace + RoPE table + slack.
std::int64_t step_scratch_bytes(const model_preset& m, std::int64_t max_tokens,
                                std::int64_t max_seqs, std::int64_t attention_workspace_bytes);

struct memory_options {
  weight_format weights = weight_format::bf16;
  dtype kv_dtype = dtype::bf16;
  std::int32_t block_tokens = 16;
  std::int64_t max_batched_tokens = 8192;  // activations are sized for this many tokens per step
  std::int32_t max_running = 256;          // logits and attention workspace per sequence
  double memory_fraction = k_default_memory_fraction;
  // Taken off the memory before the fraction: the CUDA context and allocator slack when planning
  // from a GPU's total memory; 0 when starting from free memory (the engine).
  std::int64_t context_reserve_bytes = 512LL << 20;
  // The launcher's exact split workspace (the engine asks it); unset: the estimate above.
  std::optional<std::int64_t> attention_workspace_bytes;
  std::int64_t num_kv_blocks = 0;  // 0: as many as fit; else exactly this many, if they fit
  bool binary_units = false;       // why_not in GiB (device memory) rather than GB (datasheets)
  // GPUs of one replica, the model split over them by heads (model.hpp); every figure of the plan
  // is then per GPU. The engine runs 1.
  std::int32_t tensor_parallel = 1;
};

struct memory_plan {
  double memory_bytes = 0;  // the memory planned from (total, or free for the engine)
  double usable_bytes = 0;  // memory_fraction x (memory - context reserve), whole bytes
  double weight_bytes = 0;
  double workspace_bytes = 0;  // step scratch (step_scratch_bytes)
  double kv_budget_bytes = 0;  // usable - weights - workspace (0 when negative)
  std::int64_t kv_bytes_per_token = 0;
  std::int64_t kv_bytes_per_block = 0;
  std::int64_t kv_blocks = 0;  // at most k_max_kv_blocks
  std::int32_t block_tokens = 16;
  bool fits = false;
  std::string why_not;  // one line when !fits: "weights alone need 140.0 GB; ..."
  // Sequences of `context` tokens whose KV fits at once (0 when !fits).
  std::int64_t max_sequences(std::int64_t context) const;
};

// Fits when the weights, the step scratch and at least one KV block (num_kv_blocks when given)
// fit in the usable memory. Never throws for a model that does not fit: fits = false with the
// reason (`gpu_label` names the GPU in it, e.g. "a T4"). Throws std::invalid_argument for options
// that are not positive, a fraction outside (0, 1] or a tensor-parallel degree that cannot split
// the model.
memory_plan plan_memory(const model_preset& m, double gpu_memory_bytes, const memory_options& o,
                        const std::string& gpu_label = "the GPU");

}  // namespace ridgeline::planner
