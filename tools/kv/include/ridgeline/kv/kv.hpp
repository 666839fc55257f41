// `ridgeline kv`'s logic: replays a trace or a generated workload through the engine's scheduler,
// the paged KV cache and the simulated executor once per cache capacity, and reports the
// prefix-cache hit rate (tokens and blocks) against capacity, what hits saved and misses
// recomputed, and latency distributions per capacity (schema ridgeline.kv/v1, docs/kv.md).
// The CLI parses the arguments into kv_options and prints; the steps, in the order it calls them:
//   const kv::kv_setup s = kv::configure(options);       // validates, resolves model and GPU
//   const kv::kv_inputs in = kv::load_inputs(s);          // reads or generates the workload
//   auto rows = kv::run_capacities(s, in, hooks);
//   const nlohmann::json doc = kv::kv_document(s, in, std::move(rows));
//   kv::table_of(doc), kv::csv_of(doc.at("rows"))
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/profiles.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"

namespace ridgeline::metrics {
class live_metrics;
}

namespace ridgeline::kv {

// One item of --capacity, as written: "unlimited", "25%" (of unlimited), "4096" (blocks) or a
// size of KV memory in bytes ("8GiB"; the CLI parses the size).
struct capacity_spec {
  enum class kind { unlimited, percent, blocks, bytes };
  std::string label;  // the item as the user wrote it
  kind type = kind::unlimited;
  double value = 0;  // percent in (0, 100], blocks, or bytes
};

struct kv_options {
  std::string trace;      // .jsonl Mooncake or .csv Azure; exactly one of trace and generator
  std::string generator;  // key=value,... (docs/kv.md)
  std::string model = "llama-3-8b";
  std::string gpu = "h100-sxm";  // a key or a profile path, as every command takes it
  std::vector<capacity_spec> capacities;
  std::int32_t block_tokens = 16;
  std::string kv_dtype = "bf16";
  std::int64_t host_memory_bytes = 0;  // second tier; 0: none
  double pcie_gb_per_second = 25;
  std::int32_t max_running = 256;
  std::int64_t max_batched_tokens = 8192;
  bool chunked_prefill = true;
  std::int64_t max_model_len = -1;  // -1: the model's context; 0: no limit
  std::int32_t mooncake_block = 512;
  double overhead_us = 0;
};

// The options validated and resolved: what every capacity's replay shares.
struct kv_setup {
  kv_options options;
  const model_preset* model = nullptr;
  dtype kv_dtype = dtype::bf16;
  planner::resolved_gpu gpu;  // planner::resolve_gpu: the same resolution as plan and roofline
  roofline_options step_options;
  std::optional<roofline_step_time_model> step_model;
  scheduler_config scheduler;
};
// Throws std::invalid_argument naming the bad option (or the unknown GPU and the known keys).
kv_setup configure(const kv_options& o);
// The same without a workload (trace and generator unused): a server takes its requests live.
kv_setup configure_model(const kv_options& o);

struct capacity_point {
  std::string label;
  std::int64_t blocks = 0;
};
// Capacities in blocks: percentages of `unlimited`, sizes through the model's KV bytes per block.
std::vector<capacity_point> resolve_capacities(const std::vector<capacity_spec>& specs,
                                               std::int64_t unlimited, const model_preset& m,
                                               dtype kv_dtype, std::int32_t block_tokens);

struct kv_inputs {
  workload requests;
  std::int64_t unlimited = 0;  // blocks that hold every prompt of the workload at once
  std::vector<capacity_point> capacities;
  // The window of the trace a real run served (replay): written as config.window. kv: none.
  std::optional<schema::serving_window> window;
};
// Reads the trace (or generates the workload) and resolves the capacities.
kv_inputs load_inputs(const kv_setup& s);

// What a replay reports while it runs; every member may be left empty.
struct kv_hooks {
  // (capacity index, fraction of its requests done in [0, 1]).
  std::function<void(std::size_t, double)> progress;
  // Fed every step and request when set; its ceilings are set before the first replay.
  metrics::live_metrics* live = nullptr;
  std::function<void()> begin_run;   // with `live`: before each capacity's replay
  std::function<void(double)> pace;  // with `live`: after each step, simulated seconds
};
// One row (ridgeline.kv/v1) per capacity, in order.
std::vector<schema::serving_row> run_capacities(const kv_setup& s, const kv_inputs& in,
                                                const kv_hooks& hooks = {});

// The row of one capacity from a run's result (simulated here; `ridgeline replay` passes a real
// run's records through it too).
schema::serving_row serving_row_of(const capacity_point& cap, const kv_cache_config& kvc,
                                   simulation_result& r);

// The whole result document: schema, environment (host only), config with definitions, rows.
// Written through the format's one writer (ridgeline/core/schemas/serving_results.hpp).
// `executor`: absent for kv's simulated runs; "cuda" or "cpu" for a replay. `device`: the GPU
// whose facts (clocks, throttle reasons, ...) the environment block records; none for kv.
nlohmann::json kv_document(const kv_setup& s, const kv_inputs& in,
                           std::vector<schema::serving_row> rows,
                           std::optional<std::string> executor = std::nullopt,
                           std::optional<int> device = std::nullopt);
// The document's rows as CSV (one line per capacity, the p50/p90/p99 of each distribution).
std::string csv_of(const nlohmann::json& rows);
// A count with thousands separators, for the lines people read: 8192 -> "8,192".
std::string format_count(std::int64_t n);

// The flag that changes each rejection reason, as the command that prints the lines spells it.
// kv's by default; replay sizes its pool with other flags.
struct drop_flags {
  std::string context = "--max-model-len N; 0: no limit";
  std::string cache = "a larger --capacity";
  std::string batch_tokens = "--max-batched-tokens, or drop --no-chunked-prefill";
};
// What the document's figures leave out: one line per rejection reason, "<command>: N of M
// requests (P%) rejected ...: why (flag)", the count per capacity when it differs between them.
// Empty when every request was admitted.
std::vector<std::string> rejection_lines(const nlohmann::json& doc, const std::string& command,
                                         const drop_flags& flags = {});
// The Markdown table the command prints, its rejection lines and the definition of the hit
// rates below it. `command` heads it ("ridgeline kv: ...") and starts the rejection lines.
std::string table_of(const nlohmann::json& doc, const std::string& command = "kv",
                     const drop_flags& flags = {});

}  // namespace ridgeline::kv
