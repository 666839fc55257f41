// `ridgeline roofline`: the measured roofline of a GPU and the engine placed on it.
//   1. ceilings: the DRAM read plateau from the probe's profile; per dtype the compute ceiling is
//      the instruction peak (FFMA, wgmma bf16 / fp8: the probe's compute-only kernels), measured
//      again in this run with the probe's routine because the tensor-core rate moves with the
//      power cap; the profile's instruction peak and the probe's cuBLASLt GEMM peak (a second,
//      lower "achievable" ceiling) beside it; the ridge point per dtype (ceiling / read
//      bandwidth), the GEMM's and the datasheet's beside;
//   2. the intensity sweep (intensity_sweep.hpp): measured memory and compute plateaus per kernel,
//      each against the ceiling it should reach (the instruction peak of its instruction measured
//      right before its points);
//   3. engine steps (decode at several batch sizes, prefill): CUDA-event time first, then in a
//      separate pass the CUPTI range profiler's DRAM bytes and FLOPs, beside the counted ones;
//   4. each kernel of a decode step: time from a CUPTI kernel trace, bytes and FLOPs from
//      per-kernel counters (auto range, user replay), with its phase (attention_block, mlp, ...);
//   5. the batch at which decode's counted intensity crosses the bf16 ridge, per context.
// Output: ridgeline.roofline/v1 JSON (also the report's chart data), a table and a CSV of points.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/roofline/intensity_sweep.hpp"
#include "ridgeline/kernels/instruction_peak_plan.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"

namespace ridgeline::bench {

inline constexpr const char* k_roofline_schema = "ridgeline.roofline/v1";

struct roofline_options {
  std::string model = "llama-2-7b";
  int context = 512;                              // decode: tokens of cache per sequence
  std::vector<int> decode_batches{1, 8, 64, 128};
  std::vector<int> prefill_batches{1, 4};         // sequences of prefill_context tokens
  int prefill_context = 1024;
  std::vector<int> kernel_batches{1, 64};         // decode steps broken down per kernel
  bool intensity_sweep = true;
  intensity_sweep_options sweep;
  bool counters = true;  // CUPTI counters (separate passes from timing)
  bool full = false;     // more repetitions
  int device = 0;
  std::optional<gpu_profile> profile;  // ceilings; without one the datasheet's (said so)
  std::function<void(const std::string&)> progress;
};

// Checks what needs no GPU; throws std::invalid_argument.
void validate_roofline_options(const roofline_options& o);

// Runs everything above on the GPU; throws no_device_error without one. Counters that the
// machine refuses (metrics::counters_unavailable) are an error unless counters is false.
nlohmann::json run_roofline(const roofline_options& o);

// The first batch size at which a decode step's counted intensity (count_step_work: FLOPs over
// weight and KV bytes) reaches `ridge` FLOP/byte at this context; nullopt when it never does
// (the intensity's limit as the batch grows is then below the ridge).
std::optional<int> decode_ridge_crossing(const model_preset& m, int context, double ridge,
                                         int max_batch = 1 << 20);
// Counted decode intensity as the batch grows without bound: FLOPs per sequence over KV bytes
// per sequence (the weights' bytes vanish per sequence).
double decode_intensity_limit(const model_preset& m, int context);

// The roofline's compute ceiling of one instruction: the instruction peak measured in this run
// (the probe's routine), else the profile's, else the probe's GEMM peak of the dtype (measured,
// else datasheet); the others beside it. 0 where there is none.
struct compute_ceiling {
  double flops_per_second = 0;  // what the roof and the plateau check use
  std::string source;           // "instruction peak, this run", "instruction peak, probe profile",
                                // "GEMM peak (no instruction peak)", "none"
  double same_run_flops_per_second = 0;  // instruction peak measured by this run
  double profile_flops_per_second = 0;   // instruction peak in the profile
  double gemm_flops_per_second = 0;      // the probe's cuBLASLt GEMM peak of the dtype
};
compute_ceiling select_compute_ceiling(std::optional<instruction_peak_kind> k,
                                       std::optional<dtype> gemm, const gpu_profile& p,
                                       const instruction_peak_section* same_run);
// Of a dtype's roof (FFMA for fp32, wgmma for bf16 and fp8_e4m3; the GEMM peak for the others).
compute_ceiling select_compute_ceiling(dtype t, const gpu_profile& p,
                                       const instruction_peak_section* same_run);
// Of a sweep kernel (ffma_fp32: FFMA, hfma2_bf16: HFMA2.BF16, mma_bf16 / mma_fp8: wgmma; none for
// hfma2_fp16, whose instruction the probe does not measure).
compute_ceiling select_compute_ceiling(intensity_kernel k, const gpu_profile& p,
                                       const instruction_peak_section* same_run);
// The instruction peak a sweep kernel is compared with; none for hfma2_fp16.
std::optional<instruction_peak_kind> instruction_peak_of(intensity_kernel k);

// Ceilings block of the document: read bandwidth, per-dtype compute ceiling (select_compute_ceiling)
// with the instruction peaks, the GEMM peak and the ridges (ceiling, GEMM, datasheet) and where
// they came from. Without same-run peaks the profile's are used, else the GEMM peaks (said so).
nlohmann::json roofline_ceilings(const gpu_profile& p, const std::string& source,
                                 const instruction_peak_section* same_run = nullptr);
// Crossing block: the bf16 ridge of the roof (and of the GEMM peak) and the decode crossing batch
// per context at each.
nlohmann::json roofline_crossings(const model_preset& m, const gpu_profile& p,
                                  const std::vector<int>& contexts,
                                  const instruction_peak_section* same_run = nullptr);

// A demangled kernel name without its return type, namespaces and parameter list:
// "void ridgeline::cuda::(anonymous namespace)::gemv_kernel<1, false>(uint4 const*, int)" ->
// "gemv_kernel<1, false>". Names that are not C++ (cuBLAS's nvjet_...) come back unchanged.
std::string short_kernel_name(const std::string& demangled);

// Human-readable summary and a flat CSV of every point (kind, name, intensity, FLOP/s, bytes/s,
// % of the roof at that intensity). Both read the document through the typed
// ridgeline.roofline/v1 reader (core/schemas/roofline.hpp) and throw its schema_error (an
// std::invalid_argument naming the field) when a field they print is missing or mistyped.
std::string roofline_table(const nlohmann::json& doc);
std::string roofline_csv(const nlohmann::json& doc);

}  // namespace ridgeline::bench
