// Turns the sequences of one step (a scheduler's plan, or a benchmark's batch built through the KV
// cache manager) into the flat arrays the decoder's kernels read: token ids and positions of the
// ragged batch, KV slots, per-sequence query offsets, context lengths and block tables, and the
// rows to sample.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ridgeline/engine/decoder.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/kernels/ops.hpp"

namespace ridgeline {

struct step_sequence {
  std::span<const token_id> tokens;  // the sequence so far (prompt + generated)
  std::int64_t context_before = 0;   // tokens whose KV is already cached
  std::int32_t new_tokens = 0;       // tokens computed this step: tokens[context_before, +new)
  std::span<const block_id> blocks;  // block table covering context_before + new_tokens
  bool samples = false;              // the last new token's logits produce a token
  sampling_row sampling;
  bool prefill = false;  // prompt (or recompute) tokens, even when only one (several new tokens
                         // are prefill anyway). Executors that compute ignore it; step-time
                         // models count it (shape_of in executor.hpp)
  std::int32_t input_sample = -1;  // >= 0: one new token whose id is the executor's previous
                                   // step's sample row `input_sample` (a step launched before
                                   // that one's tokens were back); tokens[context_before] is
                                   // not read then
};

struct host_step {
  int num_tokens = 0, num_seqs = 0, max_blocks_per_seq = 0, num_samples = 0;
  std::vector<std::int32_t> ids, positions, slot_mapping, q_offsets, seq_lens, block_tables;
  std::vector<std::int32_t> sample_rows, prev_tokens, prev_offsets;
  // Token rows whose ids come from the previous step's samples: ids[input_rows[i]] =
  // previous sample input_samples[i] (the executor fills them in before the forward pass).
  std::vector<std::int32_t> input_rows, input_samples;
  std::vector<sampling_row> sampling;
};

// Validates (token ids in [0, vocab), block tables long enough, nothing empty) and throws
// std::invalid_argument naming the sequence. min_blocks_per_seq pads the table width (so CUDA
// graphs captured for a width can be replayed); the table is padded with block 0.
host_step build_step(std::span<const step_sequence> seqs, int block_tokens, int vocab,
                     int min_blocks_per_seq = 0);

// Where a step's arrays live in the backend's memory: the host_step's own vectors (cpu), or the
// engine's fixed device arrays the host_step was uploaded to (cuda). Outputs: [num_samples]
// tokens, [num_samples][top_logprobs] log-probabilities and ids, [num_samples] the sampled
// tokens' log-probabilities.
struct step_arrays {
  const std::int32_t *ids, *positions, *slot_mapping, *q_offsets, *seq_lens, *block_tables;
  const std::int32_t *sample_rows, *prev_tokens, *prev_offsets;
  const sampling_row* sampling;
  std::int32_t* out_tokens;
  float* out_logprobs;
  std::int32_t* out_top_ids;
  float* out_sampled_logprobs;
};
// The decoder's inputs for step h over those arrays; the top-k outputs only when top_logprobs > 0.
step_inputs bind_step_inputs(const host_step& h, const step_arrays& a, int top_logprobs,
                             int split_tokens, bool prefill_kernel_only = false);

}  // namespace ridgeline
