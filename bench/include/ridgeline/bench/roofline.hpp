// `ridgeline roofline`: the measured roofline of a GPU and the engine placed on it.
//   1. ceilings from the probe's profile (DRAM read plateau, GEMM peak per dtype) and the ridge
//      point per dtype (peak / read bandwidth), datasheet beside;
//   2. the intensity sweep (intensity_sweep.hpp): measured memory and compute plateaus per kernel,
//      each against the probe's ceiling it should reach;
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

#include "ridgeline/bench/intensity_sweep.hpp"
#include "ridgeline/engine/gpu_profile.hpp"
#include "ridgeline/engine/model.hpp"

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

// Ceilings block of the document: read bandwidth, per-dtype peak and ridge (measured and
// datasheet) and where they came from.
nlohmann::json roofline_ceilings(const gpu_profile& p, const std::string& source);
// Crossing block: the ridge per dtype and the decode crossing batch per context.
nlohmann::json roofline_crossings(const model_preset& m, const gpu_profile& p,
                                  const std::vector<int>& contexts);

// A demangled kernel name without its return type, namespaces and parameter list:
// "void ridgeline::cuda::(anonymous namespace)::gemv_kernel<1, false>(uint4 const*, int)" ->
// "gemv_kernel<1, false>". Names that are not C++ (cuBLAS's nvjet_...) come back unchanged.
std::string short_kernel_name(const std::string& demangled);

// Human-readable summary and a flat CSV of every point (kind, name, intensity, FLOP/s, bytes/s,
// % of the roof at that intensity).
std::string roofline_table(const nlohmann::json& doc);
std::string roofline_csv(const nlohmann::json& doc);

}  // namespace ridgeline::bench
