// Step-time models: how long one engine step takes for a given batch shape. The simulated
// executor (kv, plan) asks one; the planner calibrates them against measured sweeps.
//   roofline_step_time_model m(model_preset_by_name("llama-2-7b"), profile);
//   double s = m.step_seconds(shape);   // max(FLOPs / peak, bytes / bandwidth) + overhead
#pragma once

#include <cstdint>
#include <string>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline {

// What one step computes, summed over its sequences.
struct step_shape {
  std::int32_t sequences = 0;
  std::int64_t prefill_tokens = 0;  // prompt (or recomputed) tokens processed this step
  std::int64_t decode_tokens = 0;   // one per decoding sequence
  std::int32_t sampled_tokens = 0;  // sequences that produce a token (lm head runs for these)
  std::int64_t context_tokens = 0;  // KV tokens already in cache that the step's queries read
  // Sum over sequences of new_tokens * (context_before + (new_tokens + 1) / 2): query-key pairs
  // of causal attention, for the attention FLOPs.
  double attention_pairs = 0;
  std::int32_t tier2_blocks_loaded = 0;  // host -> GPU block copies before the step
};

class step_time_model {
 public:
  virtual ~step_time_model() = default;
  virtual double step_seconds(const step_shape& s) const = 0;
  virtual std::string description() const = 0;
  // FLOPs and marginal seconds of prefilling `tokens` prompt tokens from position 0: what a
  // prefix-cache hit of that many tokens saves.
  virtual double prefill_flops(std::int64_t tokens) const = 0;
  virtual double prefill_seconds(std::int64_t tokens) const = 0;
};

struct roofline_options {
  dtype weight_dtype = dtype::bf16;
  dtype kv_dtype = dtype::bf16;
  dtype compute_dtype = dtype::bf16;
  double overhead_seconds = 0;  // fixed per-step cost (launches, sampling); calibrated later
  double pcie_bytes_per_second = 25e9;  // for tier-2 block loads
  std::int32_t block_tokens = 16;       // for tier-2 block bytes
};

// Roofline estimate per step: compute time = FLOPs / peak FLOP/s (profile, compute dtype), memory
// time = (weight bytes + KV bytes read + KV bytes written) / DRAM bandwidth (profile), step time =
// max of the two + overhead + tier-2 loads (blocks * block bytes / PCIe bandwidth, not overlapped).
class roofline_step_time_model final : public step_time_model {
 public:
  roofline_step_time_model(const model_preset& m, const gpu_profile& gpu, roofline_options o = {});
  double step_seconds(const step_shape& s) const override;
  std::string description() const override;
  double flops(const step_shape& s) const;
  double bytes(const step_shape& s) const;
  // FLOPs and marginal time (max(FLOPs / peak, KV bytes written / bandwidth); the weights are
  // read by the step anyway) of prefilling `tokens` tokens from an empty context: what a
  // prefix-cache hit of that many tokens saves.
  double prefill_flops(std::int64_t tokens) const override;
  double prefill_seconds(std::int64_t tokens) const override;
  const model_preset& model() const { return m_model; }
  const roofline_options& options() const { return m_options; }

 private:
  model_preset m_model;
  roofline_options m_options;
  double m_peak_flops = 0;
  double m_bytes_per_second = 0;
  double m_weight_bytes = 0;
  double m_kv_bytes_per_token = 0;
  std::string m_gpu;
};

}  // namespace ridgeline
