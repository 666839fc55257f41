// The ceilings a step-time model divides by: DRAM bandwidth and peak FLOP/s of the compute dtype,
// measured (probe) or derived from the datasheet, the dtype the block linears run in, and the
// all-reduce cost among the GPUs of a tensor-parallel replica.
//   ceilings c = ceilings_of(profile, compute_dtype_for(weight_format::bf16, profile));
//   all_reduce_cost a = all_reduce_cost_of(profile, 4);   a.seconds(64 * 8192 * 2);
#pragma once

#include <string>
#include <vector>

#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline::planner {

// The ceilings a model uses: bandwidth and peak FLOP/s of the compute dtype. Datasheet-only
// profiles are derated by the measured/datasheet ratios of `measured` profiles (their mean), and
// marked so.
struct ceilings {
  double bytes_per_second = 0;
  double flops_per_second = 0;
  dtype compute_dtype = dtype::bf16;
  bool derated = false;
  std::string basis;  // "measured (probe)" or "datasheet x 0.93 bandwidth, x 0.81 bf16"
};
ceilings ceilings_of(const gpu_profile& g, dtype compute,
                     const std::vector<gpu_profile>& measured = {});
// The dtype the block linears run in for a weight format on this GPU (int8/int4 weight-only run
// 16-bit; bf16 falls back to fp16 on GPUs without bf16).
dtype compute_dtype_for(weight_format f, const gpu_profile& g);

// The one figure a datasheet-based all-reduce cost assumes rather than reads: the fixed time of
// one small all-reduce (no datasheet states it). A measured profile replaces it.
inline constexpr double k_assumed_all_reduce_latency_seconds = 10e-6;

// One all-reduce among `gpus` GPUs: latency + 2 (gpus - 1) / gpus x message bytes / bus bandwidth
// (a ring's traffic per GPU over the per-GPU link rate). From the profile's measured all-reduce
// rows of that GPU count when it has them (latency: the smallest message's time; bus bandwidth:
// the highest measured), else from the datasheet interconnect (bandwidth per direction, latency
// k_assumed_all_reduce_latency_seconds), marked so in `basis`.
struct all_reduce_cost {
  std::int32_t gpus = 1;
  double latency_seconds = 0;
  double bus_bytes_per_second = 0;
  bool measured = false;
  std::string basis;  // "measured all-reduce (probe of h100-sxm, 4 GPUs)" or "datasheet ..."
  // Seconds of one all-reduce of `message_bytes` (0 for one GPU).
  double seconds(double message_bytes) const;
  // Whether the latency term is the larger of the two at that size.
  bool latency_bound(double message_bytes) const;
};
// Throws std::invalid_argument when `gpus` < 1, or when it is > 1 and the GPU has neither
// measured all-reduce rows of that count nor a datasheet interconnect figure.
all_reduce_cost all_reduce_cost_of(const gpu_profile& g, std::int32_t gpus);

}  // namespace ridgeline::planner
