// Memory model (see memory_model.hpp).
#include "ridgeline/perfmodel/memory_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace ridgeline::planner {

std::string_view name(weight_format f) {
  switch (f) {
    case weight_format::fp32:
      return "fp32";
    case weight_format::fp16:
      return "fp16";
    case weight_format::bf16:
      return "bf16";
    case weight_format::fp8:
      return "fp8";
    case weight_format::int8:
      return "int8";
    case weight_format::int4:
      return "int4";
  }
  return "?";
}

weight_format parse_weight_format(std::string_view s) {
  for (auto f : {weight_format::fp32, weight_format::fp16, weight_format::bf16, weight_format::fp8,
                 weight_format::int8, weight_format::int4}) {
    if (s == name(f)) return f;
  }
  if (s == "fp8_e4m3") return weight_format::fp8;
  throw std::invalid_argument("unknown weight format '" + std::string(s) +
                              "' (expected fp32, fp16, bf16, fp8, int8 or int4)");
}

double bytes_per_parameter(weight_format f) {
  switch (f) {
    case weight_format::fp32:
      return 4;
    case weight_format::fp16:
    case weight_format::bf16:
      return 2;
    case weight_format::fp8:
    case weight_format::int8:
      return 1;  // per-channel scales: negligible
    case weight_format::int4:
      return 0.5 + 4.0 / 128;
  }
  return 2;
}

double bytes_per_other_parameter(weight_format f) {
  return f == weight_format::fp32 ? 4 : 2;
}

double weight_memory_bytes(const model_preset& m, weight_format f) {
  const double other = static_cast<double>(m.lm_head_parameters()) +          // LM head
                       static_cast<double>(m.vocab) * m.hidden +              // embedding (untied)
                       static_cast<double>(m.hidden) * (2.0 * m.layers + 1);  // norms
  return static_cast<double>(m.block_linear_parameters()) * bytes_per_parameter(f) +
         other * bytes_per_other_parameter(f);
}

double weight_stream_bytes(const model_preset& m, weight_format f) {
  return static_cast<double>(m.block_linear_parameters()) * bytes_per_parameter(f) +
         static_cast<double>(m.lm_head_parameters()) * bytes_per_other_parameter(f);
}

std::int64_t memory_plan::max_sequences(std::int64_t context) const {
  if (!fits || context <= 0) return 0;
  const std::int64_t blocks_per_seq = (context + block_tokens - 1) / block_tokens;
  return kv_blocks / blocks_per_seq;
}

namespace {
std::string gb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GB", bytes / 1e9);
  return b;
}
}  // namespace

memory_plan plan_memory(const model_preset& m, double gpu_memory_bytes, const memory_options& o,
                        const std::string& gpu_label) {
  validate(m);
  if (o.block_tokens <= 0 || o.max_batched_tokens <= 0 || o.max_running <= 0) {
    throw std::invalid_argument(
        "memory model: block tokens, batched tokens and running "
        "sequences must be positive");
  }
  if (!(o.memory_fraction > 0 && o.memory_fraction <= 1)) {
    throw std::invalid_argument("memory model: memory fraction must be in (0, 1]");
  }
  memory_plan p;
  p.block_tokens = o.block_tokens;
  p.memory_bytes = gpu_memory_bytes;
  p.usable_bytes = std::max(
      0.0, o.memory_fraction * (gpu_memory_bytes - static_cast<double>(o.context_reserve_bytes)));
  p.weight_bytes = weight_memory_bytes(m, o.weights);
  // Activations of one step in 16-bit (residual stream and norms, q/k/v, attention output, gate,
  // up and the SwiGLU product), fp32 logits for every running sequence, fp32 split-attention
  // partials (8 splits per sequence and head), and 64 MiB of slack, as the CUDA engine sizes them.
  const double tokens = static_cast<double>(o.max_batched_tokens);
  const double per_token = 2.0 * (4.0 * m.hidden + (m.heads + 2.0 * m.kv_heads) * m.head_dim +
                                  2.0 * m.heads * m.head_dim + 3.0 * m.intermediate);
  const double seqs = o.max_running;
  p.workspace_bytes = tokens * per_token + 4.0 * seqs * m.vocab +
                      4.0 * seqs * m.heads * 8.0 * (m.head_dim + 2) + double(64LL << 20);
  p.kv_bytes_per_token = m.kv_bytes_per_token(o.kv_dtype);
  p.kv_bytes_per_block = p.kv_bytes_per_token * o.block_tokens;
  if (p.weight_bytes > p.usable_bytes) {
    p.why_not = m.name + " in " + std::string(name(o.weights)) + ": weights alone need " +
                gb(p.weight_bytes) + "; " + gpu_label + " has " + gb(gpu_memory_bytes) + " (" +
                gb(p.usable_bytes) + " usable)";
    return p;
  }
  p.kv_budget_bytes = p.usable_bytes - p.weight_bytes - p.workspace_bytes;
  p.kv_blocks =
      p.kv_budget_bytes > 0
          ? static_cast<std::int64_t>(p.kv_budget_bytes / static_cast<double>(p.kv_bytes_per_block))
          : 0;
  if (p.kv_blocks < 1) {
    p.kv_budget_bytes = std::max(0.0, p.kv_budget_bytes);
    p.why_not = m.name + " in " + std::string(name(o.weights)) + ": weights (" +
                gb(p.weight_bytes) + ") and step workspace (" + gb(p.workspace_bytes) +
                ") leave no room for the KV cache on " + gpu_label + " (" + gb(p.usable_bytes) +
                " usable)";
    return p;
  }
  p.fits = true;
  return p;
}

}  // namespace ridgeline::planner
