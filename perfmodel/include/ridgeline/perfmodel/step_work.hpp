// Step work: what one engine step computes and moves, counted from the model's shapes. This is the
// one definition of step FLOPs and bytes: the roofline and fitted step-time models, sweep's
// pct_of_floor and roofline's counted intensity and decode crossings all read it.
//   step_work w = step_work_of(model_preset_by_name("llama-2-7b"), decode_shape(64, 512));
//   w.flops / w.bytes();   // counted arithmetic intensity of that decode step
//
// Counting rules (docs/plan.md, "Step work"):
//   FLOPs   2 per block-linear parameter per token, 2 per LM-head parameter per sampled token,
//           and attention: 4 x layers x heads x head_dim per query-key pair (QK^T and PV).
//   weights the block linears once per step, at their stored bytes (weights.hpp's
//           block_weight_bytes: the engine's packed sizes for fp8, int8 and int4); the LM head
//           (16-bit in every format) once when the step samples a token.
//   KV      written: every new token's row. Read: every cached row the step's queries attend to,
//           plus the rows of the decode tokens, which the decode kernel reads back from the cache
//           after writing them. A decode step of b sequences at c cached tokens moves b(c + 2)
//           rows (b(c + 1) read, b written); a prefill of c tokens from position 0 writes c rows
//           and reads none (its attention reads the keys it just wrote, counted once, as written).
#pragma once

#include <cstdint>

#include "ridgeline/core/dtype.hpp"
#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/perfmodel/weights.hpp"

namespace ridgeline {

// What one step computes, summed over its sequences.
struct step_shape {
  std::int32_t sequences = 0;
  std::int64_t prefill_tokens = 0;  // prompt (or recomputed) tokens processed this step
  std::int64_t decode_tokens = 0;   // one per decoding sequence
  std::int32_t sampled_tokens = 0;  // sequences that produce a token (lm head runs for these)
  std::int64_t context_tokens = 0;  // KV tokens already in cache that the step's queries read
  // Sum over sequences of new_tokens * (context_before + (new_tokens + 1) / 2): query-key pairs
  // of causal attention, for the attention FLOPs.
  double attention_pairs = 0;
  std::int32_t tier2_blocks_loaded = 0;  // host -> GPU block copies before the step
};

// Adds one sequence's part of a step: `new_tokens` tokens after `context_before` cached ones,
// as prefill (prompt or recompute) or decode, sampling a token or not.
void add_sequence(step_shape& s, std::int64_t context_before, std::int64_t new_tokens, bool prefill,
                  bool samples);
// The steps a sweep times: `batch` sequences each decoding one token at `context` cached tokens,
// or each prefilling `context` tokens from position 0; every sequence samples once.
step_shape decode_shape(std::int64_t batch, std::int64_t context);
step_shape prefill_shape(std::int64_t batch, std::int64_t context);
// The work a prefix-cache hit of `tokens` tokens saves: one sequence prefilling them from
// position 0 without sampling (the request samples its next token whether it hit or not).
step_shape prefix_shape(std::int64_t tokens);

struct step_work {
  double flops = 0;            // block_flops + head_flops + attention_flops
  double block_flops = 0;      // linear layers of every block
  double head_flops = 0;       // LM head, for the sampled tokens
  double attention_flops = 0;  // QK^T and PV
  double weight_bytes = 0;     // block_weight_bytes + head_weight_bytes
  double block_weight_bytes = 0;
  double head_weight_bytes = 0;  // 0 when the step samples no token
  double kv_read_bytes = 0;
  double kv_write_bytes = 0;
  double kv_bytes() const { return kv_read_bytes + kv_write_bytes; }
  double bytes() const { return weight_bytes + kv_read_bytes + kv_write_bytes; }
};
// The counted work of a step (rules above). A step of no sequence does no work. `weights`: the
// block linears' format (a planner::weight_format converts: the engine's layout of it).
step_work step_work_of(const model_preset& m, const step_shape& s,
                       const planner::weight_layout& weights = {},
                       dtype kv_dtype = dtype::bf16);

// Seconds to copy the step's tier-2 blocks from host memory before it runs (not overlapped):
// blocks x block_tokens x KV bytes per token / PCIe bandwidth.
double tier2_load_seconds(const step_shape& s, std::int32_t block_tokens, double kv_bytes_per_token,
                          double pcie_bytes_per_second);

}  // namespace ridgeline
