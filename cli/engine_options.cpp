// The engine flags of `replay` and `serve` (see engine_options.hpp).
#include "engine_options.hpp"

#include <CLI/CLI.hpp>

#include "ridgeline/core/text.hpp"
#include "ridgeline/engine/quant_weights.hpp"

namespace ridgeline::cli {

void add_engine_options(CLI::App* cmd, replay::replay_options& o, std::string& host_memory) {
  auto& k = o.serving;
  cmd->add_option("--model", k.model, "Model preset")->capture_default_str();
  cmd->add_option("--checkpoint", o.checkpoint,
                  "safetensors file or folder, or a GGUF file, of --model's shape (default: random "
                  "weights)");
  cmd->add_option("--seed", o.seed, "Seed of the random weights")->capture_default_str();
  cmd->add_option("--block-size", k.block_tokens, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--kv-blocks", o.kv_blocks, "KV pool in blocks (default: the engine's memory plan)");
  cmd->add_option("--memory-fraction", o.memory_fraction,
                  "Fraction of free GPU memory for the engine (default: the engine's)");
  cmd->add_option("--max-running", k.max_running, "Max running sequences")->capture_default_str();
  cmd->add_option("--max-batched-tokens", k.max_batched_tokens, "Max tokens per step")
      ->capture_default_str();
  cmd->add_option("--max-model-len", k.max_model_len,
                  "Reject prompt + output above this (default: the model's context)");
  cmd->add_option("--gemm-candidates", o.gemm_candidates,
                  "cuBLASLt candidates timed per new token count (1: the heuristic's first)")
      ->capture_default_str();
  cmd->add_option("--host-memory", host_memory,
                  "Host KV tier in pinned memory (e.g. 16GiB): evicted prefix blocks are copied "
                  "there over PCIe and loaded back on a hit");
  cmd->add_flag("--deterministic", o.deterministic, "Batch-invariant mode (docs/diverge.md)");
  cmd->add_flag("!--no-cuda-graphs", o.cuda_graphs, "Launch decode steps eagerly");
  cmd->add_flag("--cpu", o.cpu, "The cpu executor on the tiny model even with a GPU");
  cmd->add_flag("--overlap,!--no-overlap", o.overlap,
                "Plan and queue the next decode step while one runs, host work off the GPU's path "
                "(default; --no-overlap: one step at a time)");
}

void apply_host_memory(replay::replay_options& o, const std::string& host_memory) {
  o.serving.host_memory_bytes = host_memory.empty() || host_memory == "0"
                                    ? 0
                                    : static_cast<std::int64_t>(parse_bytes(host_memory));
}

void add_weights_option(CLI::App* cmd, std::string& weights) {
  cmd->add_option("--weights", weights,
                  "Weight format of each layer's linears: bf16, fp8 (e4m3, per channel), int8 or "
                  "int4 (weight-only, group 128). Default: bf16, or a quantized checkpoint's own "
                  "format; random weights are quantized from the seeded bf16 ones")
      ->check(CLI::IsMember({"bf16", "fp8", "int8", "int4"}));
}

std::optional<planner::weight_format> engine_weights_of(const std::string& weights) {
  if (weights.empty()) return std::nullopt;
  return parse_engine_weights(weights);
}

}  // namespace ridgeline::cli
