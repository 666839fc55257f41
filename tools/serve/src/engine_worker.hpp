// The engine thread of `ridgeline serve`: owns the executor, the KV cache manager and the serving
// loop; takes requests and cancels from other threads through a locked inbox, runs steps while
// there is work (sleeps on a condition variable when there is none), and hands every sampled token
// and every request that left back through a locked outbox, calling `wake` after each step that
// produced events (the HTTP thread's libevent notification). The serving loop itself stays
// single-threaded: only this thread touches it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ridgeline/engine/serving.hpp"
#include "ridgeline/replay/replay.hpp"

namespace ridgeline::metrics {
class live_metrics;
}

namespace ridgeline::serve {

struct engine_event {
  std::uint64_t id = 0;
  bool left = false;  // false: one token; true: the request left (record set)
  token_id token = 0;
  double seconds = 0;  // steady_seconds() when the step that sampled the token ended
  // A request submitted with logprobs >= 0: the token's log-probability and its first `logprobs`
  // alternatives (id, log-probability), most likely first (token_event's values).
  float logprob = 0;
  std::vector<std::pair<token_id, float>> top;
  serving_record record;
};

// What the HTTP side may read at any time (relaxed atomics, refreshed after every step).
struct engine_gauges {
  std::atomic<std::int32_t> running{0}, waiting{0}, kv_used{0}, kv_cached{0}, kv_free{0};
  std::atomic<std::int64_t> steps{0};
};

class engine_worker {
 public:
  engine_worker(replay::replay_executor ex, const kv_cache_config& kvc,
                const scheduler_config& sc, bool overlap, metrics::live_metrics* live,
                std::function<void()> wake, bool log_steps = false);
  ~engine_worker();  // stops the thread; live requests are cancelled first
  engine_worker(const engine_worker&) = delete;
  engine_worker& operator=(const engine_worker&) = delete;

  // arrival_seconds: steady_seconds() at the HTTP side. logprobs >= 0: its token events carry
  // the sampled token's log-probability and that many alternatives (at most the executor's
  // top_logprobs); -1: none.
  void submit(serving_request r, std::int32_t logprobs = -1);
  void cancel(std::uint64_t id);
  void take(std::vector<engine_event>& out);  // appends what came since the last call
  // Cancels what is live, runs until it has left (its events published) and joins the thread.
  // Idempotent; take() still works after it.
  void stop();
  const engine_gauges& gauges() const { return m_gauges; }
  // Set when a step threw (the message); the engine then ends every request and takes no more.
  std::string failure() const;
  const model_preset& model() const { return *m_exec.model; }
  const replay::replay_executor& executor_info() const { return m_exec; }
  // Every step's record since the start when built with log_steps (serve --record); read it
  // after stop() only: the engine thread appends to it until then.
  const std::vector<step_record>& step_log() const { return m_step_log; }

 private:
  void run();
  void publish(std::vector<engine_event>& events);
  replay::replay_executor m_exec;
  kv_cache_manager m_kv;
  serving_loop m_loop;
  metrics::live_metrics* m_live;
  std::function<void()> m_wake;
  engine_gauges m_gauges;
  bool m_log_steps = false;
  std::vector<step_record> m_step_log;

  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  struct submission {
    serving_request request;
    std::int32_t logprobs = -1;
  };
  std::vector<submission> m_inbox;
  std::vector<std::uint64_t> m_cancels;
  std::vector<engine_event> m_outbox;
  std::string m_failure;
  bool m_stop = false;
  std::thread m_thread;  // last: starts after everything above exists
};

}  // namespace ridgeline::serve
