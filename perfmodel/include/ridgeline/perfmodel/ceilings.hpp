// The ceilings a step-time model divides by: DRAM bandwidth and peak FLOP/s of the compute dtype,
// measured (probe) or derived from the datasheet, and the dtype the block linears run in.
//   ceilings c = ceilings_of(profile, compute_dtype_for(weight_format::bf16, profile));
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

}  // namespace ridgeline::planner
