// The CUDA executor: a Llama-family decoder on one GPU (decoder_forward over the CUDA launchers),
// its weights (seeded random, scaled so activations stay finite) and paged KV pool, ragged batches
// of sequences at different lengths, decode steps captured as CUDA graphs per (batch, table width),
// weights seeded random or read from a safetensors checkpoint, per-step timing with CUDA events.
// The block linears may be stored quantized (engine_options::weights: fp8, int8, int4;
// quant_weights.hpp), run by the quantized GEMV for decode-sized steps and dequantized into bf16
// scratch for prefill-sized ones (cuda::linear_runner::run_quant).
// No CUDA types here (pimpl). It is built only in CUDA builds (the ridgeline_engine_cuda
// library); a build without CUDA has no cuda executor, and the commands that need one link their
// *_nocuda.cpp twin instead, which throws no_device_error. The constructor throws
// no_device_error when the machine has no GPU.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/engine/quant_weights.hpp"
#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline {

struct engine_options {
  int block_tokens = 16;
  int max_tokens = 8192;     // tokens per step (prefill chunk budget)
  int max_seqs = 256;        // sequences per step
  int num_kv_blocks = 0;     // 0: as many as fit in memory_fraction of free memory
  double memory_fraction = k_default_memory_fraction;  // perfmodel/memory_model.hpp
  bool cuda_graphs = true;   // decode steps replayed as graphs
  bool pdl = true;           // programmatic dependent launch (Hopper+): each kernel of a step may
                             // be scheduled while the one before finishes
  int split_tokens = 0;      // attention split size (0: launcher's choice, or
                             // k_batch_invariant_split_tokens when batch_invariant)
  int graph_table_blocks = 0;  // > 1: decode graphs keyed by the block-table width rounded up to
                               // a multiple of this (serving: contexts grow every step, a few
                               // graphs per batch size); 0 or 1: the exact width (sweeps)
  int gemm_candidates = 32;   // cuBLASLt heuristic candidates timed per linear-layer shape
  std::string gemm = "auto";  // linear layers above one token: "auto" (the runner's choice by
                              // token count and device), "cublas" or "skinny" (the tensor-core
                              // weight-streaming GEMM, up to 64 tokens, compute capability 9.0)
  bool batch_invariant = false;  // deterministic mode: a sequence's logits are bitwise the same
                                 // whatever else is in the batch and however its positions were
                                 // scheduled (every GEMM through one fixed cuBLASLt algorithm per
                                 // weight matrix without split-K; attention through the prefill
                                 // kernel for every step, so decode, chunked prefill and recompute
                                 // after preemption give the same bits; docs/diverge.md)
  std::uint64_t seed = 1;    // random weights
  std::string checkpoint;    // safetensors file or folder (checkpoint.hpp); empty: random weights
  // How each layer's four linears are stored and run: bf16, fp8 (e4m3, per output channel), int8
  // (weight-only, per channel) or int4 (weight-only, group 128); the embedding, norms and LM head
  // stay bf16. Unset: a quantized checkpoint's own format, else bf16 (resolve_weight_format in
  // quant_weights.hpp has the load rules). Random weights in a quantized format are the seeded
  // bf16 weights quantized on the host at load (round to nearest).
  std::optional<planner::weight_format> weights;
  int host_kv_blocks = 0;    // host tier: pinned host slots for the KV manager's block copies
                             // (copy_blocks), each holding one block of every layer
  int top_logprobs = 0;      // per sampled token (fingerprints, serve --max-logprobs), with
                             // each sampled token's own log-probability
  bool return_logits = false;  // copy each step's fp32 logits to the host (tests, audits)
  int device = 0;
};

inline constexpr int k_batch_invariant_split_tokens = 64;
// The options as the engine runs them (batch_invariant fills in the fixed split size).
engine_options effective_options(engine_options o);

// What the engine will allocate, checked against free memory before anything is allocated.
struct engine_memory_plan {
  // weight_bytes: what the engine uploads (packed tensors at their exact size); scratch_bytes
  // includes dequant_scratch_bytes.
  std::int64_t weight_bytes = 0, scratch_bytes = 0, kv_bytes = 0, free_bytes = 0;
  planner::weight_format weights = planner::weight_format::bf16;  // the block linears' format
  std::int64_t dequant_scratch_bytes = 0;  // one packed layer as bf16 (the prefill path); 0: none
  std::int64_t attention_workspace_bytes = 0;  // part of scratch: split attention's, the largest
                                               // any decode step of the engine's limits needs
  int kv_blocks = 0;
  std::int64_t kv_bytes_per_block = 0;
};
// planner::plan_memory from free memory with the launcher's exact attention workspace. Throws
// std::invalid_argument (the plan's why_not: "weights alone need 12.6 GiB; ...") when the
// weights, scratch and at least one KV block (num_kv_blocks when set) do not fit.
// The weights: o.weights (unset: bf16) applied to every block linear of m (uniform_storage), at
// their exact packed size. The planner (perfmodel) is asked with that format, so its per-parameter
// bytes decide first; the difference to the exact bytes and the dequantize scratch (one packed
// layer as bf16, when a step may take the dequantize path: max_tokens above
// k_quant_sliced_max_tokens, or batch-invariant mode) then come off the KV budget.
engine_memory_plan plan_engine_memory(const model_preset& m, const engine_options& o,
                                      std::int64_t free_bytes);
// The same for weights stored per tensor as `storage` says (a quantized checkpoint; one entry per
// tensor of weight_tensors(m)), in format f (the planner's per-parameter bytes).
engine_memory_plan plan_engine_memory(const model_preset& m, const engine_options& o,
                                      std::int64_t free_bytes, planner::weight_format f,
                                      std::span<const tensor_storage> storage);
// Whether an engine with these options can ever take the dequantize path (and so needs its
// scratch): max_tokens above k_quant_sliced_max_tokens (256), or batch-invariant mode.
bool engine_may_dequantize(const engine_options& o);

class cuda_engine final : public executor {
 public:
  cuda_engine(const model_preset& m, const engine_options& o);
  // With a decoder configuration of its own (a checkpoint's rope and norm settings); its
  // block_tokens must equal o.block_tokens. Weights: o.checkpoint, else seeded random.
  cuda_engine(const decoder_config& c, const engine_options& o);
  ~cuda_engine();
  cuda_engine(const cuda_engine&) = delete;
  cuda_engine& operator=(const cuda_engine&) = delete;

  const decoder_config& config() const;
  const engine_memory_plan& memory() const;
  int num_kv_blocks() const;

  // One step over these sequences (their blocks index this engine's KV pool): sampled tokens,
  // top-k when engine_options::top_logprobs, fp32 logits when return_logits, the CUDA-event time
  // of the forward pass and whether a graph replayed it.
  step_output step(std::span<const step_sequence> seqs) override;
  // Asynchronous steps (executor.hpp): launch() uploads the step's inputs from one of two pinned
  // staging slots and enqueues its forward pass and token copy-back without waiting for the GPU;
  // wait() returns the oldest launched step. A step whose sequences take ids from the previous
  // step's samples (step_sequence::input_sample) gets them on the GPU (scatter_tokens), so it can
  // be queued behind the running step. With top_logprobs or return_logits, launch() waits for
  // the step. step() = launch() + wait().
  void launch(std::span<const step_sequence> seqs) override;
  step_output wait() override;
  // Uploads the step's inputs and runs its forward pass only (graph when enabled and all decode;
  // the first call of a shape captures it), returning the CUDA-event time. For benchmarks: the KV
  // of the new tokens is rewritten in place, so repeating the same step measures the same work.
  double timed_step(std::span<const step_sequence> seqs);
  // Enqueues the block copies on the engine's copy stream (pinned host slots, PCIe), ordered
  // after the last step's forward pass and before the next one's. Throws std::invalid_argument on
  // a block or slot outside the pools.
  void copy_blocks(std::span<const block_transfer> transfers) override;
  std::int32_t host_blocks() const override;

  // Decode steps replayed from CUDA graphs or launched eagerly from now on (per-kernel traces and
  // kernel-replay counters need eager launches).
  void set_cuda_graphs(bool on);
  // Programmatic dependent launch between the step's kernels from now on. Off, each kernel starts
  // after the one before has finished, so a kernel trace times each alone (a PDL kernel's span
  // includes its wait for the one before).
  void set_pdl(bool on);

  // Fills the whole KV pool with random values (benchmarks of decode at a context length).
  void fill_kv_random(std::uint64_t seed);
  // Replaces the weights: every tensor of weight_tensors(), in order, concatenated (a checkpoint
  // from load_checkpoint_weights, or random_weights()). Throws std::invalid_argument on a size
  // mismatch. Tensors the engine stores packed are quantized from these values on the host
  // (quant_weights.hpp's pack_bf16_tensor), in the format they were built with.
  void load_weights(std::span<const bf16_bits> weights);
  // Copies every weight tensor, in weight_tensors() order, to the host (tests); a packed tensor
  // as bf16 through the GPU dequantizer (the weights the prefill path runs).
  std::vector<bf16_bits> download_weights() const;
  // The format the block linears run in (engine_options::weights resolved against the
  // checkpoint) and how many of them are packed (a GGUF file may keep some in bf16).
  planner::weight_format weight_format() const;
  int packed_tensors() const;
  // Copies the KV pool of every layer to the host (tests).
  std::vector<bf16_bits> download_kv() const;

 private:
  struct impl;
  std::unique_ptr<impl> m;
};

}  // namespace ridgeline
