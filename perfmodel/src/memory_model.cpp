// Memory model (see memory_model.hpp).
#include "ridgeline/perfmodel/memory_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "ridgeline/core/text.hpp"
#include "ridgeline/perfmodel/step_buffers.hpp"

namespace ridgeline {

std::int64_t blocks_for(std::int64_t tokens, std::int32_t block_tokens) {
  if (block_tokens <= 0) throw std::invalid_argument("block size must be positive");
  return (tokens + block_tokens - 1) / block_tokens;
}

}  // namespace ridgeline

namespace ridgeline::planner {

std::int64_t step_activation_bytes(const model_preset& m, std::int64_t max_tokens,
                                   std::int64_t max_seqs) {
  return step_buffer_elements(m, max_tokens, max_seqs).bytes();
}

std::int64_t rope_table_bytes(const model_preset& m) {
  return std::int64_t{m.max_context} * m.head_dim * 4;
}

std::int64_t estimate_attention_workspace_bytes(const model_preset& m, std::int64_t max_seqs) {
  return 4 * max_seqs * m.heads * 8 * (std::int64_t{m.head_dim} + 2);
}

std::int64_t step_scratch_bytes(const model_preset& m, std::int64_t max_tokens,
                                std::int64_t max_seqs, std::int64_t attention_workspace_bytes) {
  return step_activation_bytes(m, max_tokens, max_seqs) + attention_workspace_bytes +
         rope_table_bytes(m) + k_scratch_slack_bytes;
}

std::int64_t memory_plan::max_sequences(std::int64_t context) const {
  if (!fits || context <= 0) return 0;
  return kv_blocks / blocks_for(context, block_tokens);
}

memory_plan plan_memory(const model_preset& model, double gpu_memory_bytes, const memory_options& o,
                        const std::string& gpu_label) {
  validate(model);
  const model_preset m = tensor_parallel_shard(model, o.tensor_parallel);  // one GPU's part
  if (o.block_tokens <= 0 || o.max_batched_tokens <= 0 || o.max_running <= 0) {
    throw std::invalid_argument(
        "memory model: block tokens, batched tokens and running "
        "sequences must be positive");
  }
  if (!(o.memory_fraction > 0 && o.memory_fraction <= 1)) {
    throw std::invalid_argument("memory model: memory fraction must be in (0, 1]");
  }
  if (o.num_kv_blocks < 0 || o.context_reserve_bytes < 0 ||
      o.attention_workspace_bytes.value_or(0) < 0) {
    throw std::invalid_argument(
        "memory model: KV blocks, context reserve and attention workspace must not be negative");
  }
  auto bytes = [&](double b) { return o.binary_units ? format_gib(b) : format_gb(b); };
  const bool split = o.tensor_parallel > 1;
  const std::string who = m.name + " in " + std::string(name(o.weights)) +
                          (split ? " at TP " + std::to_string(o.tensor_parallel) : "");
  const std::string per_gpu = split ? " per GPU" : "";
  memory_plan p;
  p.block_tokens = o.block_tokens;
  p.memory_bytes = gpu_memory_bytes;
  const double usable =
      o.memory_fraction * (gpu_memory_bytes - static_cast<double>(o.context_reserve_bytes));
  p.usable_bytes = usable > 0 ? std::floor(usable) : 0.0;
  p.weight_bytes = weight_memory_bytes(m, o.weights);
  p.workspace_bytes = static_cast<double>(step_scratch_bytes(
      m, o.max_batched_tokens, o.max_running,
      o.attention_workspace_bytes.value_or(estimate_attention_workspace_bytes(m, o.max_running))));
  p.kv_bytes_per_token = m.kv_bytes_per_token(o.kv_dtype);
  p.kv_bytes_per_block = p.kv_bytes_per_token * o.block_tokens;
  if (p.weight_bytes > p.usable_bytes) {
    p.why_not = who + ": weights alone need " + bytes(p.weight_bytes) + per_gpu + "; " + gpu_label +
                " has " + bytes(gpu_memory_bytes) + " (" + bytes(p.usable_bytes) + " usable)";
    return p;
  }
  const double left = p.usable_bytes - p.weight_bytes - p.workspace_bytes;
  p.kv_budget_bytes = std::max(0.0, left);
  const auto budget = static_cast<std::int64_t>(p.kv_budget_bytes);
  const std::int64_t want = o.num_kv_blocks > 0 ? o.num_kv_blocks : budget / p.kv_bytes_per_block;
  if (want < 1 || want > budget / p.kv_bytes_per_block) {
    p.why_not = who + ": weights (" + bytes(p.weight_bytes) + per_gpu + ") and step workspace (" +
                bytes(p.workspace_bytes) + ") leave " + bytes(p.kv_budget_bytes) +
                " for the KV cache on " + gpu_label + " (" + bytes(p.usable_bytes) +
                " usable), too little for " + std::to_string(std::max<std::int64_t>(want, 1)) +
                " blocks of " + bytes(static_cast<double>(p.kv_bytes_per_block));
    return p;
  }
  p.kv_blocks = std::min(want, k_max_kv_blocks);
  p.fits = true;
  return p;
}

}  // namespace ridgeline::planner
