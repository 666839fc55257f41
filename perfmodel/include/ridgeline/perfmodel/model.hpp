// Model presets: the shapes of the decoder-only transformers ridgeline runs and plans for, in one
// table (llama-2-7b, llama-2-13b, llama-3-8b, mistral-7b, tinyllama-1.1b, llama-3-70b, tiny test
// shapes), plus the counts derived from a shape that the KV cache and the step-time models need:
// KV bytes per token, parameters and FLOPs per token (weight bytes per format: weights.hpp; a
// step's FLOPs and bytes: step_work.hpp), and the part of a model one GPU holds under tensor
// parallelism.
//   const model_preset& m = model_preset_by_name("llama-3-8b");
//   m.kv_bytes_per_token(dtype::bf16);   // 2 * layers * kv_heads * head_dim * 2 bytes
//   model_preset s = tensor_parallel_shard(model_preset_by_name("llama-3-70b"), 4);  // per GPU
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ridgeline/core/dtype.hpp"

namespace ridgeline {

struct model_preset {
  std::string name;
  std::int32_t layers = 0;
  std::int32_t hidden = 0;
  std::int32_t heads = 0;
  std::int32_t kv_heads = 0;  // < heads for grouped-query attention
  std::int32_t head_dim = 0;
  std::int32_t intermediate = 0;  // gated MLP (gate, up, down)
  std::int32_t vocab = 0;
  std::int32_t max_context = 0;  // tokens
  bool planning_only = false;    // too large for one GPU's weights; the planner still uses it

  // Bytes of K and V for one token over all layers.
  std::int64_t kv_bytes_per_token(dtype kv_dtype) const;
  // Parameters of the linear layers of all blocks (q, k, v, o, gate, up, down).
  std::int64_t block_linear_parameters() const;
  // Parameters of the output projection (lm head), used once per sampled token.
  std::int64_t lm_head_parameters() const;
  // FLOPs of the linear layers for one token (2 per multiply-add), excluding the lm head.
  double linear_flops_per_token() const;
  // FLOPs of attention (QK^T and PV) for one query token attending to `context` tokens.
  double attention_flops(double query_tokens_times_context) const;
};

// Every preset, in table order.
const std::vector<model_preset>& model_presets();
// The preset with that name; throws std::invalid_argument listing the known names.
const model_preset& model_preset_by_name(const std::string& name);
// Throws std::invalid_argument naming the first field that is not positive or not consistent
// (heads a multiple of kv_heads).
void validate(const model_preset& m);

// Tensor parallelism (Megatron-style, docs/plan.md): each of `tp` GPUs holds heads / tp query
// heads, kv_heads / tp K/V heads (one, replicated, when tp > kv_heads), intermediate / tp MLP
// columns and a vocab / tp slice of the embedding and LM head (rounded up); hidden, head_dim and
// layers stay. The shard is a model_preset, so the memory model and the step work count one GPU's
// weights, KV, scratch, FLOPs and bytes with the same formulas as an unsplit model.
// Empty when `tp` can split `m`, else why not ("llama-2-13b: 40 heads do not split 16 ways").
std::string tensor_parallel_why_not(const model_preset& m, std::int32_t tp);
// The part of `m` one GPU holds at tensor-parallel degree `tp` (tp = 1: `m` itself); throws
// std::invalid_argument with tensor_parallel_why_not's reason.
model_preset tensor_parallel_shard(const model_preset& m, std::int32_t tp);

}  // namespace ridgeline
