// `ridgeline sweep`: the engine's step time per (batch, context, phase) on this GPU, with counted
// bytes and FLOPs per step, achieved bytes/s and FLOP/s, % of the bandwidth floor (each byte at
// the measured ceiling that matches it: read, copy or write; perfmodel/bandwidth_floor.hpp) and of
// the measured bf16 GEMM peak, KV bytes per token and how many sequences fit. Points that cannot
// run are kept with the reason. Every percentage names its ceiling in the table and the JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ridgeline/core/schemas/accuracy.hpp"
#include "ridgeline/perfmodel/bandwidth_floor.hpp"
#include "ridgeline/perfmodel/gpu_profile.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/perfmodel/step_work.hpp"
#include "ridgeline/perfmodel/weights.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::bench {

inline constexpr const char* k_sweep_schema = "ridgeline.sweep/v1";

struct sweep_options {
  std::string model = "llama-2-7b";
  std::string checkpoint;  // a Hugging Face folder (config.json + safetensors): shapes and weights
  // The block linears' format (engine_options::weights, `--weights`); unset: bf16, or a quantized
  // checkpoint's own. The counted bytes are the format's packed bytes (count_step_work).
  std::optional<planner::weight_format> weights;
  std::vector<int> batches{1, 2, 4, 8, 16, 32, 64, 128, 256};
  std::vector<int> contexts{128, 512, 2048, 8192};
  std::vector<std::string> phases{"decode", "prefill"};
  int max_prefill_tokens = 8192;  // a prefill point runs batch x context tokens in one step
  bool cuda_graphs = true;
  int split_tokens = 0;  // attention split size (0: the launcher's choice)
  bool pdl = true;       // programmatic dependent launch between the step's kernels
  bool batch_invariant = false;  // the engine's deterministic mode (engine_options)
  int gemm_candidates = 32;      // engine_options::gemm_candidates
  std::string gemm = "auto";     // engine_options::gemm
  bool full = false;  // more repetitions
  int device = 0;
  // Ceilings for the % columns; without one, the embedded measured profile of this device, else
  // the datasheet (resolve_sweep_ceilings; the output says which).
  std::optional<gpu_profile> profile;
  std::optional<schema::peer_document> peer;  // ridgeline.peer/v1 results (schema::read_peer)
  std::function<void(const std::string&)> progress;
  // When set, every timed step is observed (after its CUDA events, outside the timed region) and
  // GPU telemetry is sampled after each configuration: `sweep --metrics-address` serves it live.
  // Compare decode at batch 1 with and without it for the exporter's overhead.
  metrics::live_metrics* live = nullptr;
};

// Validates options that need no GPU (phases, positive sizes); throws std::invalid_argument.
void validate_sweep_options(const sweep_options& o);

// The peer's median step time at (batch, context, phase); nullopt where it has no timed row
// there (not measured, or skipped).
std::optional<double> peer_step_seconds(const schema::peer_document& peer, int batch, int context,
                                        const std::string& phase);

// The ceilings a sweep's % columns divide by, and where they come from: `given` (--gpu); else the
// measured profile embedded for `device_name` (perfmodel/profiles); else the datasheet entry of
// the device; else `theoretical_dram_bytes_per_second` (memory clock x bus width). The last two
// are fallbacks, labelled so in `source` and in every ceiling's label.
struct sweep_ceilings {
  gpu_profile profile;  // what bandwidth_floor_of reads (datasheet_bytes_per_second stands in)
  double peak_flops_per_second = 0;  // bf16: the measured GEMM peak, else the datasheet's
  bool measured = false;
  std::string source;      // "probe profile of NVIDIA H100 80GB HBM3" | "datasheet of ... (...)"
  std::string peak_label;  // "measured bf16 GEMM peak 803.1 TFLOP/s" | "datasheet bf16 peak ..."
};
sweep_ceilings resolve_sweep_ceilings(const std::optional<gpu_profile>& given,
                                      const std::string& device_name,
                                      double theoretical_dram_bytes_per_second = 0);

// The config members that name the ceilings (floor_bytes_per_second: the read ceiling, which
// carries a step's weights and KV reads; floor_ceiling, floor_source, write and copy ceilings,
// floor_rule, peak_bf16_flops_per_second, peak_source).
void put_ceilings(nlohmann::json& config, const sweep_ceilings& c);
// A measured row's floor columns from its counted bytes (weight_bytes + kv_read_bytes read,
// kv_write_bytes written) and its median step time: floor_seconds, pct_of_floor, floor_ceiling
// (the ceiling that carries most of its bytes) and pct_of_peak_flops.
void put_floor(nlohmann::json& row, const sweep_ceilings& c);
// A committed sweep document with its ceilings and floor columns derived again from its own counted
// bytes, FLOPs and medians against `c` (no measurement changes); config.floor_rederived says so
// with `note`. Throws std::invalid_argument when the document's GPU is not the ceilings' GPU.
nlohmann::json rederive_sweep_floor(nlohmann::json doc, const sweep_ceilings& c,
                                    const std::string& note);

// Runs the sweep; throws no_device_error without a GPU. Returns a ridgeline.sweep/v1 document.
nlohmann::json run_sweep(const sweep_options& o);

// Counted work of one step of `batch` sequences: decode (one new token each at `context` tokens
// of cache) or prefill (`context` new tokens each from position 0): step_work_of of decode_shape
// or prefill_shape (perfmodel/step_work.hpp has the counting rules), the block linears at the
// bytes of `weights` (the engine's packed sizes for fp8, int8 and int4).
step_work count_step_work(const model_preset& m, int batch, int context, bool prefill,
                          const planner::weight_layout& weights = {});

// The layout the engine stores a run's block linears in, for the count: format f (the engine's
// weight_format(), resolved against the checkpoint) in the engine's own layout (int4 group 128,
// int8 and fp8 per channel) for random weights and bf16 checkpoints quantized at load; a
// quantized checkpoint's stored layout otherwise: GGUF Q4_0 / Q8_0 in groups of 32, AWQ and GPTQ
// with their config's group_size (GPTQ's -1: one group per row), Hugging Face fp8 per channel.
planner::weight_layout engine_weight_layout(const std::string& checkpoint,
                                            planner::weight_format f);

// The step a sweep point times: `batch` sequences of random tokens, each decoding one token at
// `context` tokens of cache, or prefilling `context` tokens from position 0. Their blocks come
// from a KV cache manager of exactly the blocks the step needs, with the shuffled placement
// (kv_cache.hpp): block tables are scattered over the pool, not contiguous, so decode is not
// flattered. seqs point into the other members: keep the object alive (and unmoved) while seqs
// is used.
struct synthetic_step {
  std::optional<kv_cache_manager> kv;
  std::vector<std::vector<token_id>> tokens;
  std::vector<step_sequence> seqs;
  synthetic_step() = default;
  synthetic_step(const synthetic_step&) = delete;
  synthetic_step& operator=(const synthetic_step&) = delete;
};
// KV blocks one sequence of the step needs.
std::int64_t synthetic_step_blocks(int context, bool prefill, int block_tokens);
// Why such a step cannot run on an engine whose KV pool holds pool_blocks blocks (the context is
// beyond the model's limit, or the batch does not fit the pool); empty when it can.
std::string synthetic_step_skip_reason(const model_preset& m, int block_tokens,
                                       std::int64_t pool_blocks, int batch, int context,
                                       bool prefill);
// The placement's seed and the tokens come from rng.
void make_synthetic_step(synthetic_step& out, const model_preset& m, int block_tokens, int batch,
                         int context, bool prefill, std::mt19937& rng);

// Table and CSV of a sweep document.
std::string sweep_table(const nlohmann::json& doc);
std::string sweep_csv(const nlohmann::json& doc);

}  // namespace ridgeline::bench
