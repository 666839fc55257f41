// The engine thread of `ridgeline serve` (see engine_worker.hpp).
#include "engine_worker.hpp"

#include <algorithm>
#include <exception>

#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::serve {

engine_worker::engine_worker(replay::replay_executor ex, const kv_cache_config& kvc,
                             const scheduler_config& sc, bool overlap,
                             metrics::live_metrics* live, std::function<void()> wake,
                             bool log_steps)
    : m_exec(std::move(ex)),
      m_kv(kvc),
      m_loop(*m_exec.exec, m_kv, sc, *m_exec.model, steady_seconds, overlap),
      m_live(live),
      m_wake(std::move(wake)),
      m_log_steps(log_steps) {
  m_loop.keep_last_steps(64);
  m_thread = std::thread([this] { run(); });
}

engine_worker::~engine_worker() { stop(); }

void engine_worker::stop() {
  {
    std::lock_guard lk(m_mutex);
    m_stop = true;
  }
  m_cv.notify_one();
  if (m_thread.joinable()) m_thread.join();
}

void engine_worker::submit(serving_request r, std::int32_t logprobs) {
  {
    std::lock_guard lk(m_mutex);
    m_inbox.push_back({std::move(r), logprobs});
  }
  m_cv.notify_one();
}

void engine_worker::cancel(std::uint64_t id) {
  {
    std::lock_guard lk(m_mutex);
    m_cancels.push_back(id);
  }
  m_cv.notify_one();
}

void engine_worker::take(std::vector<engine_event>& out) {
  std::lock_guard lk(m_mutex);
  if (out.empty()) {
    out.swap(m_outbox);
  } else {
    out.insert(out.end(), std::make_move_iterator(m_outbox.begin()),
               std::make_move_iterator(m_outbox.end()));
    m_outbox.clear();
  }
}

std::string engine_worker::failure() const {
  std::lock_guard lk(m_mutex);
  return m_failure;
}

void engine_worker::publish(std::vector<engine_event>& events) {
  if (events.empty()) return;
  {
    std::lock_guard lk(m_mutex);
    if (m_outbox.empty()) {
      m_outbox.swap(events);
    } else {
      m_outbox.insert(m_outbox.end(), std::make_move_iterator(events.begin()),
                      std::make_move_iterator(events.end()));
    }
  }
  events.clear();
  if (m_wake) m_wake();
}

void engine_worker::run() {
  std::vector<submission> submits;
  std::vector<std::uint64_t> cancels;
  std::vector<engine_event> events;  // this thread's, published after each step
  std::vector<serving_record> left;
  bool failed = false;
  for (;;) {
    {
      std::unique_lock lk(m_mutex);
      m_cv.wait(lk, [&] {
        return m_stop || !m_inbox.empty() || !m_cancels.empty() || (!failed && m_loop.has_work());
      });
      if (m_stop) break;
      submits.swap(m_inbox);
      cancels.swap(m_cancels);
    }
    for (auto& [r, logprobs] : submits) {
      if (failed) {
        // The engine is down: the request leaves at once, cancelled (the HTTP side answers 503).
        engine_event e;
        e.id = r.id;
        e.left = true;
        e.record.record.id = r.id;
        e.record.record.outcome = request_outcome::cancelled;
        events.push_back(std::move(e));
        continue;
      }
      r.on_token = [&events, top = logprobs](const token_event& t) {
        engine_event e;
        e.id = t.id;
        e.token = t.token;
        e.seconds = t.seconds;
        if (top >= 0) {
          e.logprob = t.logprob;
          const std::size_t n = std::min(static_cast<std::size_t>(top), t.top_ids.size());
          e.top.reserve(n);
          for (std::size_t j = 0; j < n; ++j) {
            if (t.top_ids[j] >= 0) e.top.emplace_back(t.top_ids[j], t.top_logprobs[j]);
          }
        }
        events.push_back(std::move(e));
      };
      m_loop.submit(std::move(r));
    }
    submits.clear();
    for (std::uint64_t id : cancels) m_loop.cancel(id);
    cancels.clear();
    if (!failed && m_loop.has_work()) {
      try {
        const step_record* rec = m_loop.step();
        if (rec != nullptr) {
          if (m_log_steps) m_step_log.push_back(*rec);
          if (m_live != nullptr) replay::observe_step(*m_live, m_loop, *rec);
          m_gauges.running.store(rec->running, std::memory_order_relaxed);
          m_gauges.waiting.store(rec->waiting, std::memory_order_relaxed);
          m_gauges.kv_used.store(rec->kv_used, std::memory_order_relaxed);
          m_gauges.kv_cached.store(rec->kv_cached, std::memory_order_relaxed);
          m_gauges.kv_free.store(rec->kv_free, std::memory_order_relaxed);
          m_gauges.steps.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (const std::exception& ex) {
        // A step that throws leaves the executor's state unknown: every live request is ended
        // (cancelled: its client gets a server error) and the engine takes no more work.
        {
          std::lock_guard lk(m_mutex);
          m_failure = ex.what();
        }
        failed = true;
        for (std::uint64_t id : m_loop.live_ids()) {
          engine_event e;
          e.id = id;
          e.left = true;
          e.record.record.id = id;
          e.record.record.outcome = request_outcome::cancelled;
          events.push_back(std::move(e));
        }
      }
    }
    if (!failed) m_loop.take_finished(left);
    for (auto& q : left) {
      if (m_live != nullptr) replay::observe_request(*m_live, q);
      engine_event e;
      e.id = q.record.id;
      e.left = true;
      e.record = std::move(q);
      events.push_back(std::move(e));
    }
    left.clear();
    if (!failed && !m_loop.has_work()) {
      // Idle: cancels and finishes freed blocks after the last step's gauges.
      const auto& pool = m_kv.pool();
      m_gauges.running.store(0, std::memory_order_relaxed);
      m_gauges.waiting.store(0, std::memory_order_relaxed);
      m_gauges.kv_used.store(pool.num_used(), std::memory_order_relaxed);
      m_gauges.kv_cached.store(pool.num_cached(), std::memory_order_relaxed);
      m_gauges.kv_free.store(pool.num_free(), std::memory_order_relaxed);
      if (m_live != nullptr) {
        const auto& k = m_kv.counters();
        m_live->set_queue(0, 0);
        m_live->set_kv({pool.num_used(), pool.num_cached(), pool.num_free(), k.lookup_tokens,
                        k.hit_tokens_tier1 + k.hit_tokens_tier2, k.evictions_tier1,
                        m_loop.sched().counters().preemptions});
      }
    }
    publish(events);
  }
  if (failed) return;
  // Stopping: whatever is live is cancelled and reported, so no client waits forever.
  for (std::uint64_t id : m_loop.live_ids()) m_loop.cancel(id);
  while (m_loop.has_work()) {
    try {
      m_loop.step();
    } catch (const std::exception&) {
      break;
    }
  }
  m_loop.take_finished(left);
  for (auto& q : left) {
    engine_event e;
    e.id = q.record.id;
    e.left = true;
    e.record = std::move(q);
    events.push_back(std::move(e));
  }
  publish(events);
}

}  // namespace ridgeline::serve
