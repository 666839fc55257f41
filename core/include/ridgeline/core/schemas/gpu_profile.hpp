// ridgeline.gpu_profile/v1: `ridgeline probe`'s measured ceilings of a GPU (bandwidth, peak FLOP/s
// per dtype, instruction peaks) with the rows they came from. perfmodel::gpu_profile is the model
// built from it; this is the document. Rows are kept as written (`rows`, so a rewrite keeps every
// key) and the kinds the report charts and the probe's table prints are also read into typed
// views, strictly.
// docs/results-formats.md lists every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"
#include "ridgeline/core/schemas/measurement.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_gpu_profile_schema = "ridgeline.gpu_profile/v1";

struct profile_peak {
  double flops_per_second = 0, datasheet_flops_per_second = 0;
  // Derived when the peak and the bandwidth are known; written only then.
  std::optional<double> ridge_point_flops_per_byte, datasheet_ridge_point_flops_per_byte;
};

struct instruction_peak {
  std::string instruction;
  double flops_per_second = 0, p10_flops_per_second = 0, p90_flops_per_second = 0,
         datasheet_flops_per_second = 0;
  nlohmann::json launch, measurement;  // launch geometry and the timing loop, as written
};

struct instruction_peak_section {
  std::map<std::string, instruction_peak> peaks;  // keyed by fp32, bf16_hfma2, bf16, fp8_e4m3
  std::vector<std::string> skipped;               // "kind: reason"
  nlohmann::json environment, config;             // config.when only when roofline measured it
};

// Typed views of the row kinds the report charts and the probe's table prints.
// `bandwidth` (op read|write|copy: the cold DRAM plateau) and `bandwidth_reference` (memcpy).
struct bandwidth_row {
  std::string op;
  std::int64_t buffer_bytes = 0;
  double bytes_moved = 0, bytes_per_second = 0;
  measurement_block measurement;
};
struct working_set_row {
  std::string op;
  std::int64_t buffer_bytes = 0;
  double bytes_per_second = 0;
};
struct gemm_row {
  std::string dtype;
  std::int64_t m = 0, n = 0, k = 0;
  double flops = 0, flops_per_second = 0;
};
struct linear_row {
  std::string model, layer, dtype;
  std::int64_t m = 0, n = 0, k = 0;
  double flops = 0, bytes = 0, flops_per_second = 0;
};
struct linear_block_row {
  std::string model;
  std::int64_t tokens = 0;
  double seconds = 0, flops = 0, bytes = 0, flops_per_second = 0, bytes_per_second = 0;
  double qkv_seconds = 0, o_seconds = 0, gate_up_seconds = 0, down_seconds = 0;  // layer_seconds
  std::string bound;  // "memory" | "compute"
};

// One all-reduce measurement (`collectives.all_reduce[]`): `gpus` GPUs of one host reducing a
// message of `message_bytes`, the median time and the bus bandwidth it reached
// (2 (gpus - 1) / gpus x message_bytes / seconds, comparable to the per-GPU link rate).
struct all_reduce_row {
  std::int64_t gpus = 0;
  double message_bytes = 0, seconds = 0, bus_bytes_per_second = 0;
};

struct profile_document {
  std::string gpu_name, gpu_key;  // key "" when no datasheet entry matched
  std::int64_t sm_count = 0, l2_bytes = 0, memory_bytes = 0;
  std::string source;  // "measured" | "datasheet"
  double read_bytes_per_second = 0, write_bytes_per_second = 0, copy_bytes_per_second = 0,
         datasheet_bytes_per_second = 0;
  std::map<std::string, profile_peak> peaks;  // keyed by dtype name
  environment env;
  nlohmann::json config;             // probe options and copy-method figures, as written
  std::vector<nlohmann::json> rows;  // every row as written (kind decides its keys)
  // Absent in profiles measured before the instruction peaks (h200.json, bench/baselines).
  std::optional<instruction_peak_section> instruction_peaks;
  // `collectives.all_reduce`: absent until `ridgeline probe` measures collectives on a host with
  // several GPUs (no committed profile has it yet).
  std::optional<std::vector<all_reduce_row>> all_reduce;

  std::vector<bandwidth_row> bandwidth;  // views of `rows`, in file order
  std::vector<bandwidth_row> bandwidth_reference;
  std::vector<working_set_row> working_set;
  std::vector<gemm_row> gemm;
  std::vector<linear_row> linear;
  std::vector<linear_block_row> linear_block;
};

profile_document parse_gpu_profile(const nlohmann::json& doc, std::string_view source);
profile_document read_gpu_profile(const std::filesystem::path& path);
instruction_peak_section parse_instruction_peaks(const node& n);
nlohmann::json to_json(const instruction_peak_section& s);
nlohmann::json to_json(const profile_document& doc);

}  // namespace ridgeline::schema
