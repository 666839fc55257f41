// Model presets (see model.hpp). Shapes from each model's published config.json.
#include "ridgeline/perfmodel/model.hpp"

#include <stdexcept>

namespace ridgeline {

std::int64_t model_preset::kv_bytes_per_token(dtype kv_dtype) const {
  return 2LL * layers * kv_heads * head_dim * static_cast<std::int64_t>(operand_bytes(kv_dtype));
}

std::int64_t model_preset::block_linear_parameters() const {
  const std::int64_t q = std::int64_t{hidden} * heads * head_dim;
  const std::int64_t kv = 2LL * hidden * kv_heads * head_dim;
  const std::int64_t o = std::int64_t{heads} * head_dim * hidden;
  const std::int64_t mlp = 3LL * hidden * intermediate;
  return layers * (q + kv + o + mlp);
}

std::int64_t model_preset::lm_head_parameters() const {
  return std::int64_t{hidden} * vocab;
}

double model_preset::linear_flops_per_token() const {
  return 2.0 * static_cast<double>(block_linear_parameters());
}

double model_preset::attention_flops(double query_tokens_times_context) const {
  // QK^T and PV: 2 GEMMs of 2 FLOPs per multiply-add over heads * head_dim, per layer.
  return 4.0 * layers * heads * head_dim * query_tokens_times_context;
}

const std::vector<model_preset>& model_presets() {
  static const std::vector<model_preset> table = {
      // name, layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_context
      {"llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 4096, false},
      // 13.0B parameters, 26.0 GB in bf16: a size between the 7-8B presets and llama-3-70b.
      {"llama-2-13b", 40, 5120, 40, 40, 128, 13824, 32000, 4096, false},
      {"llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256, 8192, false},
      {"mistral-7b", 32, 4096, 32, 8, 128, 14336, 32000, 32768, false},
      {"tinyllama-1.1b", 22, 2048, 32, 4, 64, 5632, 32000, 2048, false},
      {"llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256, 8192, true},
      // Test shapes: small enough for the CPU reference executor, odd sizes on purpose.
      {"tiny", 2, 64, 4, 2, 16, 176, 256, 512, false},
      {"tiny-mha", 3, 96, 6, 6, 16, 256, 311, 256, false},
      // The smallest shape the GPU attention kernels take (head_dim 64): GPU tests of whole runs.
      {"tiny-gpu", 2, 256, 4, 2, 64, 520, 777, 1024, false},
  };
  return table;
}

const model_preset& model_preset_by_name(const std::string& name) {
  std::string known;
  for (const auto& m : model_presets()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw std::invalid_argument("unknown model preset '" + name + "' (known: " + known + ")");
}

void validate(const model_preset& m) {
  auto positive = [&](std::int64_t v, const char* field) {
    if (v <= 0) {
      throw std::invalid_argument("model '" + m.name + "': " + field + " must be positive, got " +
                                  std::to_string(v));
    }
  };
  positive(m.layers, "layers");
  positive(m.hidden, "hidden");
  positive(m.heads, "heads");
  positive(m.kv_heads, "kv_heads");
  positive(m.head_dim, "head_dim");
  positive(m.intermediate, "intermediate");
  positive(m.vocab, "vocab");
  positive(m.max_context, "max_context");
  if (m.heads % m.kv_heads != 0) {
    throw std::invalid_argument("model '" + m.name + "': heads (" + std::to_string(m.heads) +
                                ") must be a multiple of kv_heads (" + std::to_string(m.kv_heads) +
                                ")");
  }
}

std::string tensor_parallel_why_not(const model_preset& m, std::int32_t tp) {
  const std::string n = std::to_string(tp);
  if (tp < 1) return "tensor-parallel degree must be at least 1, got " + n;
  if (m.heads % tp != 0)
    return m.name + ": " + std::to_string(m.heads) + " heads do not split " + n + " ways";
  if (m.kv_heads % tp != 0 && tp % m.kv_heads != 0)
    return m.name + ": " + std::to_string(m.kv_heads) + " K/V heads neither split " + n +
           " ways nor replicate evenly over " + n + " GPUs";
  if (m.intermediate % tp != 0)
    return m.name + ": the MLP's " + std::to_string(m.intermediate) + " columns do not split " + n +
           " ways";
  return "";
}

model_preset tensor_parallel_shard(const model_preset& m, std::int32_t tp) {
  if (const std::string why = tensor_parallel_why_not(m, tp); !why.empty())
    throw std::invalid_argument(why);
  model_preset s = m;
  s.heads = m.heads / tp;
  s.kv_heads = m.kv_heads >= tp ? m.kv_heads / tp : 1;
  s.intermediate = m.intermediate / tp;
  s.vocab = (m.vocab + tp - 1) / tp;
  return s;
}

}  // namespace ridgeline
