// The calibrated step-time model of the planner. Per step, over the model's op groups (one GPU's
// shard of them under tensor parallelism):
//   t = u_lin(T) x max(F_blocks / P, W_blocks / B)          block linears, T = tokens this step
//     + u_lin(S) x max(F_head / P, W_head / B)              LM head, S = sampled tokens
//     + u_att_mem(c) x KV bytes / B                          attention reads and writes
//     + u_att_cmp(c) x attention FLOPs / P                   attention math
//     + 2 x layers x all-reduce(T x hidden x 2 bytes)        tensor parallelism only
//     + fixed                                                per step + per layer x layers
//     + tier-2 loads                                         blocks x block bytes / PCIe
// with FLOPs and bytes counted by step_work_of (step_work.hpp).
// P and B are the GPU's ceilings (measured, or datasheet x derating), u = 1 / efficiency >= 1 is
// piecewise linear in log2 of its argument (tokens per step for GEMM rows, context per sequence
// for attention). So no op group is faster than its roofline, and no step faster than the floor
// max(F / P, bytes / B), for any model. The fixed cost is measured apart (a kernel trace) and not
// fitted; the efficiencies are then a bounded least-squares problem on relative error
// (docs/plan.md). `breakdown` says which bound each op group rests on.
//   fitted_parameters f = fit_sweeps({{sweep_doc, profile}});
//   fitted_step_time_model m(model, ceilings_of(profile, dtype::bf16), f);
//   m.breakdown(decode_shape(64, 512)).linear.bound;   // op_bound::memory
#pragma once

#include <string>
#include <string_view>

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
  // GPUs of one replica: each runs its shard of the model (tensor_parallel_shard) and two
  // all-reduces per layer of the step's activations, at `all_reduce`'s cost (of this many GPUs).
  std::int32_t tensor_parallel = 1;
  all_reduce_cost all_reduce;
};

// What sets an op group's least possible time.
enum class op_bound {
  memory,                  // bytes / B
  compute,                 // FLOPs / P
  interconnect_latency,    // an all-reduce's fixed time
  interconnect_bandwidth,  // an all-reduce's bytes over the bus bandwidth
  fixed,                   // the measured fixed cost (no roofline)
};
// "memory", "compute", "latency", "interconnect", "fixed".
std::string_view name(op_bound b);

// One op group's part of a step: its floor (the least time physics allows: max(bytes / B,
// FLOPs / P), or the all-reduce's own cost), what sets it, and the predicted time (>= floor).
struct op_group_time {
  double seconds = 0;
  double floor_seconds = 0;
  op_bound bound = op_bound::memory;
};
struct step_breakdown {
  op_group_time linear, lm_head, attention, all_reduce, fixed;
  double tier2_seconds = 0;
  double seconds() const {
    return linear.seconds + lm_head.seconds + attention.seconds + all_reduce.seconds +
           fixed.seconds + tier2_seconds;
  }
  // Sum of the op groups' floors (no fixed cost, no tier-2 loads).
  double floor_seconds() const {
    return linear.floor_seconds + lm_head.floor_seconds + attention.floor_seconds +
           all_reduce.floor_seconds;
  }
};

class fitted_step_time_model final : public step_time_model {
 public:
  fitted_step_time_model(const model_preset& m, const ceilings& c, const fitted_parameters& f,
                         model_options o = {});
  double step_seconds(const step_shape& s) const override;
  std::string description() const override;
  double prefill_flops(std::int64_t tokens) const override;
  double prefill_seconds(std::int64_t tokens) const override;
  // The parameters' loop gap (fitted_parameters.hpp): not in step_seconds or breakdown, which are
  // the forward pass a sweep or a replay's CUDA events time.
  double loop_gap_seconds(const step_shape& s) const override { return m_fit.loop.seconds(s); }

  // Every op group's time, floor and bound; step_seconds is its sum.
  step_breakdown breakdown(const step_shape& s) const;

  // The four base times (roofline seconds) of a step, what the efficiencies multiply, and the
  // terms no efficiency touches: step_seconds = sum u_i x base_i + all_reduce + fixed + tier 2.
  struct parts {
    double linear = 0, head = 0, attention_memory = 0, attention_compute = 0;
    double tokens = 0, sampled = 0, context_per_sequence = 0;
    double all_reduce = 0;  // 2 x layers all-reduces (tensor parallelism)
    double fixed = 0;       // the parameters' fixed cost of this model
  };
  parts base(const step_shape& s) const;
  // The step's counted work on one GPU (step_work_of the shard, with this model's weight format
  // and KV dtype).
  step_work work(const step_shape& s) const;
  double flops(const step_shape& s) const;
  const model_preset& model() const { return m_model; }
  // One GPU's part of the model (the model itself without tensor parallelism).
  const model_preset& shard() const { return m_shard; }
  const ceilings& ceiling() const { return m_ceilings; }
  const fitted_parameters& parameters() const { return m_fit; }
  const model_options& options() const { return m_options; }

 private:
  // Bytes of one all-reduce of a step with `tokens` token rows: tokens x hidden x activation bytes.
  double all_reduce_bytes(double tokens) const;
  parts base_of(const step_shape& s, const step_work& w) const;

  model_preset m_model;
  model_preset m_shard;
  ceilings m_ceilings;
  fitted_parameters m_fit;
  model_options m_options;
  double m_kv_bytes_per_token = 0;
};

}  // namespace ridgeline::planner
