// build_step (see step_batch.hpp).
#include "ridgeline/engine/step_batch.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline {

host_step build_step(std::span<const step_sequence> seqs, int block_tokens, int vocab,
                     int min_blocks_per_seq) {
  if (seqs.empty()) throw std::invalid_argument("step: no sequences");
  host_step h;
  h.num_seqs = static_cast<int>(seqs.size());
  h.max_blocks_per_seq = min_blocks_per_seq;
  for (const auto& s : seqs) {
    const std::int64_t len = s.context_before + s.new_tokens;
    h.max_blocks_per_seq =
        std::max<int>(h.max_blocks_per_seq, static_cast<int>(blocks_for(len, block_tokens)));
  }
  h.q_offsets.push_back(0);
  h.prev_offsets.push_back(0);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const auto& s = seqs[i];
    const std::int64_t len = s.context_before + s.new_tokens;
    auto fail = [&](const std::string& why) {
      throw std::invalid_argument("step: sequence " + std::to_string(i) + ": " + why);
    };
    if (s.new_tokens <= 0) fail("no new tokens");
    if (s.input_sample >= 0 && s.new_tokens != 1) fail("an id from a sample, with more than one new token");
    if (s.input_sample >= 0 && s.samples && s.sampling.repetition_penalty != 1.0f) {
      fail("an id from a sample with a repetition penalty (the penalty reads every earlier id)");
    }
    if (len > static_cast<std::int64_t>(s.tokens.size())) fail("fewer tokens than context + new");
    if (static_cast<std::int64_t>(s.blocks.size()) * block_tokens < len) {
      fail("block table covers " + std::to_string(s.blocks.size() * block_tokens) +
           " tokens, needs " + std::to_string(len));
    }
    for (std::int64_t p = s.context_before; p < len; ++p) {
      token_id t = s.tokens[static_cast<std::size_t>(p)];
      if (s.input_sample >= 0) {
        h.input_rows.push_back(static_cast<std::int32_t>(h.ids.size()));
        h.input_samples.push_back(s.input_sample);
        t = 0;  // filled in by the executor
      }
      if (t < 0 || t >= vocab) {
        fail("token id " + std::to_string(t) + " at position " + std::to_string(p) +
             " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
      }
      h.ids.push_back(t);
      h.positions.push_back(static_cast<std::int32_t>(p));
      const block_id b = s.blocks[static_cast<std::size_t>(p / block_tokens)];
      h.slot_mapping.push_back(b * block_tokens + static_cast<std::int32_t>(p % block_tokens));
    }
    h.q_offsets.push_back(static_cast<std::int32_t>(h.ids.size()));
    h.seq_lens.push_back(static_cast<std::int32_t>(len));
    for (int j = 0; j < h.max_blocks_per_seq; ++j) {
      h.block_tables.push_back(j < static_cast<int>(s.blocks.size()) ? s.blocks[static_cast<std::size_t>(j)] : 0);
    }
    if (s.samples) {
      h.sample_rows.push_back(static_cast<std::int32_t>(h.ids.size()) - 1);
      h.sampling.push_back(s.sampling);
      if (s.sampling.repetition_penalty != 1.0f) {
        h.prev_tokens.insert(h.prev_tokens.end(), s.tokens.begin(),
                             s.tokens.begin() + static_cast<std::ptrdiff_t>(len));
      }
      h.prev_offsets.push_back(static_cast<std::int32_t>(h.prev_tokens.size()));
    }
  }
  h.num_tokens = static_cast<int>(h.ids.size());
  h.num_samples = static_cast<int>(h.sample_rows.size());
  return h;
}

step_inputs bind_step_inputs(const host_step& h, const step_arrays& a, int top_logprobs,
                             int split_tokens, bool prefill_kernel_only) {
  step_inputs in;
  in.num_tokens = h.num_tokens;
  in.num_seqs = h.num_seqs;
  in.ids = a.ids;
  in.positions = a.positions;
  in.slot_mapping = a.slot_mapping;
  in.q_offsets = a.q_offsets;
  in.seq_lens = a.seq_lens;
  in.block_tables = a.block_tables;
  in.max_blocks_per_seq = h.max_blocks_per_seq;
  in.split_tokens = split_tokens;
  in.prefill_kernel_only = prefill_kernel_only;
  in.num_samples = h.num_samples;
  in.sample_rows = a.sample_rows;
  in.sampling = a.sampling;
  in.prev_tokens = a.prev_tokens;
  in.prev_offsets = a.prev_offsets;
  in.out_tokens = a.out_tokens;
  in.out_logprobs = top_logprobs > 0 ? a.out_logprobs : nullptr;
  in.out_top_ids = top_logprobs > 0 ? a.out_top_ids : nullptr;
  in.top_logprobs = top_logprobs;
  in.out_sampled_logprobs = top_logprobs > 0 ? a.out_sampled_logprobs : nullptr;
  return in;
}

}  // namespace ridgeline
