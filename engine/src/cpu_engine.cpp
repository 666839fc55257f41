// The CPU executor (see cpu_engine.hpp).
#include "ridgeline/engine/cpu_engine.hpp"

#include <algorithm>
#include <chrono>
#include <utility>
#include <stdexcept>
#include <string>

#include "ridgeline/kernels/attention_reference.hpp"
#include "ridgeline/kernels/linear_reference.hpp"
#include "ridgeline/kernels/reference.hpp"

namespace ridgeline {
namespace {

struct cpu_backend {
  void embedding(const embedding_params& p) { cpu::embedding(p); }
  void rms_norm(const rms_norm_params& p) { cpu::rms_norm(p); }
  void linear(const linear_params& p) { cpu::linear(p); }
  void gather_rows(const gather_rows_params& p) { cpu::gather_rows(p); }
  void qkv_rope_append(const qkv_rope_append_params& p) { cpu::qkv_rope_append(p); }
  void rope(const rope_params& p) { cpu::rope(p); }
  void kv_append(const kv_append_params& p) { cpu::kv_append(p); }
  void attention(const attention_params& p) { cpu::attention(p); }
  void rope_append_attention(const qkv_rope_append_params& pre, const attention_params& p) {
    qkv_rope_append(pre);
    attention(p);
  }
  void swiglu(const swiglu_params& p) { cpu::swiglu(p); }
  void linear_swiglu(const linear_params& l, const swiglu_params& p) {
    cpu::linear(l);
    cpu::swiglu(p);
  }
  void sampling(const sampling_params& p) { cpu::sampling(p); }
  void range_push(const char*) {}
  void range_pop() {}
};

}  // namespace

cpu_engine::cpu_engine(const model_preset& m, std::vector<bf16_bits> weights, int num_kv_blocks,
                       int block_tokens, int top_logprobs)
    : cpu_engine(make_decoder_config(m, block_tokens), std::move(weights), num_kv_blocks,
                 top_logprobs) {}

cpu_engine::cpu_engine(const decoder_config& c, std::vector<bf16_bits> weights, int num_kv_blocks,
                       int top_logprobs)
    : m_cfg(c),
      m_weights(std::move(weights)),
      m_num_blocks(num_kv_blocks),
      m_top_logprobs(top_logprobs) {
  const model_preset& m = m_cfg.model;
  const int block_tokens = m_cfg.block_tokens;
  validate(m);
  const std::int64_t total = total_weight_elements(m);
  if (static_cast<std::int64_t>(m_weights.size()) != total) {
    throw std::invalid_argument("cpu_engine: " + std::to_string(m_weights.size()) +
                                " weight elements given, " + m.name + " has " +
                                std::to_string(total));
  }
  if (num_kv_blocks <= 0) throw std::invalid_argument("cpu_engine: no KV blocks");
  m_w = bind_weights(m, tensor_pointers(m, m_weights.data(), 1));
  m_kv.assign(static_cast<std::size_t>(kv_layer_elements(m, num_kv_blocks, block_tokens) * m.layers),
              0);
}

step_output cpu_engine::step(std::span<const step_sequence> seqs) {
  const model_preset& m = m_cfg.model;
  host_step h = build_step(seqs, m_cfg.block_tokens, m.vocab);
  // Ids from the previous step's samples (a step planned while that one ran).
  for (std::size_t i = 0; i < h.input_rows.size(); ++i) {
    const auto k = static_cast<std::size_t>(h.input_samples[i]);
    if (k >= m_last_tokens.size()) {
      throw std::invalid_argument("cpu_engine: sample " + std::to_string(k) +
                                  " of the previous step, which sampled " +
                                  std::to_string(m_last_tokens.size()));
    }
    h.ids[static_cast<std::size_t>(h.input_rows[i])] = m_last_tokens[k];
  }
  // The CUDA executor's layout (xs in q's space when it fits), sized for this step; the reference
  // attention needs no workspace or split counters.
  const step_scratch_layout layout =
      step_scratch_of(step_buffer_elements(m, h.num_tokens, std::max(h.num_samples, 1)), 0, 0);
  std::vector<unsigned char> scratch(static_cast<std::size_t>(layout.bytes));
  const step_buffers b = carve_step_buffers(scratch.data(), layout);
  step_output r;
  r.tokens.resize(static_cast<std::size_t>(h.num_samples));
  r.top_logprobs.resize(static_cast<std::size_t>(h.num_samples) * m_top_logprobs);
  r.top_ids.resize(r.top_logprobs.size());
  if (m_top_logprobs > 0) r.sampled_logprobs.resize(static_cast<std::size_t>(h.num_samples));
  const step_inputs in = bind_step_inputs(
      h,
      {h.ids.data(), h.positions.data(), h.slot_mapping.data(), h.q_offsets.data(),
       h.seq_lens.data(), h.block_tables.data(), h.sample_rows.data(), h.prev_tokens.data(),
       h.prev_offsets.data(), h.sampling.data(), r.tokens.data(), r.top_logprobs.data(),
       r.top_ids.data(), r.sampled_logprobs.data()},
      m_top_logprobs, 0);
  kv_pool_view kv{m_kv.data(), m_num_blocks, kv_layer_elements(m, m_num_blocks, m_cfg.block_tokens)};
  cpu_backend backend;
  const auto start = std::chrono::steady_clock::now();
  decoder_forward(backend, m_cfg, m_w, kv, b, in);
  r.forward_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.copy_seconds = std::exchange(m_copy_seconds, 0.0);
  m_last_tokens = r.tokens;
  r.logits.assign(b.logits, b.logits + static_cast<std::size_t>(h.num_samples) * m.vocab);
  return r;
}

void cpu_engine::set_host_blocks(int blocks) {
  if (blocks < 0) throw std::invalid_argument("cpu_engine: negative host blocks");
  const std::int64_t per_layer = kv_layer_elements(m_cfg.model, 1, m_cfg.block_tokens);
  m_host_blocks = blocks;
  m_host.assign(static_cast<std::size_t>(per_layer * m_cfg.model.layers * blocks), 0);
}

void cpu_engine::copy_blocks(std::span<const block_transfer> transfers) {
  const auto start = std::chrono::steady_clock::now();
  const model_preset& m = m_cfg.model;
  const std::int64_t block = kv_layer_elements(m, 1, m_cfg.block_tokens);
  const std::int64_t layer_stride = kv_layer_elements(m, m_num_blocks, m_cfg.block_tokens);
  for (const auto& t : transfers) {
    if (t.gpu < 0 || t.gpu >= m_num_blocks || t.host_slot < 0 || t.host_slot >= m_host_blocks) {
      throw std::invalid_argument("cpu_engine: block copy " + std::to_string(t.gpu) + " <-> slot " +
                                  std::to_string(t.host_slot) + " outside the pools");
    }
    for (int l = 0; l < m.layers; ++l) {
      bf16_bits* pool = m_kv.data() + l * layer_stride + t.gpu * block;
      bf16_bits* host = m_host.data() + (std::int64_t(t.host_slot) * m.layers + l) * block;
      if (t.dir == block_transfer::direction::to_host)
        std::copy(pool, pool + block, host);
      else
        std::copy(host, host + block, pool);
    }
  }
  m_copy_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace ridgeline
