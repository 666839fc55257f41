// Open- and closed-loop job sources over a workload (sources.hpp).
#include "ridgeline/load/sources.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace ridgeline::load {
namespace {
constexpr double k_never = std::numeric_limits<double>::infinity();
}

workload_source::workload_source(source_plan plan, prompt_builder& builder)
    : m_plan(std::move(plan)), m_builder(builder) {
  if (m_plan.requests == nullptr) throw std::invalid_argument("workload_source: no workload");
  if (m_plan.concurrency <= 0 && m_plan.leave_seconds.size() != m_plan.firsts.size()) {
    throw std::invalid_argument("workload_source: one leave time per first turn expected");
  }
}

http_job workload_source::job_of(std::size_t index, double scheduled) {
  const workload_request& r = m_plan.requests->requests[index];
  session_history scratch;
  session_history& h = r.session >= 0 ? m_sessions[r.session] : scratch;
  built_request b = m_builder.build(r, h);
  http_job j;
  j.index = index;
  j.id = r.id;
  j.session = r.session;
  j.turn = r.turn;
  j.scheduled_seconds = scheduled;
  j.path = std::move(b.path);
  j.body = std::move(b.body);
  j.stream = m_builder.options().stream;
  j.keep_text = b.text_answers;
  j.requested_prompt_tokens = b.requested_prompt_tokens;
  j.expected_prompt_tokens = b.expected_prompt_tokens;
  j.requested_output_tokens = b.output_tokens;
  ++m_in_flight;
  if (r.next_turn >= 0) ++m_awaiting;
  if (r.next_turn < 0 && r.session >= 0) m_sessions.erase(r.session);
  return j;
}

double workload_source::take_due(double now, double horizon, std::vector<http_job>& out) {
  const auto& firsts = m_plan.firsts;
  if (m_plan.concurrency > 0) {
    // Released when a slot is free, but not before the level's start (time 0).
    const double at = std::max(now, 0.0);
    while (m_in_flight < m_plan.concurrency) {
      if (!m_turns.empty() && m_turns.top().first <= now) {
        const std::size_t index = m_turns.top().second;
        m_turns.pop();
        out.push_back(job_of(index, at));
      } else if (m_next < firsts.size()) {
        out.push_back(job_of(firsts[m_next++], at));
      } else {
        break;
      }
    }
    if (m_in_flight >= m_plan.concurrency || m_turns.empty()) return k_never;
    return m_turns.top().first;
  }
  while (true) {
    const double first_due = m_next < firsts.size() ? m_plan.leave_seconds[m_next] : k_never;
    const double turn_due = m_turns.empty() ? k_never : m_turns.top().first;
    if (first_due <= turn_due && first_due <= horizon) {
      out.push_back(job_of(firsts[m_next], first_due));
      ++m_next;
    } else if (turn_due < first_due && turn_due <= horizon) {
      const std::size_t index = m_turns.top().second;
      m_turns.pop();
      out.push_back(job_of(index, turn_due));
    } else {
      return std::min(first_due, turn_due);
    }
  }
}

void workload_source::on_done(const http_job& job, const request_record& r, double) {
  --m_in_flight;
  const workload_request& q = m_plan.requests->requests[job.index];
  if (q.next_turn < 0) return;
  --m_awaiting;
  if (!r.finished()) {
    m_sessions.erase(q.session);  // the session ends here; its later turns are never sent
    return;
  }
  auto& h = m_sessions[q.session];
  prompt_builder::add_answer(h, r.output_text);
  const auto next = static_cast<std::size_t>(q.next_turn);
  m_turns.emplace(r.end + m_plan.requests->requests[next].think_seconds, next);
}

bool workload_source::exhausted() const {
  return m_next >= m_plan.firsts.size() && m_turns.empty() && m_awaiting == 0;
}

}  // namespace ridgeline::load
