// Simulation: replays a workload through the scheduler and KV cache manager in simulated time,
// the steps run by the simulated executor (executor.hpp): each lasts what a step-time model
// says. Yields per-request TTFT, TPOT, E2E, every inter-token gap (ITL), and the cache's and the
// scheduler's counters.
//   simulation_config c;  c.kv = make_kv_cache_config(model, dtype::bf16, 16, 8192);
//   simulation_result r = simulate(w, c, roofline_step_time_model(model, gpu));
// Follow-up turns of chat sessions arrive think_seconds after their previous turn finished.
// Observers (live metrics, pacing) see every step and every request as it leaves.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/perfmodel/step_time_model.hpp"
#include "ridgeline/engine/workload.hpp"

namespace ridgeline {

// What an observer sees after each simulated step (valid during the call only).
struct simulation_step {
  const step_plan& plan;
  double step_seconds = 0;  // what the step-time model said
  double now_seconds = 0;   // simulated time at the end of the step
  const scheduler& sched;
  const kv_cache_manager& kv;
  std::span<const double> new_itl_seconds;  // inter-token gaps recorded by this step
};

struct simulation_config {
  kv_cache_config kv;
  scheduler_config scheduler;
  // The serving loop's overlap (docs/serving.md): while a decode-only step runs and nothing waits
  // for admission, the next decode step is planned and queued (scheduler::schedule_ahead), so a
  // request arriving during the step joins the step after the queued one. Off: every step is
  // planned when the previous one is back (kv, plan).
  bool overlap = false;
  // Called now and then with the fraction of requests done, in [0, 1].
  std::function<void(double)> progress;
  // Called after every step, and for every request when it leaves (finished or rejected).
  std::function<void(const simulation_step&)> on_step;
  std::function<void(const request_record&)> on_request;
};

struct simulation_result {
  std::vector<request_record> requests;  // in workload order
  std::vector<double> itl_seconds;       // every gap between consecutive tokens of a request
  kv_counters kv;
  scheduler_counters scheduling;  // preemptions
  std::int64_t steps = 0;
  double simulated_seconds = 0;              // last event time
  double busy_seconds = 0;                   // sum of step times
  std::int64_t prefill_tokens_computed = 0;  // including recompute
  std::int64_t decode_tokens = 0;
  std::int32_t peak_used_blocks = 0;
  std::int32_t peak_running = 0;
  std::int64_t finished = 0;
  std::int64_t rejected = 0;
  // What the prefix cache saved (hits) and what misses on blocks computed before cost
  // (prefix recompute and preemption recompute), from the model's prefill FLOPs and seconds.
  double flops_saved = 0;
  double seconds_saved = 0;
  double recompute_flops = 0;
  double recompute_seconds = 0;
};

simulation_result simulate(const workload& w, const simulation_config& c,
                           const step_time_model& model);

// Sets flops_saved, seconds_saved, recompute_flops and recompute_seconds of a result from its
// finished requests' records (simulate() calls it; a real run's records go through it too).
void account_cache_work(simulation_result& r, const step_time_model& model);

// Blocks that hold every token of every request at once: "unlimited" capacity for a workload.
std::int64_t unlimited_blocks(const workload& w, std::int32_t block_tokens);

}  // namespace ridgeline
