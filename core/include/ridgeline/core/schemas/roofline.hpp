// ridgeline.roofline/v1: `ridgeline roofline`'s measured roofline of a GPU: the ceilings it used,
// the intensity-sweep kernels, engine steps and traced decode kernels placed on it, and where
// decode crosses the ridge. The parts the report charts and the roofline tables print are typed
// and read strictly; the rest (crossing, config, the sweep's plateaus and probe comparison) is
// kept as written in `document`, which the writer starts from. docs/results-formats.md lists
// every field; fields added after h200_roofline.json (the oldest committed run) are optional.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"
#include "ridgeline/core/schemas/gpu_profile.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_roofline_schema = "ridgeline.roofline/v1";

// Where a dtype's compute ceiling came from; written since the instruction peaks (absent in
// h200_roofline.json, whose ceilings were the probe's GEMM peaks).
struct roofline_peak_sources {
  std::string peak_source;
  std::optional<double> instruction_peak_flops_per_second;          // null: not measured
  std::optional<double> instruction_peak_profile_flops_per_second;  // null: not in the profile
  double gemm_peak_flops_per_second = 0;
  std::optional<double> gemm_ridge_flops_per_byte;  // null: GEMM peak or bandwidth unknown
};

struct roofline_dtype {
  std::string dtype;
  double peak_flops_per_second = 0, datasheet_flops_per_second = 0;
  std::optional<double> ridge_flops_per_byte, datasheet_ridge_flops_per_byte;  // null if unknown
  std::optional<roofline_peak_sources> sources;
};

struct roofline_ceilings {
  std::string gpu, source, profile_source;  // source names the profile; profile_source its kind
  double dram_read_bytes_per_second = 0, dram_copy_bytes_per_second = 0,
         datasheet_dram_bytes_per_second = 0;
  std::string ridge_definition;
  std::optional<std::string> compute_ceiling_definition;  // absent in h200_roofline.json
  std::optional<std::string> note;  // same-run peaks against a profile without them
  std::vector<roofline_dtype> dtypes;
};

struct intensity_point {
  std::string kernel, variant;
  double intensity = 0, flop_per_byte = 0, flop_per_second = 0, bytes_per_second = 0,
         seconds = 0;
  std::optional<double> pct_of_roof;  // written only where the kernel has a compute ceiling
};

// One kernel's plateaus against the ceilings (intensity_sweep.against_probe[]). Ratios and
// ceilings are nullopt where absent or null (unknown ceiling; fields added after
// h200_roofline.json).
struct against_probe_row {
  std::string kernel;
  double memory_bytes_per_second = 0, memory_ratio = 0, compute_flops_per_second = 0;
  std::optional<double> compute_ceiling_flops_per_second, compute_ratio,
      instruction_peak_profile_flops_per_second, profile_instruction_ratio,
      probe_peak_flops_per_second, gemm_ratio;
  std::optional<bool> compute_within_5_percent;
};

// The CUPTI counters of an engine step (`measured` when not null) that the table prints.
struct engine_counters {
  double intensity_flops_per_byte = 0, dram_bytes = 0;
  double intensity_ratio = 0;  // the row's: measured / counted intensity
};

struct roofline_engine_step {
  std::string phase;
  std::int64_t batch = 0, context = 0;
  std::optional<std::string> skipped;  // then nothing below is written
  double seconds = 0, flops_per_second = 0, bytes_per_second = 0, intensity_flops_per_byte = 0,
         roof_flops_per_second = 0, pct_of_roof = 0;
  std::string bound;  // "memory" | "compute"
  bool counters_measured = false;  // `measured` is an object (CUPTI counters), not null
  double counted_intensity_flops_per_byte = 0;  // counted.intensity_flops_per_byte
  std::optional<engine_counters> measured;      // when counters_measured
};

struct decode_kernel {
  std::string phase, kernel, kernel_full;
  std::int64_t calls = 0;
  double seconds = 0;
  // Where the counters matched the kernel and it moved DRAM bytes (then all four are set).
  std::optional<double> intensity_flops_per_byte, flops_per_second, bytes_per_second, pct_of_roof;
  // Below the ridge: "read" | "copy" | "write", the ceiling that carries most of the kernel's
  // measured DRAM bytes in its floor (perfmodel/bandwidth_floor.hpp). Absent in rooflines before
  // it (h100-sxm_roofline.json, h100-sxm_decode_kernels.json: bytes / the read ceiling).
  std::optional<std::string> memory_ceiling;
};

struct decode_kernel_batch {
  std::int64_t batch = 0, context = 0;
  std::optional<std::string> skipped;  // then no kernels and no traced_steps
  std::int64_t traced_steps = 0;
  std::vector<decode_kernel> kernels;
};

// Where decode of the config's model crosses the bf16 ridge, per context.
struct crossing_context {
  std::int64_t context = 0;
  std::optional<std::string> crossing;  // absent when the ridge is unknown
  bool has_gemm_crossing = false;       // the GEMM ridge was known (absent in h200_roofline.json)
  std::optional<std::int64_t> gemm_crossing_batch;  // null: never
};
struct roofline_crossing {
  std::string model;
  std::optional<double> ridge_flops_per_byte;       // null: unknown
  std::optional<double> gemm_ridge_flops_per_byte;  // absent (h200_roofline.json) or null
  std::vector<crossing_context> contexts;
};

struct roofline_document {
  environment env;
  std::string model;  // config.model
  roofline_ceilings ceilings;
  roofline_crossing crossing;
  std::optional<std::vector<intensity_point>> intensity_sweep;  // absent with --no-sweep
  std::vector<against_probe_row> against_probe;  // empty without the sweep
  std::vector<roofline_engine_step> engine;
  std::vector<decode_kernel_batch> decode_kernels;  // empty without CUPTI
  // Absent in h200_roofline.json (measured before the instruction peaks).
  std::optional<instruction_peak_section> instruction_peaks;
  nlohmann::json document;  // the whole document as written
};

roofline_document parse_roofline(const nlohmann::json& doc, std::string_view source);
roofline_document read_roofline(const std::filesystem::path& path);
nlohmann::json to_json(const roofline_ceilings& c);
// The document as written; its ceilings block is the one part built from typed fields by the
// producer (tools/roofline), through to_json(roofline_ceilings).
inline nlohmann::json to_json(const roofline_document& doc) { return doc.document; }

}  // namespace ridgeline::schema
