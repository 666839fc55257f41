// ridgeline.sweep/v1: `ridgeline sweep`'s step time per (phase, context, batch) of the engine on
// a GPU, with the bytes and FLOPs each step moves and how close it came to the ceilings.
// docs/results-formats.md lists every field. Config fields added after the first committed sweeps
// are optional; the comment on each names the files that lack it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"
#include "ridgeline/core/schemas/measurement.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_sweep_schema = "ridgeline.sweep/v1";

struct sweep_config {
  std::string model;
  std::vector<std::int64_t> batches, contexts;
  std::vector<std::string> phases;
  std::string dtype, weights, sampling;
  // The block linears' format the engine ran (`--weights`: "bf16", "fp8", "int8", "int4") and
  // the layout the bytes were counted at ("int4 (group 128)", "int8 (group 32)" for a GGUF Q8_0
  // file: perfmodel/weights.hpp's describe). Absent in sweeps before --weights, which ran bf16
  // (weight_format_or_bf16).
  std::optional<std::string> weight_format, weight_layout;
  bool cuda_graphs = false;
  std::int64_t split_tokens = 0;
  // Absent in the sweeps before PDL and deterministic mode (h200_sweep, *_mistral-7b).
  std::optional<bool> pdl, deterministic;
  // Absent in those and the profiler_overhead runs.
  std::optional<std::int64_t> gemm_candidates;
  // "auto" | "cublas" | "skinny"; absent before the skinny GEMM (older decode runs); the
  // gemm64_streamk runs name it `decode_gemm` instead.
  std::optional<std::string> gemm, decode_gemm;
  std::int64_t kv_blocks = 0, block_tokens = 0, max_prefill_tokens = 0;
  // The read ceiling (in files before the matching ceilings: the one bandwidth every byte was
  // divided by, floor_source says which).
  double floor_bytes_per_second = 0;
  std::string floor_source;
  // The matching ceilings (perfmodel/bandwidth_floor.hpp): "read" and the copy and write ceilings
  // beside it, with the rule. Absent in sweeps written before them and not re-derived since.
  std::optional<std::string> floor_ceiling, floor_rule;
  std::optional<double> floor_copy_bytes_per_second, floor_write_bytes_per_second;
  double peak_bf16_flops_per_second = 0;
  std::optional<std::string> peak_source;  // "measured bf16 GEMM peak ... (probe profile of ...)"
  // Committed sweeps whose floor columns were derived again from their bytes and medians: how,
  // when, and the ceiling they had before. Absent in a sweep as measured.
  std::optional<std::string> floor_rederived;
  std::string timing;
  std::optional<nlohmann::json> peer;  // with --peer: the peer document's config, verbatim
};

// A measured point (rows without `skipped`).
struct sweep_measured {
  timing_summary step_seconds;
  measurement_block measurement;
  double tokens_per_second = 0, bytes_per_step = 0, weight_bytes = 0, kv_read_bytes = 0,
         kv_write_bytes = 0, flops_per_step = 0, bytes_per_second = 0, flops_per_second = 0,
         intensity_flops_per_byte = 0, floor_seconds = 0, pct_of_floor = 0,
         pct_of_peak_flops = 0;
  // The ceiling that carries most of the row's bytes ("read", "copy" or "write"); absent where
  // config.floor_ceiling is.
  std::optional<std::string> floor_ceiling;
  std::optional<double> peer_seconds;  // with --peer, where the peer measured this point
};

struct sweep_row {
  std::string phase;  // "decode" | "prefill"
  std::int64_t batch = 0, context = 0;
  double kv_bytes_per_token = 0;
  std::int64_t max_sequences = 0;
  std::optional<std::string> skipped;     // why the point was not run; then no `measured`
  std::optional<sweep_measured> measured;  // present exactly when not skipped
};

struct sweep_document {
  environment env;
  sweep_config config;
  std::vector<sweep_row> rows;
};

sweep_document parse_sweep(const nlohmann::json& doc, std::string_view source);
sweep_document read_sweep(const std::filesystem::path& path);
nlohmann::json to_json(const sweep_config& c);
nlohmann::json to_json(const sweep_row& r);
nlohmann::json to_json(const sweep_document& doc);

}  // namespace ridgeline::schema
