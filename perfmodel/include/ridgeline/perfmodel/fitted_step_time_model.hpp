// The calibrated step-time model of the planner. Per step, over the model's op groups:
//   t = u_lin(T) x max(F_blocks / P, W_blocks / B)          block linears, T = tokens this step
//     + u_lin(S) x max(F_head / P, W_head / B)              LM head, S = sampled tokens
//     + u_att_mem(c) x KV bytes / B                          attention reads and writes
//     + u_att_cmp(c) x attention FLOPs / P                   attention math
//     + overhead                                             launches, sampling, host
//     + tier-2 loads                                         blocks x block bytes / PCIe
// with FLOPs and bytes counted by step_work_of (step_work.hpp).
// P and B are the GPU's ceilings (measured, or datasheet x derating), u = 1 / efficiency is
// piecewise linear in log2 of its argument (tokens per step for GEMM rows, context per sequence
// for attention). Because t is linear in the u's and the overhead, a fit to measured sweeps is a
// non-negative least-squares problem on relative error (docs/plan.md).
//   fitted_parameters f = fit_sweeps({{sweep_doc, profile}});
//   fitted_step_time_model m(model, ceilings_of(profile, dtype::bf16), f);
#pragma once

#include <string>

#include "ridgeline/perfmodel/ceilings.hpp"
#include "ridgeline/perfmodel/fitted_parameters.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"
#include "ridgeline/perfmodel/weights.hpp"
// The rest of the planner's calibration, for callers that use the whole of it: reading sweeps,
// the fit and the accuracy figures.
#include "ridgeline/perfmodel/accuracy.hpp"
#include "ridgeline/perfmodel/fit.hpp"
#include "ridgeline/perfmodel/sweep_points.hpp"

namespace ridgeline::planner {

struct model_options {
  weight_format weights = weight_format::bf16;
  dtype kv_dtype = dtype::bf16;
  std::int32_t block_tokens = 16;       // for tier-2 block bytes
  double pcie_bytes_per_second = 25e9;  // for tier-2 block loads
};

class fitted_step_time_model final : public step_time_model {
 public:
  fitted_step_time_model(const model_preset& m, const ceilings& c, const fitted_parameters& f,
                         model_options o = {});
  double step_seconds(const step_shape& s) const override;
  std::string description() const override;
  double prefill_flops(std::int64_t tokens) const override;
  double prefill_seconds(std::int64_t tokens) const override;

  // The four base times (roofline seconds) of a step; step_seconds = sum u_i x base_i + overhead.
  struct parts {
    double linear = 0, head = 0, attention_memory = 0, attention_compute = 0;
    double tokens = 0, sampled = 0, context_per_sequence = 0;
  };
  parts base(const step_shape& s) const;
  // The step's counted work (step_work_of with this model's weight format and KV dtype).
  step_work work(const step_shape& s) const;
  double flops(const step_shape& s) const;
  const model_preset& model() const { return m_model; }
  const ceilings& ceiling() const { return m_ceilings; }
  const fitted_parameters& parameters() const { return m_fit; }

 private:
  model_preset m_model;
  ceilings m_ceilings;
  fitted_parameters m_fit;
  model_options m_options;
  double m_kv_bytes_per_token = 0;
};

}  // namespace ridgeline::planner
