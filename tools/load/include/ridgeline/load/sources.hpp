// When each request of a workload leaves, as a client_worker's job source: open loop (every first
// turn at its own time, whether or not the server keeps up) or closed loop (a fixed number in
// flight; the next leaves when one ends). In both, a session's next turn leaves its think time
// after the previous answer ended, carrying that answer; a session whose turn failed sends no more.
//   source_plan p{&w, {0, 3, 5}, {0.0, 0.4, 0.9}, 0};   // open loop, three first turns
//   workload_source s(p, builder);   client_worker(...).run(s);
#pragma once

#include <cstddef>
#include <cstdint>
#include <queue>
#include <unordered_map>
#include <vector>

#include "ridgeline/engine/workload.hpp"
#include "ridgeline/load/client.hpp"
#include "ridgeline/load/prompts.hpp"

namespace ridgeline::load {

struct source_plan {
  const workload* requests = nullptr;
  std::vector<std::size_t> firsts;    // indices in requests of the first turns to send, in order
  std::vector<double> leave_seconds;  // open loop: when each first turn leaves (run clock)
  std::int64_t concurrency = 0;       // > 0: closed loop, leave_seconds unused
};

class workload_source final : public job_source {
 public:
  workload_source(source_plan plan, prompt_builder& builder);
  double take_due(double now, double horizon, std::vector<http_job>& out) override;
  void on_done(const http_job& job, const request_record& r, double now) override;
  bool exhausted() const override;

 private:
  http_job job_of(std::size_t index, double scheduled);
  source_plan m_plan;
  prompt_builder& m_builder;
  std::size_t m_next = 0;                        // next first turn
  std::int64_t m_in_flight = 0;                  // released, not ended
  std::int64_t m_awaiting = 0;                   // released turns whose session has a next turn
  using entry = std::pair<double, std::size_t>;  // (due, request index)
  std::priority_queue<entry, std::vector<entry>, std::greater<>> m_turns;
  std::unordered_map<std::int64_t, session_history> m_sessions;
};

}  // namespace ridgeline::load
