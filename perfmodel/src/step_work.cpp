// Step shapes and their counted work (see step_work.hpp).
#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline {

void add_sequence(step_shape& s, std::int64_t context_before, std::int64_t new_tokens, bool prefill,
                  bool samples) {
  ++s.sequences;
  if (prefill)
    s.prefill_tokens += new_tokens;
  else
    s.decode_tokens += new_tokens;
  if (samples) ++s.sampled_tokens;
  s.context_tokens += context_before;
  s.attention_pairs +=
      static_cast<double>(new_tokens) *
      (static_cast<double>(context_before) + (static_cast<double>(new_tokens) + 1) / 2);
}

step_shape decode_shape(std::int64_t batch, std::int64_t context) {
  step_shape s;
  s.sequences = static_cast<std::int32_t>(batch);
  s.decode_tokens = batch;
  s.sampled_tokens = static_cast<std::int32_t>(batch);
  s.context_tokens = batch * context;
  s.attention_pairs = static_cast<double>(batch) * static_cast<double>(context + 1);
  return s;
}

step_shape prefill_shape(std::int64_t batch, std::int64_t context) {
  step_shape s;
  s.sequences = static_cast<std::int32_t>(batch);
  s.prefill_tokens = batch * context;
  s.sampled_tokens = static_cast<std::int32_t>(batch);
  s.attention_pairs = static_cast<double>(batch) * static_cast<double>(context) *
                      static_cast<double>(context + 1) / 2.0;
  return s;
}

step_shape prefix_shape(std::int64_t tokens) {
  step_shape s = prefill_shape(1, tokens);
  s.sampled_tokens = 0;
  return s;
}

step_work step_work_of(const model_preset& m, const step_shape& s,
                       const planner::weight_layout& weights, dtype kv_dtype) {
  step_work w;
  if (s.sequences <= 0) return w;
  const double tokens = static_cast<double>(s.prefill_tokens + s.decode_tokens);
  const double kv = static_cast<double>(m.kv_bytes_per_token(kv_dtype));
  w.block_flops = m.linear_flops_per_token() * tokens;
  w.head_flops = 2.0 * static_cast<double>(m.lm_head_parameters()) * s.sampled_tokens;
  w.attention_flops = m.attention_flops(s.attention_pairs);
  w.flops = w.block_flops + w.head_flops + w.attention_flops;
  w.block_weight_bytes = planner::block_weight_bytes(m, weights);
  w.head_weight_bytes = s.sampled_tokens > 0 ? planner::head_weight_bytes(m, weights.format) : 0.0;
  w.weight_bytes = w.block_weight_bytes + w.head_weight_bytes;
  w.kv_read_bytes = kv * static_cast<double>(s.context_tokens + s.decode_tokens);
  w.kv_write_bytes = kv * tokens;
  return w;
}

double tier2_load_seconds(const step_shape& s, std::int32_t block_tokens, double kv_bytes_per_token,
                          double pcie_bytes_per_second) {
  if (s.tier2_blocks_loaded <= 0) return 0;
  return static_cast<double>(s.tier2_blocks_loaded) * block_tokens * kv_bytes_per_token /
         pcie_bytes_per_second;
}

}  // namespace ridgeline
