// The executor interface: what runs one step of a batch. The scheduler plans a step, the KV cache
// manager owns the block tables, and an executor computes the step over those tables and returns
// the sampled tokens and how long the step took. Three implementations: cpu_engine (naive
// references, tiny shapes), cuda_engine (CUDA builds only) and simulated_executor (a step-time
// model; no numbers are computed). No CUDA types here.
//   kv_cache_manager kv(config);  scheduler sched(sc, kv);  simulated_executor exec(model);
//   std::vector<step_sequence> seqs;
//   const step_plan& p = sched.schedule();
//   plan_sequences(p, sched, kv, seqs);
//   step_output out = exec.step(seqs);
//   sched.complete(out.tokens, now += out.forward_seconds);
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"

namespace ridgeline {

// One step's results, in the order of the step's sampling sequences.
struct step_output {
  std::vector<token_id> tokens;       // [samples] one per sequence with samples == true
  std::vector<float> top_logprobs;    // [samples][top_logprobs] when the executor keeps them
  std::vector<std::int32_t> top_ids;  // [samples][top_logprobs]
  std::vector<float> sampled_logprobs;  // [samples] each sampled token's log-probability, when
                                        // the executor keeps top_logprobs (same definition)
  std::vector<float> logits;          // [samples][vocab] fp32, when the executor returns them
  double forward_seconds = 0;         // cuda: CUDA-event time of the forward pass; cpu: host
                                      // wall time; simulated: what the step-time model says
  bool graph = false;                 // replayed from a CUDA graph (cuda only)
  double copy_seconds = 0;            // host-tier block copies made before this step (copy_blocks
                                      // since the last step): CUDA-event time on the copy stream
                                      // (cuda), host wall time (cpu)
  double gap_seconds = -1;            // cuda: CUDA-event time from the end of the previous
                                      // step's forward pass to the start of this one (the GPU's
                                      // idle time between steps, input upload included); -1 on
                                      // the first step and on executors that do not measure it
};

class executor {
 public:
  virtual ~executor() = default;
  // One step over these sequences; their block tables index this executor's KV pool. Throws
  // std::invalid_argument on a malformed step (build_step's checks) and leaves the executor
  // usable.
  virtual step_output step(std::span<const step_sequence> seqs) = 0;
  // Asynchronous use: launch() starts a step (it has read `seqs` when it returns) and wait()
  // returns the oldest launched step's output; a step whose sequences take ids from samples
  // (step_sequence::input_sample) reads those of the step launched before it. At most two steps
  // in flight. The default runs the step inside launch().
  virtual void launch(std::span<const step_sequence> seqs);
  virtual step_output wait();
  // Makes the KV manager's block copies to and from its host tier (kv_cache.hpp), in order,
  // before the next step reads or overwrites those blocks. Executors without a host tier throw
  // std::invalid_argument when given any.
  virtual void copy_blocks(std::span<const block_transfer> transfers);
  // Host-tier slots this executor holds (0: none).
  virtual std::int32_t host_blocks() const { return 0; }

 private:
  std::deque<step_output> m_launched;  // the default launch/wait: outputs not yet waited for
};

// The sequences of a planned step, in plan order: each request's tokens from the scheduler and its
// block table from the KV manager (views: valid until the scheduler or the KV manager changes).
// Sampling rows are left at their defaults (greedy).
void plan_sequences(const step_plan& plan, const scheduler& sched, const kv_cache_manager& kv,
                    std::vector<step_sequence>& out);

// The shape a step-time model sees: a sequence counts as prefill when it computes several tokens
// or is marked prefill, else as one decode token. Of a plan's sequences this equals the plan's
// shape except tier2_blocks_loaded (the executor learns of those copies separately).
step_shape shape_of(std::span<const step_sequence> seqs);

// The simulated executor: computes nothing. A step lasts what the step-time model says for its
// shape (plus the host-tier copies announced before it), and a sampling sequence "samples"
// segment_token(sampling.seed, sampling.step) (the workload's deterministic output tokens).
class simulated_executor final : public executor {
 public:
  explicit simulated_executor(const step_time_model& model) : m_model(model) {}
  // Blocks the KV manager brings back from host memory before the next step: their transfer is
  // part of that step's time.
  void load_host_blocks(std::int32_t n) { m_host_blocks += n; }
  step_output step(std::span<const step_sequence> seqs) override;

 private:
  const step_time_model& m_model;
  std::int32_t m_host_blocks = 0;
};

}  // namespace ridgeline
