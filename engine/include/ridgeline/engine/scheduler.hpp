// Continuous-batching scheduler: FCFS admission, limits on running sequences and on tokens per
// step, chunked prefill, prefix-cache lookup at admission, preemption by recompute (youngest
// arrival first) when KV blocks run out. It plans steps for any executor (executor.hpp); today
// the simulator runs it with the simulated executor:
//   scheduler s(config, kv);
//   s.submit(id, arrival, prompt_tokens, max_output_tokens);
//   while (s.has_work()) {
//     const step_plan& p = s.schedule();      // what to compute this step
//     plan_sequences(p, s, kv, seqs);         // its sequences over the KV manager's tables
//     step_output out = exec.step(seqs);      // one token per entry with samples == true
//     s.complete(out.tokens, now_seconds);
//     s.take_finished(records);               // finished or rejected, each with its times
//   }
// A submitted request always comes back through take_finished: finished, cancelled (cancel(),
// its blocks freed at once), or rejected with a reason at submission (it could never run: longer
// than the whole cache, the context or, without chunked prefill, the token budget). Preempted
// requests return to the waiting queue and are recomputed; none is dropped.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"

namespace ridgeline {

struct scheduler_config {
  std::int32_t max_running = 256;          // sequences in the running batch
  std::int64_t max_batched_tokens = 8192;  // tokens computed per step, prefill + decode
  bool chunked_prefill = true;             // split prompts over steps to fit the token budget
  std::int64_t max_model_len = 0;          // prompt + output limit; 0 = no limit
  token_id eos_token = -1;                 // stop on this sampled token; -1 = only max tokens
  bool record_itl = true;                  // keep every inter-token gap (itl_seconds())
};
void validate(const scheduler_config& c);

enum class request_outcome { finished, rejected, cancelled };
std::string_view name(request_outcome o);

// One request's story, emitted once when it leaves the scheduler. Times in the caller's clock.
struct request_record {
  std::uint64_t id = 0;
  request_outcome outcome = request_outcome::finished;
  std::string reject_reason;  // empty unless rejected: one line saying why
  std::string reject_kind;    // empty_prompt, no_output, exceeds_context, exceeds_cache,
                              // exceeds_batch_tokens
  double arrival_seconds = 0;
  double first_token_seconds = 0;  // equal to arrival when rejected; 0 when cancelled before one
  double finish_seconds = 0;
  std::int64_t prompt_tokens = 0;
  std::int32_t output_tokens = 0;             // generated
  std::int64_t cached_tokens = 0;             // prompt tokens served from cache at first admission
  std::int64_t tier2_tokens = 0;              // of which from host memory
  std::int64_t prefix_recomputed_tokens = 0;  // missed prompt tokens whose blocks existed before
  std::int32_t preemptions = 0;
  std::int64_t preempted_tokens_recomputed = 0;
  // TTFT = first token - arrival; E2E = finish - arrival; TPOT = (E2E - TTFT) / (output - 1).
  double ttft_seconds() const { return first_token_seconds - arrival_seconds; }
  double e2e_seconds() const { return finish_seconds - arrival_seconds; }
  bool has_tpot() const { return outcome == request_outcome::finished && output_tokens > 1; }
  double tpot_seconds() const { return (e2e_seconds() - ttft_seconds()) / (output_tokens - 1); }
};

using request_handle = std::int32_t;

struct scheduled_sequence {
  request_handle request = -1;
  std::uint64_t id = 0;
  seq_id sequence = -1;
  std::int64_t context_before = 0;  // tokens whose KV was already there
  std::int32_t new_tokens = 0;      // tokens computed this step
  bool prefill = false;             // prompt (or recompute) tokens rather than one decode token
  bool samples = false;             // produces a token this step
  std::int32_t input_sample = -1;   // schedule_ahead: the new token's id is the previous step's
                                    // sample `input_sample` (not known when planned); else -1
};

// What the scheduler did over a run (the KV manager counts the cache's side: kv_counters).
struct scheduler_counters {
  std::int64_t preemptions = 0;                  // sequences preempted (freed for recompute)
  std::int64_t preempted_tokens_recomputed = 0;  // tokens computed again at resume, less hits
};

struct step_plan {
  std::vector<scheduled_sequence> sequences;
  step_shape shape;
  std::int32_t preemptions = 0;
  std::int32_t admitted = 0;
};

class scheduler {
 public:
  scheduler(const scheduler_config& config, kv_cache_manager& kv);

  // Queues a request (FCFS by arrival, then id) or rejects it at once (take_finished).
  // `stop_tokens`: this request also finishes when it samples one of them (besides the config's
  // eos_token and max_output_tokens).
  request_handle submit(std::uint64_t id, double arrival_seconds, std::vector<token_id> prompt,
                        std::int32_t max_output_tokens, std::vector<token_id> stop_tokens = {});
  // Ends a live request now (waiting or running): its blocks are freed and its record (outcome
  // cancelled, finish = now_seconds) goes to take_finished. Only between complete() and the next
  // schedule() (throws std::logic_error inside a step); false when h is not live.
  bool cancel(request_handle h, double now_seconds);
  bool live(request_handle h) const {
    return h >= 0 && h < std::ssize(m_requests) && m_requests[h].live;
  }
  // Plans the next step. An empty plan with has_work() means nothing can run (a bug: throws).
  const step_plan& schedule();
  // Plans the step after the one in flight (planned, not yet completed), for an executor that
  // runs them back to back: every request that samples in the current step and will not reach
  // its max tokens decodes its next token, whose id the current step is still computing
  // (scheduled_sequence::input_sample: its sample row in the current step). Only when the
  // current step is decode-only, nothing waits and every continuing request gets its slot
  // without preemption; nullptr (nothing changed) otherwise. complete() of the current step then
  // fills in those ids, and the planned step becomes the one in flight; a request that stops at
  // the current step (a stop token) finishes when the planned step completes, its token dropped.
  const step_plan* schedule_ahead();
  bool step_in_flight() const { return m_in_step; }
  // The request stopped in the step before the one in flight: that step's token for it is dropped.
  bool stopping(request_handle h) const { return m_requests[h].stop_after_ahead; }
  // Records the step's results: `sampled` holds one token per plan entry with samples == true, in
  // plan order; `now_seconds` is when the step ended (first and later token times).
  void complete(std::span<const token_id> sampled, double now_seconds);
  // Moves the records of requests that left since the last call into `out` (appends).
  void take_finished(std::vector<request_record>& out);

  bool has_work() const { return !m_running.empty() || !m_waiting.empty(); }
  std::int32_t num_running() const { return static_cast<std::int32_t>(m_running.size()); }
  std::int32_t num_waiting() const { return static_cast<std::int32_t>(m_waiting.size()); }
  // Prompt + generated tokens of a live request; generated count.
  std::span<const token_id> tokens(request_handle h) const { return m_requests[h].tokens; }
  std::int32_t generated(request_handle h) const { return m_requests[h].generated; }
  const std::vector<double>& itl_seconds() const { return m_itl; }
  const step_plan& last_plan() const { return m_plan; }
  const scheduler_config& config() const { return m_config; }
  std::int64_t steps() const { return m_steps; }
  const scheduler_counters& counters() const { return m_counters; }

 private:
  struct request_state {
    std::vector<token_id> tokens;  // prompt, then generated tokens
    std::int64_t prompt_tokens = 0;
    std::int32_t max_output = 0;
    std::int32_t generated = 0;
    std::vector<token_id> stop_tokens;
    bool pending = false;         // tokens.back() stands for the running step's sample, whose
                                  // id complete() writes
    bool stop_after_ahead = false;  // stopped while in the step planned ahead: finish after it
    std::int64_t computed = 0;      // tokens with KV in cache
    std::int64_t computed_max = 0;  // most ever computed (recompute accounting)
    seq_id sequence = -1;
    bool admitted_once = false;
    bool live = false;
    double last_token_seconds = 0;
    request_record record;
  };
  bool before(request_handle a, request_handle b) const;
  [[noreturn]] static void broken_ahead();
  void preempt(request_handle h);
  void finish(request_handle h, double now);
  void add_to_plan(request_handle h, std::int64_t context_before, std::int32_t n);

  scheduler_config m_config;
  kv_cache_manager& m_kv;
  std::vector<request_state> m_requests;
  std::vector<request_handle> m_free_handles;
  std::deque<request_handle> m_waiting;   // FCFS order
  std::vector<request_handle> m_running;  // arrival order; the back is the youngest
  std::vector<request_record> m_finished;
  std::vector<double> m_itl;
  step_plan m_plan;
  step_plan m_ahead;
  bool m_have_ahead = false;
  std::int64_t m_steps = 0;
  bool m_in_step = false;  // between schedule() and complete()
  scheduler_counters m_counters;
};

}  // namespace ridgeline
