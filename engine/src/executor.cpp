// plan_sequences, shape_of and the simulated executor (see executor.hpp).
#include "ridgeline/engine/executor.hpp"

#include <stdexcept>

#include "ridgeline/engine/workload.hpp"

namespace ridgeline {

void executor::launch(std::span<const step_sequence> seqs) { m_launched.push_back(step(seqs)); }

step_output executor::wait() {
  if (m_launched.empty()) throw std::logic_error("executor::wait with no step launched");
  step_output out = std::move(m_launched.front());
  m_launched.pop_front();
  return out;
}

void executor::copy_blocks(std::span<const block_transfer> transfers) {
  if (!transfers.empty()) {
    throw std::invalid_argument("this executor has no host KV tier; " +
                                std::to_string(transfers.size()) + " block copies asked for");
  }
}

void plan_sequences(const step_plan& plan, const scheduler& sched, const kv_cache_manager& kv,
                    std::vector<step_sequence>& out) {
  out.clear();
  out.reserve(plan.sequences.size());
  for (const scheduled_sequence& e : plan.sequences) {
    step_sequence q;
    q.tokens = sched.tokens(e.request);
    q.context_before = e.context_before;
    q.new_tokens = e.new_tokens;
    q.blocks = kv.block_table(e.sequence);
    q.samples = e.samples;
    q.prefill = e.prefill;
    q.input_sample = e.input_sample;
    out.push_back(q);
  }
}

step_shape shape_of(std::span<const step_sequence> seqs) {
  // The same sums in the same order as the scheduler's add_to_plan, so a plan's shape and the
  // shape of its sequences are bitwise equal.
  step_shape s;
  for (const step_sequence& q : seqs) {
    const std::int64_t n = q.new_tokens;
    const std::int64_t context_before = q.context_before;
    ++s.sequences;
    if (q.prefill || n != 1)
      s.prefill_tokens += n;
    else
      s.decode_tokens += n;
    if (q.samples) ++s.sampled_tokens;
    s.context_tokens += context_before;
    s.attention_pairs += static_cast<double>(n) *
                         (static_cast<double>(context_before) + (static_cast<double>(n) + 1) / 2);
  }
  return s;
}

step_output simulated_executor::step(std::span<const step_sequence> seqs) {
  if (seqs.empty()) throw std::invalid_argument("step: no sequences");
  step_shape shape = shape_of(seqs);
  shape.tier2_blocks_loaded = m_host_blocks;
  m_host_blocks = 0;
  step_output out;
  out.forward_seconds = m_model.step_seconds(shape);
  for (const step_sequence& q : seqs) {
    if (q.samples)
      out.tokens.push_back(
          segment_token(q.sampling.seed, static_cast<std::int64_t>(q.sampling.step)));
  }
  return out;
}

}  // namespace ridgeline
