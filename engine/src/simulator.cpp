// The simulation loop (see simulator.hpp): workload arrivals, the scheduler and KV manager, and
// the simulated executor (executor.hpp) for step times and output tokens.
#include "ridgeline/engine/simulator.hpp"

#include "ridgeline/engine/executor.hpp"

#include <algorithm>
#include <queue>
#include <stdexcept>

#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline {

std::int64_t unlimited_blocks(const workload& w, std::int32_t block_tokens) {
  std::int64_t blocks = 1;
  for (const auto& r : w.requests) {
    blocks += blocks_for(r.prompt_tokens + r.output_tokens, block_tokens);
  }
  return blocks;
}

void account_cache_work(simulation_result& out, const step_time_model& model) {
  out.flops_saved = out.seconds_saved = out.recompute_flops = out.recompute_seconds = 0;
  for (const auto& r : out.requests) {
    if (r.outcome != request_outcome::finished) continue;
    if (r.cached_tokens > 0) {
      out.flops_saved += model.prefill_flops(r.cached_tokens);
      out.seconds_saved += model.prefill_seconds(r.cached_tokens);
    }
    const std::int64_t missed_seen = r.prefix_recomputed_tokens;
    if (missed_seen > 0) {
      out.recompute_flops +=
          model.prefill_flops(r.cached_tokens + missed_seen) - model.prefill_flops(r.cached_tokens);
      out.recompute_seconds += model.prefill_seconds(r.cached_tokens + missed_seen) -
                               model.prefill_seconds(r.cached_tokens);
    }
    if (r.preempted_tokens_recomputed > 0) {
      out.recompute_flops += model.prefill_flops(r.preempted_tokens_recomputed);
      out.recompute_seconds += model.prefill_seconds(r.preempted_tokens_recomputed);
    }
  }
}

simulation_result simulate(const workload& w, const simulation_config& c,
                           const step_time_model& model) {
  kv_cache_manager kv(c.kv);
  scheduler sched(c.scheduler, kv);
  simulated_executor exec(model);
  std::vector<step_sequence> seqs;
  simulation_result out;
  out.requests.resize(w.requests.size());
  std::vector<std::uint8_t> done(w.requests.size(), 0);

  // Pending arrivals, earliest first (ties by workload index).
  using arrival = std::pair<double, std::size_t>;
  std::priority_queue<arrival, std::vector<arrival>, std::greater<>> pending;
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    const auto& r = w.requests[i];
    if (r.follow_up) continue;
    if (!(r.arrival_seconds >= 0)) {
      throw std::invalid_argument("request " + std::to_string(r.id) + " has a negative arrival");
    }
    pending.push({r.arrival_seconds, i});
  }

  // With overlap, the step the scheduler planned ahead while the previous one ran (its sequences
  // made then, as the serving loop does), which runs next.
  std::vector<step_sequence> ahead_seqs;
  bool ahead_next = false;
  step_plan ran;  // a copy of the plan that ran, when complete() moves the one ahead in its place

  std::vector<request_record> left;
  std::vector<std::uint64_t> output_seed_of;  // by request handle
  double now = 0;
  std::int64_t completed = 0;
  const std::int64_t total = std::ssize(w.requests);
  std::int64_t next_report = 0;

  auto on_left = [&](request_record& rec) {
    const std::size_t i = rec.id;
    if (i >= done.size() || done[i])
      throw std::logic_error("simulator: request record lost or repeated");
    done[i] = 1;
    if (c.on_request) c.on_request(rec);
    ++completed;
    if (rec.outcome == request_outcome::finished)
      ++out.finished;
    else
      ++out.rejected;
    const auto& req = w.requests[i];
    if (req.next_turn >= 0) {
      const auto& next = w.requests[static_cast<std::size_t>(req.next_turn)];
      pending.push(
          {rec.finish_seconds + next.think_seconds, static_cast<std::size_t>(req.next_turn)});
    }
    out.requests[i] = std::move(rec);
  };

  for (;;) {
    while (!pending.empty() && pending.top().first <= now) {
      const auto [t, i] = pending.top();
      pending.pop();
      const auto& req = w.requests[i];
      std::vector<token_id> prompt;
      materialize_prompt(req, prompt);
      // Record ids are workload indices so follow-ups and results find their request.
      const request_handle h = sched.submit(i, t, std::move(prompt), req.output_tokens);
      if (static_cast<std::size_t>(h) >= output_seed_of.size()) output_seed_of.resize(h + 1);
      output_seed_of[static_cast<std::size_t>(h)] = req.output_seed;
    }
    sched.take_finished(left);  // rejections at submission
    for (auto& rec : left) on_left(rec);
    left.clear();
    if (!ahead_next && !sched.has_work()) {
      if (pending.empty()) break;
      now = pending.top().first;
      continue;
    }
    // A request's output token k is segment_token(output_seed, k): the executor "samples" it. A
    // step planned ahead samples each request's token after the one the running step samples.
    auto seed = [&](const step_plan& p, std::vector<step_sequence>& q, std::uint64_t later) {
      for (std::size_t j = 0; j < q.size(); ++j) {
        const request_handle h = p.sequences[j].request;
        q[j].sampling.seed = output_seed_of[static_cast<std::size_t>(h)];
        q[j].sampling.step = static_cast<std::uint64_t>(sched.generated(h)) + later;
      }
    };
    const step_plan& plan = ahead_next ? sched.last_plan() : sched.schedule();
    if (ahead_next) {
      seqs.swap(ahead_seqs);
    } else {
      plan_sequences(plan, sched, kv, seqs);
      seed(plan, seqs, 0);
    }
    exec.load_host_blocks(plan.shape.tier2_blocks_loaded);
    const step_output step = exec.step(seqs);
    // While it runs, the engine plans the next decode-only step when nothing waits for admission
    // (scheduler::schedule_ahead): requests that arrive meanwhile join the step after that one.
    ahead_next = false;
    if (c.overlap) {
      if (const step_plan* a = sched.schedule_ahead()) {
        plan_sequences(*a, sched, kv, ahead_seqs);
        seed(*a, ahead_seqs, 1);
        ahead_next = true;
        ran = plan;
      }
    }
    const double dt = step.forward_seconds;
    if (!(dt > 0)) throw std::logic_error("step-time model gave a non-positive step time");
    // What the serving loop adds before the step (the GPU's idle time between forward passes,
    // measured from replays; 0 for a model not calibrated on serving runs): part of the period
    // between tokens, not of the step's busy time.
    const double gap = model.loop_gap_seconds(plan.shape);
    if (!(gap >= 0)) throw std::logic_error("step-time model gave a negative loop gap");
    now += gap + dt;
    out.busy_seconds += dt;
    out.prefill_tokens_computed += plan.shape.prefill_tokens;
    out.decode_tokens += plan.shape.decode_tokens;
    out.peak_running = std::max(out.peak_running, sched.num_running());
    out.peak_used_blocks = std::max(out.peak_used_blocks, kv.pool().num_used());
    const std::size_t itl_before = sched.itl_seconds().size();
    sched.complete(step.tokens, now);
    if (c.on_step) {
      const auto& itl = sched.itl_seconds();
      c.on_step(simulation_step{ahead_next ? ran : plan, dt, now, sched, kv,
                                std::span<const double>(itl).subspan(itl_before)});
    }
    sched.take_finished(left);
    for (auto& rec : left) on_left(rec);
    left.clear();
    if (c.progress && completed >= next_report) {
      c.progress(total > 0 ? static_cast<double>(completed) / static_cast<double>(total) : 1.0);
      next_report = completed + std::max<std::int64_t>(1, total / 200);
    }
  }
  if (completed != total) {
    throw std::logic_error("simulator: " + std::to_string(total - completed) +
                           " requests never came back from the scheduler");
  }
  if (c.progress) c.progress(1.0);

  out.simulated_seconds = now;
  out.steps = sched.steps();
  out.kv = kv.counters();
  out.scheduling = sched.counters();
  out.itl_seconds = sched.itl_seconds();
  account_cache_work(out, model);
  return out;
}

}  // namespace ridgeline
