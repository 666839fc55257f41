// The serving loop and the real-time replay of a workload (see serving.hpp).
#include "ridgeline/engine/serving.hpp"

#include <algorithm>
#include <chrono>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>

#include "ridgeline/perfmodel/step_work.hpp"

namespace ridgeline {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

serving_loop::serving_loop(executor& exec, kv_cache_manager& kv, const scheduler_config& config,
                           const model_preset& model, clock now, bool overlap)
    : m_exec(exec), m_kv(kv), m_sched(config, kv), m_model(model), m_now(std::move(now)),
      m_overlap(overlap) {
  if (!m_now) throw std::invalid_argument("serving_loop: no clock");
  const auto& kc = kv.config();
  if (kc.host_blocks > 0) {
    if (!kc.record_transfers) {
      throw std::invalid_argument("serving: a host KV tier needs record_transfers in the KV config");
    }
    if (exec.host_blocks() < kc.host_blocks) {
      throw std::invalid_argument("serving: the KV manager's host tier has " +
                                  std::to_string(kc.host_blocks) + " blocks, the executor " +
                                  std::to_string(exec.host_blocks()));
    }
  }
}

void serving_loop::submit(serving_request r) {
  if (m_live.contains(r.id)) {
    throw std::invalid_argument("serving: request id " + std::to_string(r.id) + " is already live");
  }
  const double t = m_now();
  const request_handle h = m_sched.submit(r.id, r.arrival_seconds, std::move(r.prompt),
                                          r.max_tokens, std::move(r.stop_tokens));
  live_request q;
  q.handle = h;
  q.submitted = t;
  q.sampling = r.sampling;
  q.on_token = std::move(r.on_token);
  if (static_cast<std::size_t>(h) >= m_id_of_handle.size()) m_id_of_handle.resize(h + 1);
  m_id_of_handle[static_cast<std::size_t>(h)] = r.id;
  m_live.emplace(r.id, std::move(q));
}

std::vector<std::uint64_t> serving_loop::live_ids() const {
  std::vector<std::uint64_t> ids;
  ids.reserve(m_live.size());
  for (const auto& [id, q] : m_live) ids.push_back(id);
  return ids;
}

bool serving_loop::cancel(std::uint64_t id) {
  const auto it = m_live.find(id);
  if (it == m_live.end() || !m_sched.live(it->second.handle)) return false;
  if (m_in_flight) {
    // A step computes for it now: it ends when that step is back (no step is planned ahead
    // while a cancel waits).
    m_cancels.push_back(id);
    return true;
  }
  return m_sched.cancel(it->second.handle, m_now());
}

// Fills `rec` with what the scheduler and KV manager say right after planning `plan`, makes the
// plan's sequences (with their requests' sampling) in `seqs`, and hands the host-tier copies to
// the executor.
void serving_loop::prepare(const step_plan& plan, std::int64_t hits_before, step_record& rec,
                           std::vector<step_sequence>& seqs) {
  plan_sequences(plan, m_sched, m_kv, seqs);
  for (std::size_t j = 0; j < seqs.size(); ++j) {
    const request_handle h = plan.sequences[j].request;
    const auto& q = m_live.at(m_id_of_handle[static_cast<std::size_t>(h)]);
    seqs[j].sampling = q.sampling;
    // A step planned ahead samples the request's next token after the in-flight one's.
    const bool ahead = plan.sequences[j].input_sample >= 0;
    seqs[j].sampling.step = static_cast<std::uint64_t>(m_sched.generated(h) + (ahead ? 1 : 0));
  }
  rec.index = m_next_index++;
  rec.sequences = plan.shape.sequences;
  rec.prefill_tokens = plan.shape.prefill_tokens;
  rec.decode_tokens = plan.shape.decode_tokens;
  rec.samples = plan.shape.sampled_tokens;
  rec.running = m_sched.num_running();
  rec.waiting = m_sched.num_waiting();
  rec.kv_used = m_kv.pool().num_used();
  rec.kv_cached = m_kv.pool().num_cached();
  rec.kv_free = m_kv.pool().num_free();
  rec.hit_tokens = m_kv.counters().hit_tokens_tier1 + m_kv.counters().hit_tokens_tier2 -
                   hits_before;
  rec.admitted = plan.admitted;
  rec.preemptions = plan.preemptions;
  const step_work work = step_work_of(m_model, plan.shape);
  rec.flops = work.flops;
  rec.bytes = work.bytes();
  m_kv.take_transfers(m_transfers);
  if (!m_transfers.empty()) {
    for (const auto& t : m_transfers) {
      ++(t.dir == block_transfer::direction::to_host ? rec.blocks_to_host : rec.blocks_to_gpu);
    }
    m_exec.copy_blocks(m_transfers);
  }
}

bool serving_loop::may_plan_ahead() const {
  if (!m_overlap || !m_cancels.empty()) return false;
  // The repetition penalty reads every earlier token on the host side: not with an unknown one.
  for (const auto& e : m_sched.last_plan().sequences) {
    const auto& q = m_live.at(m_id_of_handle[static_cast<std::size_t>(e.request)]);
    if (q.sampling.repetition_penalty != 1.0f) return false;
  }
  return true;
}

const step_record* serving_loop::step() {
  if (!m_in_flight) {
    apply_cancels();
    if (!m_sched.has_work()) return nullptr;
    m_current = step_record{};
    m_current.start_seconds = m_now();
    const std::int64_t hits = m_kv.counters().hit_tokens_tier1 + m_kv.counters().hit_tokens_tier2;
    const step_plan& plan = m_sched.schedule();
    prepare(plan, hits, m_current, m_seqs);
    m_exec.launch(m_seqs);
    m_in_flight = true;
  }
  // While the step runs, plan and launch the next one when its shape is already known.
  bool ahead = false;
  step_record next;
  if (may_plan_ahead()) {
    next.start_seconds = m_now();
    const std::int64_t hits = m_kv.counters().hit_tokens_tier1 + m_kv.counters().hit_tokens_tier2;
    if (const step_plan* plan = m_sched.schedule_ahead()) {
      prepare(*plan, hits, next, m_ahead_seqs);
      m_exec.launch(m_ahead_seqs);
      ahead = true;
      ++m_planned_ahead;
    }
  }
  const step_output out = m_exec.wait();
  step_record& rec = m_current;
  rec.gpu_seconds = out.forward_seconds;
  rec.gap_seconds = out.gap_seconds;
  rec.copy_seconds = out.copy_seconds;
  rec.graph = out.graph;
  const double end = m_now();
  // Streaming callbacks see each token before the scheduler may finish (and free) its request.
  const step_plan& plan = m_sched.last_plan();
  // Log-probabilities ride along when the executor keeps them ([samples][top] and [samples]).
  const std::size_t samples = out.tokens.size();
  const std::size_t top = samples > 0 ? out.top_ids.size() / samples : 0;
  const bool with_logprobs = out.sampled_logprobs.size() == samples && samples > 0 &&
                             out.top_logprobs.size() == out.top_ids.size();
  std::size_t k = 0;
  for (const auto& e : plan.sequences) {
    if (!e.samples) continue;
    if (k >= samples) break;  // complete() below reports the mismatch
    const auto& q = m_live.at(m_id_of_handle[static_cast<std::size_t>(e.request)]);
    if (q.on_token && !m_sched.stopping(e.request)) {
      token_event t;
      t.id = e.id;
      t.token = out.tokens[k];
      t.index = m_sched.generated(e.request);
      t.seconds = end;
      if (with_logprobs) {
        t.logprob = out.sampled_logprobs[k];
        t.top_ids = std::span<const std::int32_t>(out.top_ids).subspan(k * top, top);
        t.top_logprobs = std::span<const float>(out.top_logprobs).subspan(k * top, top);
      }
      q.on_token(t);
    }
    ++k;
  }
  m_sched.complete(out.tokens, end);
  rec.end_seconds = m_now();
  rec.host_seconds = std::max(0.0, rec.end_seconds - rec.start_seconds - rec.gpu_seconds);
  if (m_keep_steps > 0 && m_steps.size() >= 2 * m_keep_steps) {
    m_steps.erase(m_steps.begin(), m_steps.end() - static_cast<std::ptrdiff_t>(m_keep_steps) + 1);
  }
  m_steps.push_back(rec);
  if (ahead) {
    m_current = next;  // the step planned ahead is the one in flight now
  } else {
    m_in_flight = false;
  }
  if (!m_in_flight) apply_cancels();
  return &m_steps.back();
}

void serving_loop::apply_cancels() {
  for (std::uint64_t id : m_cancels) {
    const auto it = m_live.find(id);
    if (it != m_live.end() && m_sched.live(it->second.handle)) {
      m_sched.cancel(it->second.handle, m_now());
    }
  }
  m_cancels.clear();
}

void serving_loop::take_finished(std::vector<serving_record>& out) {
  m_left.clear();
  m_sched.take_finished(m_left);
  for (auto& r : m_left) {
    const auto it = m_live.find(r.id);
    if (it == m_live.end()) throw std::logic_error("serving: a record for an unknown request");
    serving_record s;
    s.submitted_seconds = it->second.submitted;
    s.record = std::move(r);
    m_live.erase(it);
    out.push_back(std::move(s));
  }
}

replay_result replay_workload(const workload& w, serving_loop& loop, const replay_options& o,
                              const serving_loop::clock& now) {
  if (!(o.rate_scale > 0)) throw std::invalid_argument("replay: rate scale must be positive");
  const auto wait = o.wait_until ? o.wait_until : [&now](double t) {
    const double dt = t - now();
    if (dt > 0) std::this_thread::sleep_for(std::chrono::duration<double>(dt));
  };
  replay_result out;
  out.requests.resize(w.requests.size());
  std::vector<std::uint8_t> done(w.requests.size(), 0);
  using arrival = std::pair<double, std::size_t>;  // (loop clock, workload index)
  std::priority_queue<arrival, std::vector<arrival>, std::greater<>> pending;
  out.start_seconds = now();
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    const auto& r = w.requests[i];
    if (r.follow_up) continue;
    if (!(r.arrival_seconds >= 0)) {
      throw std::invalid_argument("request " + std::to_string(r.id) + " has a negative arrival");
    }
    pending.push({out.start_seconds + r.arrival_seconds / o.rate_scale, i});
  }
  // Cancels due: (clock time, workload index), set when a request's first token comes.
  std::priority_queue<arrival, std::vector<arrival>, std::greater<>> cancels;
  std::vector<std::uint8_t> first_seen(w.requests.size(), 0);

  // Multi-turn sessions: a follow-up turn's prompt is the previous turn's prompt, what the model
  // really answered (not the workload's stand-in output tokens) and the new message.
  std::vector<std::vector<token_id>> sent(w.requests.size()), answer(w.requests.size()),
      conversation(w.requests.size());

  std::vector<serving_record> left;
  std::int64_t completed = 0, next_report = 0;
  const std::int64_t total = std::ssize(w.requests);
  auto collect = [&] {
    left.clear();
    loop.take_finished(left);
    for (auto& s : left) {
      const std::size_t i = s.record.id;
      if (i >= done.size() || done[i]) throw std::logic_error("replay: request lost or repeated");
      done[i] = 1;
      ++completed;
      switch (s.record.outcome) {
        case request_outcome::finished: ++out.finished; break;
        case request_outcome::rejected: ++out.rejected; break;
        case request_outcome::cancelled: ++out.cancelled; break;
      }
      if (o.on_request) o.on_request(s);
      const auto& req = w.requests[i];
      if (req.next_turn >= 0) {
        // The next turn follows whatever way this one ended.
        auto& c = conversation[static_cast<std::size_t>(req.next_turn)];
        c = std::move(sent[i]);
        c.insert(c.end(), answer[i].begin(), answer[i].end());
        const auto& next = w.requests[static_cast<std::size_t>(req.next_turn)];
        pending.push({s.record.finish_seconds + next.think_seconds / o.rate_scale,
                      static_cast<std::size_t>(req.next_turn)});
      }
      sent[i] = {};
      answer[i] = {};
      out.requests[i] = std::move(s);
    }
  };

  std::vector<token_id> prompt;
  for (;;) {
    const double t = now();
    while (!pending.empty() && pending.top().first <= t) {
      const auto [at, i] = pending.top();
      pending.pop();
      const auto& req = w.requests[i];
      if (req.follow_up && !req.prompt.empty()) {
        // The conversation so far, then the new message (the last segment).
        workload_request message;
        message.prompt = {req.prompt.back()};
        message.prompt_tokens = req.prompt.back().tokens;
        materialize_prompt(message, prompt);
        prompt.insert(prompt.begin(), conversation[i].begin(), conversation[i].end());
        conversation[i] = {};
      } else {
        materialize_prompt(req, prompt);
      }
      if (o.vocab > 0) {
        for (token_id& x : prompt) x %= o.vocab;
      }
      const bool keep = req.next_turn >= 0;
      if (keep) sent[i] = prompt;
      serving_request s;
      s.id = i;  // workload index: follow-ups and results find their request
      s.arrival_seconds = at;
      s.prompt = prompt;
      s.max_tokens = req.output_tokens;
      s.stop_tokens = o.stop_tokens;
      s.sampling = o.sampling;
      s.sampling.seed = req.output_seed;
      const bool cancel = o.cancel_after.contains(i);
      if (cancel || keep) {
        s.on_token = [&cancels, &first_seen, &o, &answer, i, cancel,
                      keep](const token_event& e) {
          if (keep) answer[i].push_back(e.token);
          if (cancel && e.index == 0 && !first_seen[i]) {
            first_seen[i] = 1;
            cancels.push({e.seconds + o.cancel_after.at(i), i});
          }
        };
      }
      loop.submit(std::move(s));
    }
    while (!cancels.empty() && cancels.top().first <= t) {
      loop.cancel(cancels.top().second);
      cancels.pop();
    }
    collect();
    if (!loop.has_work()) {
      if (pending.empty()) break;
      wait(pending.top().first);
      continue;
    }
    const step_record* rec = loop.step();
    out.peak_running = std::max(out.peak_running, rec->running);
    out.peak_used_blocks = std::max(out.peak_used_blocks, rec->kv_used);
    if (o.on_step) o.on_step(loop, *rec);
    collect();
    if (o.progress && completed >= next_report) {
      o.progress(total > 0 ? static_cast<double>(completed) / static_cast<double>(total) : 1.0);
      next_report = completed + std::max<std::int64_t>(1, total / 200);
    }
  }
  if (completed != total) {
    throw std::logic_error("replay: " + std::to_string(total - completed) +
                           " requests never came back from the scheduler");
  }
  if (o.progress) o.progress(1.0);
  out.end_seconds = now();
  out.steps = loop.steps();
  out.kv = loop.kv().counters();
  out.scheduling = loop.sched().counters();
  out.itl_seconds = loop.sched().itl_seconds();
  return out;
}

}  // namespace ridgeline
