// Continuous-batching scheduler (see scheduler.hpp).
#include "ridgeline/engine/scheduler.hpp"

#include <algorithm>
#include <stdexcept>

#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline {

void validate(const scheduler_config& c) {
  if (c.max_running < 1) {
    throw std::invalid_argument("max running sequences must be at least 1, got " +
                                std::to_string(c.max_running));
  }
  if (c.max_batched_tokens < 1) {
    throw std::invalid_argument("max batched tokens must be at least 1, got " +
                                std::to_string(c.max_batched_tokens));
  }
  if (c.max_model_len < 0) throw std::invalid_argument("max model length must not be negative");
}

std::string_view name(request_outcome o) {
  switch (o) {
    case request_outcome::finished: return "finished";
    case request_outcome::rejected: return "rejected";
    case request_outcome::cancelled: return "cancelled";
  }
  return "unknown";
}

scheduler::scheduler(const scheduler_config& config, kv_cache_manager& kv)
    : m_config(config), m_kv(kv) {
  validate(config);
}

bool scheduler::before(request_handle a, request_handle b) const {
  const auto& x = m_requests[a].record;
  const auto& y = m_requests[b].record;
  if (x.arrival_seconds != y.arrival_seconds) return x.arrival_seconds < y.arrival_seconds;
  return x.id < y.id;
}

request_handle scheduler::submit(std::uint64_t id, double arrival_seconds,
                                 std::vector<token_id> prompt, std::int32_t max_output_tokens,
                                 std::vector<token_id> stop_tokens) {
  request_handle h;
  if (!m_free_handles.empty()) {
    h = m_free_handles.back();
    m_free_handles.pop_back();
  } else {
    h = static_cast<request_handle>(m_requests.size());
    m_requests.emplace_back();
  }
  auto& r = m_requests[h];
  r = request_state{};
  r.prompt_tokens = std::ssize(prompt);
  r.tokens = std::move(prompt);
  r.max_output = max_output_tokens;
  r.stop_tokens = std::move(stop_tokens);
  r.live = true;
  r.record.id = id;
  r.record.arrival_seconds = arrival_seconds;
  r.record.prompt_tokens = r.prompt_tokens;

  // Requests that could never run are rejected now, with the reason.
  const std::int64_t bs = m_kv.config().block_tokens;
  const std::int64_t total = r.prompt_tokens + std::max(max_output_tokens, 0);
  std::string reason, kind;
  if (r.prompt_tokens < 1) {
    kind = "empty_prompt";
    reason = "empty prompt";
  } else if (max_output_tokens < 1) {
    kind = "no_output";
    reason = "max output tokens " + std::to_string(max_output_tokens) + " < 1";
  } else if (m_config.max_model_len > 0 && total > m_config.max_model_len) {
    kind = "exceeds_context";
    reason = "prompt + output = " + std::to_string(total) + " tokens exceeds the context of " +
             std::to_string(m_config.max_model_len);
  } else if ((total - 1 + bs - 1) / bs > m_kv.pool().total()) {
    // The final token is sampled, never stored: prompt + output - 1 tokens need KV.
    kind = "exceeds_cache";
    reason = "prompt + output = " + std::to_string(total) + " tokens exceeds the whole KV cache (" +
             std::to_string(m_kv.pool().total()) + " blocks of " + std::to_string(bs) + ")";
  } else if (!m_config.chunked_prefill && r.prompt_tokens > m_config.max_batched_tokens) {
    kind = "exceeds_batch_tokens";
    reason = "prompt of " + std::to_string(r.prompt_tokens) +
             " tokens exceeds max batched tokens " + std::to_string(m_config.max_batched_tokens) +
             " without chunked prefill";
  }
  if (!reason.empty()) {
    r.record.outcome = request_outcome::rejected;
    r.record.reject_reason = std::move(reason);
    r.record.reject_kind = std::move(kind);
    r.record.first_token_seconds = r.record.finish_seconds = arrival_seconds;
    m_finished.push_back(std::move(r.record));
    r.live = false;
    r.tokens = {};
    m_free_handles.push_back(h);
    return h;
  }
  r.tokens.reserve(static_cast<std::size_t>(total));
  // FCFS: after every waiting request that arrived no later (preempted ones sit at the front).
  auto at = m_waiting.end();
  while (at != m_waiting.begin() && before(h, *(at - 1))) --at;
  m_waiting.insert(at, h);
  return h;
}

void scheduler::add_to_plan(request_handle h, std::int64_t context_before, std::int32_t n) {
  const auto& r = m_requests[h];
  scheduled_sequence e;
  e.request = h;
  e.id = r.record.id;
  e.sequence = r.sequence;
  e.context_before = context_before;
  e.new_tokens = n;
  e.prefill = !(n == 1 && context_before >= r.prompt_tokens && r.generated > 0);
  e.samples = r.computed == std::ssize(r.tokens);
  add_sequence(m_plan.shape, context_before, n, e.prefill, e.samples);
  m_plan.sequences.push_back(e);
}

void scheduler::preempt(request_handle h) {
  auto& r = m_requests[h];
  m_kv.free_sequence(r.sequence);
  r.sequence = -1;
  r.computed_max = std::max(r.computed_max, r.computed);
  r.computed = 0;
  ++r.record.preemptions;
  ++m_counters.preemptions;
  ++m_plan.preemptions;
  auto at = m_waiting.begin();
  while (at != m_waiting.end() && before(*at, h)) ++at;
  m_waiting.insert(at, h);
}

bool scheduler::cancel(request_handle h, double now_seconds) {
  if (m_in_step) throw std::logic_error("scheduler::cancel inside a step (before complete())");
  if (!live(h)) return false;
  std::erase(m_running, h);
  std::erase(m_waiting, h);
  m_requests[h].record.outcome = request_outcome::cancelled;
  finish(h, now_seconds);
  return true;
}

const step_plan& scheduler::schedule() {
  if (m_in_step) throw std::logic_error("scheduler::schedule before complete() of the last step");
  m_plan.sequences.clear();
  m_plan.shape = step_shape{};
  m_plan.preemptions = 0;
  m_plan.admitted = 0;
  std::int64_t budget = m_config.max_batched_tokens;

  // 1. Running sequences, oldest first: one decode token each, or the next prefill chunk.
  for (std::size_t i = 0; i < m_running.size() && budget > 0;) {
    const request_handle h = m_running[i];
    auto& r = m_requests[h];
    // Without chunked prefill only a resumed (recomputing) request has more than one token left;
    // it recomputes in chunks so that it can always resume.
    const std::int64_t n = std::min(std::ssize(r.tokens) - r.computed, budget);
    bool self_preempted = false;
    while (!m_kv.can_append(r.sequence, n)) {
      const request_handle victim = m_running.back();
      m_running.pop_back();
      preempt(victim);
      if (victim == h) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    const std::int64_t before_tokens = r.computed;
    m_kv.append(r.sequence, std::span<const token_id>(r.tokens).subspan(
                                static_cast<std::size_t>(r.computed), static_cast<std::size_t>(n)));
    r.computed += n;
    budget -= n;
    add_to_plan(h, before_tokens, static_cast<std::int32_t>(n));
    ++i;
  }

  // 2. Admit waiting requests in FCFS order while they fit; not in a step that had to preempt.
  const std::int64_t bs = m_kv.config().block_tokens;
  while (m_plan.preemptions == 0 && !m_waiting.empty() && budget > 0 &&
         std::ssize(m_running) < m_config.max_running) {
    const request_handle h = m_waiting.front();
    auto& r = m_requests[h];
    const std::span<const token_id> all(r.tokens);
    // The last token is always computed: its logits give the next token.
    const prefix_match match = m_kv.lookup(all, std::ssize(all) - 1);
    const std::int64_t cached = match.tokens(static_cast<std::int32_t>(bs));
    std::int64_t n = std::ssize(all) - cached;
    if (n > budget) {
      if (!m_config.chunked_prefill && !r.admitted_once) break;
      n = budget;
    }
    const seq_id s = m_kv.create_sequence();
    if (!m_kv.acquire_prefix(s, all, match, static_cast<std::int32_t>(n))) {
      m_kv.free_sequence(s);
      break;  // head of line waits for blocks
    }
    m_waiting.pop_front();
    r.sequence = s;
    if (!r.admitted_once) {
      r.admitted_once = true;
      const auto recomputed_before = m_kv.counters().recomputed_tokens;
      m_kv.record_lookup(all.first(static_cast<std::size_t>(r.prompt_tokens)), match);
      r.record.cached_tokens = cached;
      r.record.tier2_tokens = match.tier2_blocks * bs;
      r.record.prefix_recomputed_tokens = m_kv.counters().recomputed_tokens - recomputed_before;
    } else {
      const std::int64_t again = std::max<std::int64_t>(0, r.computed_max - cached);
      r.record.preempted_tokens_recomputed += again;
      m_counters.preempted_tokens_recomputed += again;
    }
    m_plan.shape.tier2_blocks_loaded += match.tier2_blocks;
    m_kv.append(s, all.subspan(static_cast<std::size_t>(cached), static_cast<std::size_t>(n)));
    r.computed = cached + n;
    budget -= n;
    auto at = m_running.end();
    while (at != m_running.begin() && before(h, *(at - 1))) --at;
    m_running.insert(at, h);
    ++m_plan.admitted;
    add_to_plan(h, cached, static_cast<std::int32_t>(n));
  }

  if (m_plan.sequences.empty() && has_work()) {
    throw std::logic_error("scheduler: " + std::to_string(m_waiting.size()) + " waiting and " +
                           std::to_string(m_running.size()) +
                           " running requests but nothing can run (KV cache or budget too small)");
  }
  ++m_steps;
  m_in_step = !m_plan.sequences.empty();
  return m_plan;
}

void scheduler::finish(request_handle h, double now) {
  auto& r = m_requests[h];
  if (r.sequence >= 0) m_kv.free_sequence(r.sequence);  // a waiting request holds no blocks
  r.sequence = -1;
  r.record.finish_seconds = now;
  r.record.output_tokens = r.generated;
  m_finished.push_back(std::move(r.record));
  r.live = false;
  r.tokens = {};
  r.stop_tokens = {};
  m_free_handles.push_back(h);
}

const step_plan* scheduler::schedule_ahead() {
  if (!m_in_step || m_have_ahead || !m_waiting.empty() || m_plan.sequences.empty()) return nullptr;
  // Every running request must be in the current step: one the token budget left out would
  // otherwise wait for as long as steps are planned ahead.
  if (m_plan.sequences.size() != m_running.size()) return nullptr;
  // Decode-only, and the blocks for every continuing request's next slot are there.
  std::int64_t blocks = 0;
  for (const auto& e : m_plan.sequences) {
    if (e.prefill || e.new_tokens != 1 || !e.samples) return nullptr;
    const auto& r = m_requests[e.request];
    // Ends with this step: it reaches its max tokens, or it stopped in the step before.
    if (r.generated + 1 >= r.max_output || r.stop_after_ahead) continue;
    blocks += m_kv.blocks_needed(r.sequence, 1);
  }
  if (blocks > m_kv.pool().num_available()) return nullptr;
  m_ahead.sequences.clear();
  m_ahead.shape = step_shape{};
  m_ahead.preemptions = 0;
  m_ahead.admitted = 0;
  std::int32_t sample = 0;
  for (const auto& e : m_plan.sequences) {
    auto& r = m_requests[e.request];
    const std::int32_t row = sample++;
    if (r.generated + 1 >= r.max_output || r.stop_after_ahead) continue;
    if (!m_kv.append_pending(r.sequence)) broken_ahead();
    r.tokens.push_back(0);  // the id the running step samples; complete() writes it here
    r.pending = true;
    scheduled_sequence a;
    a.request = e.request;
    a.id = e.id;
    a.sequence = r.sequence;
    a.context_before = r.computed;
    a.new_tokens = 1;
    a.prefill = false;
    a.samples = true;
    a.input_sample = row;
    r.computed += 1;
    add_sequence(m_ahead.shape, a.context_before, 1, false, true);
    m_ahead.sequences.push_back(a);
  }
  if (m_ahead.sequences.empty()) return nullptr;
  m_have_ahead = true;
  ++m_steps;
  return &m_ahead;
}

void scheduler::broken_ahead() {
  throw std::logic_error("scheduler: a slot checked free for the step ahead was not there");
}

void scheduler::complete(std::span<const token_id> sampled, double now_seconds) {
  std::size_t k = 0;
  bool any_finished = false;
  for (const auto& e : m_plan.sequences) {
    if (!e.samples) continue;
    if (k >= sampled.size()) {
      throw std::invalid_argument("scheduler::complete: " + std::to_string(sampled.size()) +
                                  " sampled tokens for a plan that samples more");
    }
    auto& r = m_requests[e.request];
    const token_id t = sampled[k++];
    if (r.stop_after_ahead) {
      // It stopped in the step before; this step's token is past its end.
      r.stop_after_ahead = false;
      finish(e.request, r.last_token_seconds);
      any_finished = true;
      continue;
    }
    if (r.generated == 0) {
      r.record.first_token_seconds = now_seconds;
    } else if (m_config.record_itl) {
      m_itl.push_back(now_seconds - r.last_token_seconds);
    }
    r.last_token_seconds = now_seconds;
    ++r.generated;
    const bool stop = (m_config.eos_token >= 0 && t == m_config.eos_token) ||
                      std::find(r.stop_tokens.begin(), r.stop_tokens.end(), t) != r.stop_tokens.end();
    if (r.pending) {
      // The step planned ahead already holds this position (its id was unknown when planned):
      // write the id there and let that step finish a request that stops here.
      r.tokens.back() = t;
      r.pending = false;
      m_kv.resolve_pending(r.sequence, t);
      if (stop) r.stop_after_ahead = true;
      continue;
    }
    r.tokens.push_back(t);
    if (r.generated >= r.max_output || stop) {
      finish(e.request, now_seconds);
      any_finished = true;
    }
  }
  if (k != sampled.size()) {
    throw std::invalid_argument("scheduler::complete: " + std::to_string(sampled.size()) +
                                " sampled tokens for a plan that samples " + std::to_string(k));
  }
  if (any_finished) {
    std::erase_if(m_running, [this](request_handle h) { return !m_requests[h].live; });
  }
  if (m_have_ahead) {
    // The step planned ahead is now the one in flight.
    std::swap(m_plan, m_ahead);
    m_have_ahead = false;
    m_in_step = true;
  } else {
    m_in_step = false;
  }
}

void scheduler::take_finished(std::vector<request_record>& out) {
  for (auto& r : m_finished) out.push_back(std::move(r));
  m_finished.clear();
}

}  // namespace ridgeline
