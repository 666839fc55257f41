// Step-time models: how long one engine step takes for a given batch shape. The simulated
// executor (kv, plan) asks one; the planner calibrates them against measured sweeps.
//   roofline_step_time_model m(model_preset_by_name("llama-2-7b"), profile);
//   double s = m.step_seconds(shape);   // max(FLOPs / peak, bytes / bandwidth) + overhead
#pragma once

#include <cstdint>
#include <string>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline {

class step_time_model {
 public:
  virtual ~step_time_model() = default;
  virtual double step_seconds(const step_shape& s) const = 0;
  virtual std::string description() const = 0;
  // FLOPs and marginal seconds of prefilling `tokens` prompt tokens from position 0: what a
  // prefix-cache hit of that many tokens saves.
  virtual double prefill_flops(std::int64_t tokens) const = 0;
  virtual double prefill_seconds(std::int64_t tokens) const = 0;
  // What a serving loop adds before a step of this shape besides the step itself (the GPU's idle
  // time between forward passes: planning, input upload), measured from serving runs; the
  // simulator adds it to every step's period. 0 unless a model was calibrated on serving runs.
  virtual double loop_gap_seconds(const step_shape&) const { return 0; }
};

struct roofline_options {
  planner::weight_format weights = planner::weight_format::bf16;
  dtype kv_dtype = dtype::bf16;
  dtype compute_dtype = dtype::bf16;
  double overhead_seconds = 0;  // fixed per-step cost (launches, sampling); calibrated later
  double pcie_bytes_per_second = 25e9;  // for tier-2 block loads
  std::int32_t block_tokens = 16;       // for tier-2 block bytes
};

// Roofline estimate per step: compute time = FLOPs / peak FLOP/s (profile, compute dtype), memory
// time = (weight bytes + KV bytes read + KV bytes written) / DRAM bandwidth (profile), with FLOPs
// and bytes counted by step_work_of (step_work.hpp), step time = max of the two + overhead +
// tier-2 loads (blocks * block bytes / PCIe bandwidth, not overlapped).
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
  double m_kv_bytes_per_token = 0;
  std::string m_gpu;
};

}  // namespace ridgeline
