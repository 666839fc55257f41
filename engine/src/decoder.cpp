// Decoder configuration, weight tensor list and buffer sizes (see decoder.hpp).
#include "ridgeline/engine/decoder.hpp"

#include <stdexcept>

namespace ridgeline {

decoder_config make_decoder_config(const model_preset& m, int block_tokens) {
  validate(m);
  decoder_config c;
  c.model = m;
  c.block_tokens = block_tokens;
  c.rope.theta = 10000.0f;
  if (m.name.rfind("llama-3", 0) == 0) {
    c.rope.theta = 500000.0f;
    c.rope.llama3_scaling = true;  // Llama 3.1 rope_scaling: factor 8, low 1, high 4, 8192
    c.rms_eps = 1e-5f;
  } else if (m.name.rfind("mistral", 0) == 0) {
    c.rope.theta = 1000000.0f;  // Mistral 7B v0.2+
  }
  return c;
}

std::vector<weight_tensor> weight_tensors(const model_preset& m) {
  const int H = m.hidden, qkv = (m.heads + 2 * m.kv_heads) * m.head_dim, I = m.intermediate;
  auto t = [](std::string name, int rows, int cols, bool norm = false) {
    return weight_tensor{std::move(name), std::int64_t(rows) * cols, rows, cols, norm};
  };
  std::vector<weight_tensor> v;
  v.push_back(t("embedding", m.vocab, H));
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    v.push_back(t(p + "attn_norm", 1, H, true));
    v.push_back(t(p + "qkv", qkv, H));
    v.push_back(t(p + "o", H, m.heads * m.head_dim));
    v.push_back(t(p + "mlp_norm", 1, H, true));
    v.push_back(t(p + "gate_up", 2 * I, H));
    v.push_back(t(p + "down", H, I));
  }
  v.push_back(t("final_norm", 1, H, true));
  v.push_back(t("lm_head", m.vocab, H));
  return v;
}

decoder_weights bind_weights(const model_preset& m, std::span<const bf16_bits* const> tensors) {
  if (tensors.size() != static_cast<std::size_t>(6 * m.layers + 3)) {
    throw std::invalid_argument("bind_weights: " + std::to_string(tensors.size()) +
                                " tensors given, " + m.name + " has " +
                                std::to_string(6 * m.layers + 3));
  }
  std::size_t i = 0;
  decoder_weights w;
  w.embedding = tensors[i++];
  for (int l = 0; l < m.layers; ++l) {
    layer_weights lw;
    lw.attn_norm = tensors[i++];
    lw.qkv = tensors[i++];
    lw.o = tensors[i++];
    lw.mlp_norm = tensors[i++];
    lw.gate_up = tensors[i++];
    lw.down = tensors[i++];
    w.layers.push_back(lw);
  }
  w.final_norm = tensors[i++];
  w.lm_head = tensors[i++];
  return w;
}

std::int64_t total_weight_elements(const model_preset& m) {
  std::int64_t total = 0;
  for (const auto& t : weight_tensors(m)) total += t.elements;
  return total;
}

std::vector<std::int64_t> weight_offsets(const model_preset& m, std::int64_t align_elements) {
  if (align_elements < 1) throw std::invalid_argument("weight_offsets: alignment below 1");
  std::vector<std::int64_t> offsets{0};
  for (const auto& t : weight_tensors(m)) {
    offsets.push_back(offsets.back() +
                      (t.elements + align_elements - 1) / align_elements * align_elements);
  }
  return offsets;
}

std::vector<const bf16_bits*> tensor_pointers(const model_preset& m, const bf16_bits* base,
                                              std::int64_t align_elements) {
  const auto offsets = weight_offsets(m, align_elements);
  std::vector<const bf16_bits*> out;
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) out.push_back(base + offsets[i]);
  return out;
}

std::int64_t kv_layer_elements(const model_preset& m, int num_blocks, int block_tokens) {
  return std::int64_t(num_blocks) * 2 * m.kv_heads * block_tokens * m.head_dim;
}

step_scratch_layout step_scratch_of(const step_buffer_sizes& sizes, std::int64_t workspace_bytes,
                                    std::int64_t split_counter_bytes) {
  step_scratch_layout l;
  l.sizes = sizes;
  l.workspace_bytes = workspace_bytes;
  l.split_counter_bytes = split_counter_bytes;
  std::int64_t at = 0;
  auto take = [&at](std::int64_t bytes) {
    const std::int64_t o = at;
    at += (bytes + 255) / 256 * 256;
    return o;
  };
  l.residual = take(sizes.residual * 2);
  l.xn = take(sizes.residual * 2);
  l.out = take(sizes.residual * 2);
  l.qkv = take(sizes.qkv * 2);
  l.q = take(sizes.q * 2);
  l.attn = take(sizes.attn * 2);
  l.mlp = take(sizes.mlp * 2);
  l.act = take(sizes.act * 2);
  l.xs = sizes.xs_in_q ? l.q : take(sizes.xs * 2);
  l.logits = take(sizes.logits * 4);
  l.workspace = take(workspace_bytes);
  l.split_counters = take(split_counter_bytes);
  // At most 12 buffers rounded up by less than 256 bytes each: 4096 covers it.
  l.bytes = sizes.bytes() + workspace_bytes + split_counter_bytes + 4096;
  return l;
}

step_buffers carve_step_buffers(unsigned char* base, const step_scratch_layout& l) {
  auto bf16 = [base](std::int64_t offset) { return reinterpret_cast<bf16_bits*>(base + offset); };
  step_buffers b{};
  b.residual = bf16(l.residual);
  b.xn = bf16(l.xn);
  b.out = bf16(l.out);
  b.qkv = bf16(l.qkv);
  b.q = bf16(l.q);
  b.attn = bf16(l.attn);
  b.mlp = bf16(l.mlp);
  b.act = bf16(l.act);
  b.xs = bf16(l.xs);
  b.logits = reinterpret_cast<float*>(base + l.logits);
  b.workspace = l.workspace_bytes > 0 ? reinterpret_cast<float*>(base + l.workspace) : nullptr;
  b.workspace_bytes = l.workspace_bytes;
  b.split_counters = l.split_counter_bytes > 0
                         ? reinterpret_cast<std::int32_t*>(base + l.split_counters)
                         : nullptr;
  return b;
}

}  // namespace ridgeline
