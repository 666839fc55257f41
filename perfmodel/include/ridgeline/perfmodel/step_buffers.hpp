// The step scratch layout: how many elements each buffer of one decoder step holds, from the
// model's shapes, max_tokens token rows and max_samples sampled rows. This is the one definition
// of it: the cpu and cuda executors carve their scratch from it (engine/decoder.hpp,
// step_scratch_of) and the memory planner counts its bytes (memory_model.hpp,
// step_activation_bytes).
//   step_buffer_sizes s = step_buffer_elements(model_preset_by_name("llama-2-7b"), 8192, 256);
//   s.bytes();   // 16-bit activations for 8192 tokens + fp32 logits for 256 rows
#pragma once

#include <algorithm>
#include <cstdint>

#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline {

// Elements of each buffer; 16-bit except the logits.
struct step_buffer_sizes {
  std::int64_t residual = 0;  // [max_tokens][hidden]: the residual, xn and out each
  std::int64_t qkv = 0;       // [max_tokens][(heads + 2 kv_heads) head_dim]
  std::int64_t q = 0;         // [max_tokens][heads head_dim] roped queries
  std::int64_t attn = 0;      // [max_tokens][heads head_dim] attention output
  std::int64_t mlp = 0;       // [max_tokens][2 intermediate] gate and up
  std::int64_t act = 0;       // [max_tokens][intermediate] SwiGLU product
  // [min(max_samples, max_tokens)][hidden] the LM head's gathered rows (a step samples at most
  // one row per token). They live in q's space, which is free once attention has read it, when
  // they fit there: always when heads x head_dim >= hidden (every preset). Else (a checkpoint
  // shaped like Mistral-Nemo: 32 x 128 < 5120) they have a buffer of their own.
  std::int64_t xs = 0;
  bool xs_in_q = false;
  std::int64_t logits = 0;  // fp32 [max_samples][vocab]

  // 16-bit elements: three residual-sized buffers, qkv, q, attn, mlp, act, and xs unless in q.
  std::int64_t bf16_elements() const {
    return 3 * residual + qkv + q + attn + mlp + act + (xs_in_q ? 0 : xs);
  }
  // Bytes of every buffer: 2 per 16-bit element, 4 per logit.
  std::int64_t bytes() const { return 2 * bf16_elements() + 4 * logits; }
};

inline step_buffer_sizes step_buffer_elements(const model_preset& m, std::int64_t max_tokens,
                                              std::int64_t max_samples) {
  const std::int64_t T = max_tokens;
  step_buffer_sizes s;
  s.residual = T * m.hidden;
  s.qkv = T * (m.heads + 2 * m.kv_heads) * m.head_dim;
  s.q = T * m.heads * m.head_dim;
  s.attn = s.q;
  s.mlp = T * 2 * m.intermediate;
  s.act = T * m.intermediate;
  s.xs = std::min(max_samples, max_tokens) * m.hidden;
  s.xs_in_q = s.xs <= s.q;
  s.logits = max_samples * m.vocab;
  return s;
}

}  // namespace ridgeline
