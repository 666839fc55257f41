// Serving: requests arrive into the engine's one scheduler and KV cache manager, and every step
// the scheduler plans (mixed prefill chunks and decodes over ragged contexts) runs on an executor
// over the manager's block tables; the sampled tokens go back to the scheduler. The same loop
// serves a trace in real time (`ridgeline replay`, replay_workload below), a benchmark's batch
// or, later, an HTTP server. Any executor: cuda_engine on a GPU, cpu_engine on tiny shapes.
//   kv_cache_manager kv(make_kv_cache_config(model, dtype::bf16, 16, engine.num_kv_blocks()));
//   serving_loop loop(engine, kv, scheduler_config{}, steady_seconds);
//   loop.submit(serving_request{.id = 7, .arrival_seconds = t, .prompt = p, .max_tokens = 64});
//   while (loop.has_work()) loop.step();
//   loop.take_finished(records);  // finished, cancelled or rejected, each with its times
// Times are on the loop's clock (a function returning seconds). TTFT counts from a request's
// scheduled arrival, not from when it was submitted; the gap between the two (submission lag) is
// recorded per request. Single-threaded: submit, cancel and step from one thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/engine/workload.hpp"

namespace ridgeline {

// One generated token, as the streaming callback sees it.
struct token_event {
  std::uint64_t id = 0;   // the request's id
  token_id token = 0;
  std::int32_t index = 0;  // 0 for the first output token
  double seconds = 0;      // loop clock, when the step that sampled it ended
  // When the executor keeps top log-probabilities (built with top_logprobs = K > 0): the sampled
  // token's log-probability and the K most likely ids with theirs (descending logit), all
  // log_softmax of the raw logits (before penalty and temperature). Views into the step's
  // output, valid during the callback only; NaN and empty otherwise.
  float logprob = std::numeric_limits<float>::quiet_NaN();
  std::span<const std::int32_t> top_ids;  // [K]
  std::span<const float> top_logprobs;    // [K]
};

struct serving_request {
  std::uint64_t id = 0;  // unique among live requests
  double arrival_seconds = 0;  // scheduled arrival, loop clock: TTFT and E2E count from here
  std::vector<token_id> prompt;
  std::int32_t max_tokens = 1;
  std::vector<token_id> stop_tokens;  // finish on any of these (end-of-sequence included)
  sampling_row sampling;  // temperature, top-k, top-p, repetition penalty, seed (step: the loop's)
  std::function<void(const token_event&)> on_token;  // optional, called for every output token
};

// A request when it leaves: the scheduler's record plus what the loop measured.
struct serving_record {
  request_record record;
  double submitted_seconds = 0;  // when submit() was called
  double submit_lag_seconds() const { return submitted_seconds - record.arrival_seconds; }
};

// One step, as kept for every run (loop clock).
struct step_record {
  std::int64_t index = 0;
  double start_seconds = 0;  // before scheduling
  double end_seconds = 0;    // sampled tokens back on the host and handed to the scheduler
  double gpu_seconds = 0;    // the executor's forward time (CUDA events on the cuda executor)
  double host_seconds = 0;   // end - start - gpu: scheduling, input upload, output copy, waits
  double gap_seconds = -1;   // executor-measured idle before the step's first kernel, since the
                             // last one of the step before (-1: the executor does not measure it)
  std::int32_t sequences = 0;
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  std::int32_t samples = 0;
  std::int32_t running = 0, waiting = 0;  // after scheduling
  std::int32_t kv_used = 0, kv_cached = 0, kv_free = 0;  // blocks, after scheduling
  std::int64_t hit_tokens = 0;  // prompt tokens found cached by requests admitted this step
  std::int32_t admitted = 0, preemptions = 0;
  std::int32_t blocks_to_host = 0, blocks_to_gpu = 0;  // host-tier copies before the step
  double copy_seconds = 0;                             // their time (the executor's measure)
  bool graph = false;
  double flops = 0, bytes = 0;  // counted work of the step (perfmodel step_work_of)
};

class serving_loop {
 public:
  using clock = std::function<double()>;
  // `model` counts each step's FLOPs and bytes (step_work_of); the executor's KV pool must have
  // at least kv.pool().total() blocks. With a host tier (kv config host_blocks > 0) the manager
  // must record transfers and the executor hold at least that many host slots: the loop hands
  // it the manager's block copies before every step (throws std::invalid_argument otherwise).
  // `overlap`: while a decode-only step runs, plan the next one (the scheduler's schedule_ahead)
  // and launch it behind it, so the executor can start it without waiting for the host
  // (executor::launch / wait); the step's new token ids come from the running step's samples.
  serving_loop(executor& exec, kv_cache_manager& kv, const scheduler_config& config,
               const model_preset& model, clock now, bool overlap = false);

  // Queues the request (or rejects it at once: take_finished says why). Throws
  // std::invalid_argument when its id is already live.
  void submit(serving_request r);
  // Ends a live request, freeing its blocks: at once, or when the step in flight is back (then
  // the record's finish time is then); false when the id is not live.
  bool cancel(std::uint64_t id);
  bool has_work() const { return m_in_flight || m_sched.has_work(); }
  // Plans and runs one step when there is work, hands the tokens to the scheduler and to the
  // streaming callbacks; nullptr when there is nothing to run.
  const step_record* step();
  // Moves the records of requests that left since the last call into `out` (appends).
  void take_finished(std::vector<serving_record>& out);

  // Every step since the start (a replay keeps them all), or, after keep_last_steps(n), at least
  // the newest n and at most 2n (a server that runs for days keeps memory bounded).
  const std::vector<step_record>& steps() const { return m_steps; }
  void keep_last_steps(std::size_t n) { m_keep_steps = std::max<std::size_t>(n, 1); }
  const scheduler& sched() const { return m_sched; }
  const kv_cache_manager& kv() const { return m_kv; }
  std::int64_t live_requests() const { return static_cast<std::int64_t>(m_live.size()); }
  std::vector<std::uint64_t> live_ids() const;
  // Steps launched behind a running one (overlap).
  std::int64_t steps_planned_ahead() const { return m_planned_ahead; }

 private:
  struct live_request {
    request_handle handle = -1;
    double submitted = 0;
    sampling_row sampling;
    std::function<void(const token_event&)> on_token;
  };
  executor& m_exec;
  kv_cache_manager& m_kv;
  scheduler m_sched;
  const model_preset& m_model;
  clock m_now;
  std::unordered_map<std::uint64_t, live_request> m_live;
  std::vector<request_handle> m_handle_to_slot;  // unused handles hold -1
  std::vector<std::uint64_t> m_id_of_handle;
  void prepare(const step_plan& plan, std::int64_t hits_before, step_record& rec,
               std::vector<step_sequence>& seqs);
  bool may_plan_ahead() const;
  void apply_cancels();
  std::vector<step_sequence> m_seqs, m_ahead_seqs;
  std::vector<block_transfer> m_transfers;
  bool m_overlap = false;
  bool m_in_flight = false;  // a launched step not yet waited for (overlap: always after the first)
  step_record m_current;     // the in-flight step's record
  std::int64_t m_next_index = 0;
  std::int64_t m_planned_ahead = 0;
  std::vector<std::uint64_t> m_cancels;  // asked while a step was in flight
  std::vector<step_record> m_steps;
  std::size_t m_keep_steps = 0;  // 0: all
  std::vector<request_record> m_left;
};

// Real-time replay of a workload through a serving loop: each request is submitted when the clock
// reaches its arrival (arrival_seconds / rate_scale after the start; follow-up turns think_seconds
// after their previous turn finished), runs to its output length (the trace's; end-of-sequence
// is not a stop unless the config says so) and comes back as a record in workload order.
struct replay_options {
  double rate_scale = 1.0;     // arrivals at rate_scale times the trace's rate
  std::int32_t vocab = 0;      // > 0: prompt token t becomes t % vocab (workload ids lie in
                               // [0, 32000); a tiny model's vocabulary is smaller). Equal tokens
                               // stay equal, so shared prefixes stay shared
  sampling_row sampling;       // every request's sampling (seed: the request's output seed)
  std::vector<token_id> stop_tokens;
  // Called now and then with the fraction of requests done, in [0, 1], and after every step.
  std::function<void(double)> progress;
  std::function<void(const serving_loop&, const step_record&)> on_step;
  std::function<void(const serving_record&)> on_request;  // every request as it leaves
  // Cancels: request index -> seconds after its first token at which it is cancelled (tests and
  // fault runs); empty: none.
  std::unordered_map<std::size_t, double> cancel_after;
  // Waits until the given clock time (default: sleeps the thread); a test may advance a fake clock.
  std::function<void(double)> wait_until;
};

struct replay_result {
  std::vector<serving_record> requests;  // in workload order
  std::vector<step_record> steps;
  double start_seconds = 0, end_seconds = 0;
  std::int64_t finished = 0, rejected = 0, cancelled = 0;
  kv_counters kv;
  scheduler_counters scheduling;
  std::vector<double> itl_seconds;
  std::int32_t peak_running = 0, peak_used_blocks = 0;
};

replay_result replay_workload(const workload& w, serving_loop& loop, const replay_options& o,
                              const serving_loop::clock& now);

// Seconds on a monotonic clock (std::chrono::steady_clock), for serving loops in real time.
double steady_seconds();

}  // namespace ridgeline
