// The CPU executor: the same decoder_forward as the CUDA engine, over the naive references of
// kernels/cpu. For tiny shapes (tests, the reference side of end-to-end comparisons); far too slow
// for real models. Its step output has every sampled row's fp32 logits and, when asked, top-k
// log-probabilities; forward_seconds is host wall time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/step_batch.hpp"

namespace ridgeline {

class cpu_engine final : public executor {
 public:
  // weights: every tensor of weight_tensors(m), in order, concatenated (e.g. from
  // cuda_engine::download_weights()).
  cpu_engine(const model_preset& m, std::vector<bf16_bits> weights, int num_kv_blocks,
             int block_tokens = 16, int top_logprobs = 0);
  // With a decoder configuration of its own (rope and norm settings of a checkpoint's
  // config.json); its block_tokens is used.
  cpu_engine(const decoder_config& c, std::vector<bf16_bits> weights, int num_kv_blocks,
             int top_logprobs = 0);
  // A host tier of `blocks` slots for the KV manager's block copies (copy_blocks).
  void set_host_blocks(int blocks);
  std::int32_t host_blocks() const override { return m_host_blocks; }
  void copy_blocks(std::span<const block_transfer> transfers) override;
  const decoder_config& config() const { return m_cfg; }
  step_output step(std::span<const step_sequence> seqs) override;
  std::vector<bf16_bits>& kv() { return m_kv; }

 private:
  decoder_config m_cfg;
  std::vector<bf16_bits> m_weights, m_kv;
  decoder_weights m_w;
  int m_num_blocks;
  int m_top_logprobs;
  int m_host_blocks = 0;
  std::vector<bf16_bits> m_host;  // [slot][layer][block elements]
  double m_copy_seconds = 0;
  std::vector<token_id> m_last_tokens;  // the previous step's samples (step_sequence::input_sample)
};

}  // namespace ridgeline
