// `ridgeline replay`'s logic: serves a trace (or a generated workload) in real time through the
// engine's serving loop (serving.hpp) on this GPU's cuda executor, or on the cpu executor with the
// tiny model where there is no GPU (and says so), and writes kv's serving-results format
// (ridgeline.kv/v1: one row, config.executor "cuda" or "cpu", and a `measured` section with the
// per-step time series, per-request records and what kv's simulation of the same window and
// capacity says). docs/serving.md. config.weight_format names the weight format the executor ran
// (--weights).
//   replay::replay_setup s = replay::configure(options);   // validates, loads the window
//   nlohmann::json doc = replay::run(s, hooks);            // the run, then the simulation
//   replay::table_of(doc)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/serving.hpp"
#include "ridgeline/kv/kv.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline::metrics {
class live_metrics;
}

namespace ridgeline::replay {

struct replay_options {
  kv::kv_options serving;  // trace or generator, model, gpu (for the simulation), block size,
                           // scheduler limits, Mooncake block size; its capacities are unused
  std::string checkpoint;  // safetensors file or folder; empty: seeded random weights
  std::uint64_t seed = 1;  // random weights
  // The cuda executor's block-linear format (engine_options::weights, `replay --weights`); unset:
  // bf16, or a quantized checkpoint's own. The cpu executor runs bf16 and says so.
  std::optional<planner::weight_format> weights;
  double rate_scale = 1.0;
  double start_seconds = 0, duration_seconds = 0;  // window of the trace; 0: to the end
  std::int64_t requests = 0;                        // at most this many requests; 0: all
  std::int32_t kv_blocks = 0;  // KV pool in blocks; 0: what the engine's memory plan gives
  double memory_fraction = 0;  // of free GPU memory for the engine; 0: the engine's default
  bool deterministic = false;  // batch-invariant mode (docs/diverge.md)
  bool cuda_graphs = true;
  bool cpu = false;            // the cpu executor (tiny model) even when a GPU is there
  std::string cpu_model = "tiny";  // the model the cpu executor runs when --model is not tiny
  bool simulate = true;        // also run kv's simulation of the same window and capacity
  // Plan the next decode step while one runs (serving_loop overlap): on an H100 it takes the GPU
  // idle time between decode steps from 47 to 24 us (docs/results/serving/run2).
  bool overlap = true;
  std::int32_t graph_table_blocks = 32;  // decode graphs per table width rounded to this
  // cuBLASLt candidates timed per linear-layer shape. Serving meets a new token count in most
  // mixed steps; timing 32 candidates for each (as the sweep does for its few shapes) would stall
  // the run, so a replay takes the heuristic's first choice unless told otherwise.
  int gemm_candidates = 1;
  // Top log-probabilities the executor computes for every sampled token (and the sampled
  // token's own), 0 to k_sampling_max_top_logprobs; 0: none, the sampling kernel does no extra
  // work. `serve --max-logprobs` sets it; with it the cuda executor reads each step's outputs
  // back synchronously (no step is queued behind a running one).
  std::int32_t top_logprobs = 0;
};

struct replay_setup {
  replay_options options;
  kv::kv_setup kv;     // model, GPU profile for the simulation, scheduler settings
  workload requests;   // the window
  std::int64_t source_requests = 0;  // requests of the whole trace or generated workload
};
// Throws std::invalid_argument naming the bad option; io_error when the trace cannot be read.
replay_setup configure(const replay_options& o);
// The options and the model's settings only (no workload: `serve` takes requests live).
replay_setup configure_engine(const replay_options& o);

// The executor a replay runs on, its KV pool size and the device's name.
struct replay_executor {
  std::unique_ptr<executor> exec;
  std::int32_t kv_blocks = 0;
  std::string executor_name;  // "cuda" or "cpu"
  std::string device;
  std::string weight_format = "bf16";  // what it runs: the cuda engine's weight_format()
  const model_preset* model = nullptr;  // the model it runs (tiny on the cpu executor)
};
// The cuda executor on GPU 0 (throws no_device_error without one or in a build without CUDA).
replay_executor make_cuda_executor(const replay_setup& s);
// Host-tier slots of --host-memory for model m (0 without it); throws std::invalid_argument when
// the size holds no block.
std::int32_t host_blocks_for(const model_preset& m, const replay_setup& s);

// The executor the options ask for: cuda on GPU 0, else (no GPU, or options.cpu) the cpu
// executor on a tiny model; `note` says so when it falls back.
replay_executor make_executor(const replay_setup& s,
                              const std::function<void(const std::string&)>& note = {});
// The settings for that executor's model: kv's setup with the model's context limit and its
// step-time model, and the KV cache manager's config for the executor's pool and host tier.
kv::kv_setup setup_for(const replay_setup& s, const replay_executor& ex);
kv_cache_config kv_config_for(const replay_setup& s, const kv::kv_setup& ks,
                              const replay_executor& ex);

struct replay_hooks {
  std::function<void(double)> progress;        // fraction of requests done
  std::function<void(const std::string&)> note;  // one-line notes (the executor chosen, ...)
  metrics::live_metrics* live = nullptr;        // fed every step and request when set
};

// Runs the window in real time and returns the document (ridgeline.kv/v1).
nlohmann::json run(const replay_setup& s, const replay_hooks& hooks = {});

// Live metrics from a serving loop (replay and serve feed them the same way): one step (batch,
// tokens, work, queue and KV gauges), one request that left.
void observe_step(metrics::live_metrics& live, const serving_loop& l, const step_record& r);
void observe_request(metrics::live_metrics& live, const serving_record& q);
// The requests of the trace outside the window (--start, --duration, --requests): how many of
// how many and the flags that change it; none when the window holds the whole trace.
std::optional<std::string> window_line(const replay_setup& s);
// What the replay leaves out, one line per reason with the flag that changes it: the window's
// line, then the scheduler's rejections (the table prints the latter itself).
std::vector<std::string> drop_lines(const replay_setup& s, const nlohmann::json& doc);
// The table the command prints: kv's table (with its rejection lines, in replay's flags) plus
// the measured lines.
std::string table_of(const nlohmann::json& doc);

}  // namespace ridgeline::replay
