// The serving loop on the CPU executor (tiny model): every request ends finished, cancelled or
// rejected and none is lost under random arrivals, cancels and preemptions; a prefix hit is not
// computed again and gives the same tokens; streaming callbacks see every token in order; a
// request's greedy tokens are the same alone and inside a served batch (teacher-free, CPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/random_weights.hpp"
#include "ridgeline/engine/serving.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

using namespace ridgeline;

namespace {

const model_preset& tiny() { return model_preset_by_name("tiny"); }

serving_request request(std::uint64_t id, std::vector<token_id> prompt, std::int32_t max_tokens,
                        std::vector<token_id> stop_tokens = {}) {
  serving_request q;
  q.id = id;
  q.prompt = std::move(prompt);
  q.max_tokens = max_tokens;
  q.stop_tokens = std::move(stop_tokens);
  return q;
}

// A clock that moves only when told: 1 ms per reading, and jumps on waits.
struct fake_clock {
  double t = 0;
  double operator()() { return t += 1e-3; }
};

kv_cache_config kv_config(std::int32_t blocks) {
  return make_kv_cache_config(tiny(), dtype::bf16, 16, blocks);
}

workload random_workload(std::uint64_t seed, int requests) {
  generator_config g;
  g.seed = seed;
  g.requests = requests;
  g.rate_per_second = 200;
  g.prompt = length_distribution{length_distribution::kind::uniform, 1, 120, 1, 120};
  g.output = length_distribution{length_distribution::kind::uniform, 1, 24, 1, 24};
  g.system_tokens = 32;  // shared prefixes: prefix hits and shared blocks under preemption
  g.system_prompts = 2;
  workload w = generate_workload(g);
  return w;
}

}  // namespace

TEST(Serving, NoRequestLostUnderRandomArrivalsCancelsAndPreemptions) {
  std::int64_t preemptions = 0, cancelled = 0, hits = 0, ahead = 0;
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const workload w = random_workload(seed, 40);
    // Few blocks: 24 x 16 tokens, while the batch wants far more: preemption by recompute.
    cpu_engine exec(tiny(), random_weights(tiny(), seed), 24);
    kv_cache_manager kv(kv_config(24));
    scheduler_config sc;
    sc.max_batched_tokens = 96;
    sc.max_model_len = tiny().max_context;
    fake_clock clk;
    // Even seeds overlap: steps planned ahead while one runs, cancels arriving mid-step.
    serving_loop loop(exec, kv, sc, tiny(), std::ref(clk), seed % 2 == 0);
    replay_options o;
    o.vocab = tiny().vocab;
    o.wait_until = [&clk](double t) { clk.t = std::max(clk.t, t); };
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < w.requests.size(); ++i) {
      if (rng() % 4 == 0) o.cancel_after[i] = static_cast<double>(rng() % 20) * 1e-3;
    }
    // One request longer than the whole cache: rejected with its reason.
    workload big = w;
    big.requests[5].prompt = {prompt_segment{99, 400}};
    big.requests[5].prompt_tokens = 400;
    const replay_result r = replay_workload(big, loop, o, std::ref(clk));
    ASSERT_EQ(r.requests.size(), big.requests.size());
    EXPECT_EQ(r.finished + r.rejected + r.cancelled, std::ssize(big.requests));
    EXPECT_EQ(r.requests[5].record.outcome, request_outcome::rejected);
    EXPECT_EQ(r.requests[5].record.reject_kind, "exceeds_cache");
    for (std::size_t i = 0; i < r.requests.size(); ++i) {
      const auto& q = r.requests[i].record;
      EXPECT_EQ(q.id, i);
      if (q.outcome == request_outcome::finished) {
        EXPECT_EQ(q.output_tokens, big.requests[i].output_tokens);
        EXPECT_GE(q.first_token_seconds, q.arrival_seconds);
        EXPECT_GE(q.finish_seconds, q.first_token_seconds);
      } else if (q.outcome == request_outcome::cancelled) {
        EXPECT_TRUE(o.cancel_after.contains(i));
        EXPECT_LT(q.output_tokens, big.requests[i].output_tokens);
      } else {
        EXPECT_FALSE(q.reject_reason.empty());
      }
      EXPECT_GE(r.requests[i].submit_lag_seconds(), 0.0);
    }
    EXPECT_NO_THROW(kv.check_invariants());
    EXPECT_EQ(kv.pool().num_used(), 0) << "blocks still referenced after every request left";
    EXPECT_EQ(loop.live_requests(), 0);
    if (seed % 2 == 0) ahead += loop.steps_planned_ahead();
    preemptions += r.scheduling.preemptions;
    cancelled += r.cancelled;
    hits += r.kv.hit_tokens_tier1;
    // Every step's record is consistent with the pool.
    for (const auto& s : r.steps) {
      EXPECT_EQ(s.kv_used + s.kv_cached + s.kv_free, 24);
      EXPECT_GT(s.sequences, 0);
      EXPECT_GE(s.gpu_seconds, 0.0);
    }
  }
  EXPECT_GT(ahead, 0) << "the overlapping runs never planned a step ahead";
  EXPECT_GT(preemptions, 0) << "the pool was meant to force preemptions";
  EXPECT_GT(cancelled, 0);
  EXPECT_GT(hits, 0);
}

TEST(Serving, PrefixHitSkipsTheCachedTokensAndGivesTheSameTokens) {
  const auto weights = random_weights(tiny(), 3);
  std::vector<token_id> prompt(70);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<token_id>((i * 37 + 5) % 256);
  auto run_twice = [&](bool prefix_caching) {
    cpu_engine exec(tiny(), weights, 32);
    kv_cache_config kc = kv_config(32);
    kc.prefix_caching = prefix_caching;
    kv_cache_manager kv(kc);
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
    std::vector<std::vector<token_id>> outs(2);
    std::vector<std::int64_t> prefill(2);
    for (int k = 0; k < 2; ++k) {
      serving_request q;
      q.id = static_cast<std::uint64_t>(k);
      q.prompt = prompt;
      q.max_tokens = 6;
      q.on_token = [&outs, k](const token_event& e) {
        EXPECT_EQ(e.index, std::ssize(outs[k]));
        outs[k].push_back(e.token);
      };
      loop.submit(q);
      const auto steps_before = loop.steps().size();
      while (loop.has_work()) loop.step();
      for (auto i = steps_before; i < loop.steps().size(); ++i) {
        prefill[k] += loop.steps()[i].prefill_tokens;
      }
    }
    std::vector<serving_record> recs;
    loop.take_finished(recs);
    EXPECT_EQ(recs.size(), 2u);
    return std::make_tuple(outs, prefill, recs);
  };
  const auto [outs, prefill, recs] = run_twice(true);
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0].size(), 6u);
  EXPECT_EQ(prefill[0], 70);
  EXPECT_EQ(prefill[1], 70 - 64) << "64 tokens (4 full blocks) should come from the cache";
  EXPECT_EQ(recs[1].record.cached_tokens, 64);
  // Without prefix caching the second request computes everything and samples the same tokens.
  const auto [outs_cold, prefill_cold, recs_cold] = run_twice(false);
  EXPECT_EQ(prefill_cold[1], 70);
  EXPECT_EQ(outs_cold[1], outs[1]);
}

TEST(Serving, CancelFreesBlocksAtOnceAndUnknownIdsAreRefused) {
  cpu_engine exec(tiny(), random_weights(tiny(), 4), 16);
  kv_cache_manager kv(kv_config(16));
  fake_clock clk;
  serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
  serving_request q;
  q.id = 11;
  q.prompt.assign(40, 9);
  q.max_tokens = 100;
  loop.submit(q);
  EXPECT_THROW(loop.submit(q), std::invalid_argument);  // the same id while live
  loop.step();
  loop.step();
  EXPECT_GT(kv.pool().num_used(), 0);
  EXPECT_TRUE(loop.cancel(11));
  EXPECT_EQ(kv.pool().num_used(), 0);
  EXPECT_FALSE(loop.cancel(11));
  EXPECT_FALSE(loop.cancel(12));
  EXPECT_FALSE(loop.has_work());
  EXPECT_EQ(loop.step(), nullptr);
  std::vector<serving_record> recs;
  loop.take_finished(recs);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].record.outcome, request_outcome::cancelled);
  EXPECT_EQ(recs[0].record.output_tokens, 2);
  EXPECT_EQ(name(recs[0].record.outcome), "cancelled");
}

TEST(Serving, StopTokensEndARequestAndGreedyTokensDoNotDependOnTheBatch) {
  const auto weights = random_weights(tiny(), 5);
  std::vector<token_id> prompt(33);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<token_id>((i * 11 + 1) % 256);
  // Alone.
  std::vector<token_id> alone;
  {
    cpu_engine exec(tiny(), weights, 64);
    kv_cache_manager kv(kv_config(64));
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
    serving_request q = request(0, prompt, 12);
    q.on_token = [&alone](const token_event& e) { alone.push_back(e.token); };
    loop.submit(q);
    while (loop.has_work()) loop.step();
  }
  ASSERT_EQ(alone.size(), 12u);
  // Inside a batch of others arriving at different times (the CPU references are exact per row).
  std::vector<token_id> batched;
  {
    cpu_engine exec(tiny(), weights, 64);
    kv_cache_manager kv(kv_config(64));
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
    for (int k = 1; k <= 3; ++k) {
      serving_request o = request(static_cast<std::uint64_t>(k),
                                  std::vector<token_id>(static_cast<std::size_t>(10 * k), k), 20);
      loop.submit(o);
    }
    loop.step();
    serving_request q = request(0, prompt, 12);
    q.on_token = [&batched](const token_event& e) { batched.push_back(e.token); };
    loop.submit(q);
    while (loop.has_work()) loop.step();
  }
  EXPECT_EQ(batched, alone);
  // A stop token: the request finishes at its first occurrence.
  {
    cpu_engine exec(tiny(), weights, 64);
    kv_cache_manager kv(kv_config(64));
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
    serving_request q = request(0, prompt, 12, {alone[3]});
    loop.submit(q);
    while (loop.has_work()) loop.step();
    std::vector<serving_record> recs;
    loop.take_finished(recs);
    ASSERT_EQ(recs.size(), 1u);
    const auto first = std::find(alone.begin(), alone.end(), alone[3]) - alone.begin();
    EXPECT_EQ(recs[0].record.output_tokens, first + 1);
  }
}

TEST(Serving, ChatFollowUpsCarryTheModelsAnswersAndHitAsTheSimulationSays) {
  generator_config g;
  g.seed = 9;
  g.sessions = 8;
  g.rate_per_second = 50;
  g.turns = length_distribution{length_distribution::kind::uniform, 2, 4, 1, 4};
  g.think_seconds = length_distribution{length_distribution::kind::fixed, 0.01, 0, 0, 1};
  g.message = length_distribution{length_distribution::kind::uniform, 5, 40, 1, 40};
  g.output = length_distribution{length_distribution::kind::uniform, 3, 20, 1, 20};
  g.system_tokens = 32;
  g.system_prompts = 2;
  const workload w = generate_workload(g);
  cpu_engine exec(tiny(), random_weights(tiny(), 2), 512);
  kv_cache_manager kv(kv_config(512));
  scheduler_config sc;
  sc.max_model_len = tiny().max_context;
  fake_clock clk;
  serving_loop loop(exec, kv, sc, tiny(), std::ref(clk));
  replay_options o;
  o.vocab = tiny().vocab;
  o.wait_until = [&clk](double t) { clk.t = std::max(clk.t, t); };
  const replay_result r = replay_workload(w, loop, o, std::ref(clk));
  EXPECT_EQ(r.finished, std::ssize(w.requests));
  // An ample pool evicts nothing: every follow-up finds its whole conversation cached, exactly as
  // in the simulation, whose outputs are the workload's stand-in tokens. Had the follow-ups
  // carried the stand-ins instead of the model's answers, the blocks holding answers would miss.
  simulation_config c;
  c.kv = kv_config(512);
  c.scheduler = sc;
  const simulation_result sim =
      simulate(w, c, roofline_step_time_model(tiny(), planner::resolve_gpu("h100-sxm").profile));
  EXPECT_EQ(r.kv.hit_tokens_tier1, sim.kv.hit_tokens_tier1);
  EXPECT_EQ(r.kv.lookup_tokens, sim.kv.lookup_tokens);
  EXPECT_GT(r.kv.hit_tokens_tier1, 0);
}

TEST(Serving, HostTierHitsCopyRealBlocksAndGiveTheColdTokens) {
  const auto weights = random_weights(tiny(), 6);
  // A: a 160-token prompt; then 6 unrelated requests that push A's blocks out of a 20-block pool
  // into the host tier; then A's prompt again plus 7 tokens: a prefix hit served from host memory.
  std::vector<token_id> a(160);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<token_id>((i * 29 + 3) % 256);
  auto again = a;
  for (int i = 0; i < 7; ++i) again.push_back(static_cast<token_id>(i + 100));
  auto run = [&](int gpu_blocks, int host_blocks, std::vector<token_id>& last_tokens,
                 std::int64_t& tier2_hits, std::int64_t& loaded, std::int64_t& saved) {
    cpu_engine exec(tiny(), weights, gpu_blocks);
    exec.set_host_blocks(host_blocks);
    kv_cache_config kc = kv_config(gpu_blocks);
    kc.host_blocks = host_blocks;
    kc.record_transfers = true;
    kv_cache_manager kv(kc);
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk));
    auto serve_one = [&](serving_request q) {
      loop.submit(std::move(q));
      while (loop.has_work()) {
        const step_record* r = loop.step();
        loaded += r->blocks_to_gpu;
        saved += r->blocks_to_host;
      }
    };
    serve_one(request(0, a, 4));
    for (int k = 1; k <= 6; ++k) {
      std::vector<token_id> other(150);
      for (std::size_t i = 0; i < other.size(); ++i) other[i] = static_cast<token_id>((i * 7 + 31 * k) % 256);
      serve_one(request(static_cast<std::uint64_t>(k), other, 4));
    }
    serving_request q = request(99, again, 8);
    q.on_token = [&last_tokens](const token_event& e) { last_tokens.push_back(e.token); };
    serve_one(std::move(q));
    tier2_hits = kv.counters().hit_tokens_tier2;
    kv.check_invariants();
  };
  std::vector<token_id> with_tier, cold;
  std::int64_t hits = 0, loaded = 0, saved = 0, hits_cold = 0, l2 = 0, s2 = 0;
  run(20, 64, with_tier, hits, loaded, saved);
  run(20, 0, cold, hits_cold, l2, s2);
  EXPECT_EQ(hits, 160) << "A's 10 full blocks should come back from the host tier";
  EXPECT_EQ(loaded, 10);
  EXPECT_GT(saved, 10);
  EXPECT_EQ(hits_cold, 0);
  ASSERT_EQ(with_tier.size(), 8u);
  EXPECT_EQ(with_tier, cold) << "tokens after a host-tier hit differ from the cold computation";
}

// Overlap: steps planned ahead (their ids taken from the running step's samples) give every
// request the tokens it gets without overlap, stop where it would, and lose nothing.
TEST(Serving, StepsPlannedAheadGiveTheSameTokensAndLoseNothing) {
  const auto weights = random_weights(tiny(), 8);
  // Stop tokens taken from a first run, so that some requests really stop early.
  auto serve = [&](bool overlap, std::vector<token_id> stop, std::int64_t* planned_ahead) {
    cpu_engine exec(tiny(), weights, 40);
    kv_cache_manager kv(kv_config(40));
    scheduler_config sc;
    sc.max_batched_tokens = 64;
    fake_clock clk;
    serving_loop loop(exec, kv, sc, tiny(), std::ref(clk), overlap);
    std::map<std::uint64_t, std::vector<token_id>> out;
    std::vector<serving_record> recs;
    int submitted = 0, steps = 0;
    auto submit = [&](int k) {
      std::vector<token_id> p(static_cast<std::size_t>(9 + 13 * k % 70));
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<token_id>((k * 37 + i * 11) % 256);
      serving_request q = request(static_cast<std::uint64_t>(k), p, 6 + 5 * k % 30, stop);
      auto* dst = &out[q.id];
      q.on_token = [dst](const token_event& e) {
        EXPECT_EQ(e.index, std::ssize(*dst));
        dst->push_back(e.token);
      };
      loop.submit(std::move(q));
    };
    for (; submitted < 4; ++submitted) submit(submitted);
    while (loop.has_work() || submitted < 12) {
      if (submitted < 12 && steps % 9 == 8) submit(submitted++);
      if (steps == 20) loop.cancel(1);
      if (loop.step() == nullptr && submitted < 12) submit(submitted++);
      ++steps;
      loop.take_finished(recs);
    }
    loop.take_finished(recs);
    EXPECT_EQ(recs.size(), 12u);
    EXPECT_EQ(kv.pool().num_used(), 0);
    EXPECT_NO_THROW(kv.check_invariants());
    if (planned_ahead) *planned_ahead = loop.steps_planned_ahead();
    std::map<std::uint64_t, request_outcome> outcomes;
    for (const auto& r : recs) {
      outcomes[r.record.id] = r.record.outcome;
      EXPECT_EQ(r.record.output_tokens, std::ssize(out[r.record.id])) << r.record.id;
    }
    return std::make_pair(out, outcomes);
  };
  const auto first = serve(false, {}, nullptr);
  // Two tokens that the first run produced early in some requests' outputs.
  const std::vector<token_id> stop = {first.first.at(2).at(2), first.first.at(5).at(1)};
  std::int64_t ahead = 0, ahead_plain = 0;
  const auto plain = serve(false, stop, &ahead_plain);
  const auto overlapped = serve(true, stop, &ahead);
  EXPECT_EQ(ahead_plain, 0);
  EXPECT_GT(ahead, 10) << "overlap never planned a step ahead";
  EXPECT_EQ(plain.second, overlapped.second);
  for (const auto& [id, toks] : plain.first) {
    if (id == 1) continue;  // cancelled: where it stops depends on the steps in flight
    EXPECT_EQ(overlapped.first.at(id), toks) << "request " << id;
  }
  // Some requests stopped on a stop token before their max tokens.
  int stopped_early = 0;
  for (const auto& [id, toks] : plain.first) {
    stopped_early += id != 1 && std::ssize(toks) < 6 + 5 * static_cast<int>(id) % 30;
  }
  EXPECT_GT(stopped_early, 0);
}

TEST(Serving, TokenEventsCarryLogprobsAlsoWhenPlannedAhead) {
  // An executor built with top_logprobs = 4: every token event has the sampled token's
  // log-probability and the top 4 (ids, log-probabilities), the same with steps planned ahead;
  // greedy tokens are the top-1 entry. Built without: NaN and empty.
  const auto weights = random_weights(tiny(), 9);
  constexpr int k_top = 4;
  struct seen {
    token_id token;
    float logprob;
    std::vector<std::int32_t> ids;
    std::vector<float> lps;
  };
  auto serve = [&](bool overlap, int top) {
    cpu_engine exec(tiny(), weights, 40, 16, top);
    kv_cache_manager kv(kv_config(40));
    fake_clock clk;
    serving_loop loop(exec, kv, scheduler_config{}, tiny(), std::ref(clk), overlap);
    std::map<std::uint64_t, std::vector<seen>> out;
    for (int k = 0; k < 4; ++k) {
      std::vector<token_id> p(static_cast<std::size_t>(5 + 7 * k));
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<token_id>((k * 31 + i * 7) % 256);
      serving_request q = request(static_cast<std::uint64_t>(k), p, 9);
      q.sampling.temperature = k % 2 == 0 ? 0.0f : 0.9f;  // greedy and sampled
      q.sampling.seed = static_cast<std::uint64_t>(k) + 100;
      auto* dst = &out[q.id];
      q.on_token = [dst](const token_event& e) {
        dst->push_back({e.token, e.logprob, {e.top_ids.begin(), e.top_ids.end()},
                        {e.top_logprobs.begin(), e.top_logprobs.end()}});
      };
      loop.submit(std::move(q));
    }
    while (loop.has_work()) loop.step();
    return std::make_pair(out, loop.steps_planned_ahead());
  };
  const auto plain = serve(false, k_top);
  const auto ahead = serve(true, k_top);
  EXPECT_GT(ahead.second, 0) << "overlap never planned a step ahead";
  for (const auto& [id, events] : plain.first) {
    ASSERT_EQ(events.size(), 9u) << id;
    const auto& other = ahead.first.at(id);
    ASSERT_EQ(other.size(), events.size()) << id;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const seen& e = events[i];
      ASSERT_EQ(e.ids.size(), static_cast<std::size_t>(k_top));
      ASSERT_EQ(e.lps.size(), static_cast<std::size_t>(k_top));
      EXPECT_LE(e.logprob, 0.0f);
      EXPECT_TRUE(std::is_sorted(e.lps.rbegin(), e.lps.rend())) << "request " << id << " token " << i;
      if (id % 2 == 0) {  // greedy
        EXPECT_EQ(e.ids[0], e.token);
        EXPECT_EQ(e.lps[0], e.logprob);
      }
      for (int j = 0; j < k_top; ++j) {
        if (e.ids[static_cast<std::size_t>(j)] == e.token) {
          EXPECT_EQ(e.lps[static_cast<std::size_t>(j)], e.logprob);
        }
      }
      // Planned ahead: the same tokens and values (the cpu executor is exact per row).
      EXPECT_EQ(other[i].token, e.token);
      EXPECT_EQ(other[i].logprob, e.logprob);
      EXPECT_EQ(other[i].ids, e.ids);
      EXPECT_EQ(other[i].lps, e.lps);
    }
  }
  const auto off = serve(true, 0);
  for (const auto& [id, events] : off.first) {
    ASSERT_EQ(events.size(), 9u);
    for (std::size_t i = 0; i < events.size(); ++i) {
      EXPECT_TRUE(std::isnan(events[i].logprob));
      EXPECT_TRUE(events[i].ids.empty() && events[i].lps.empty());
      EXPECT_EQ(events[i].token, plain.first.at(id)[i].token) << "logprobs changed the tokens";
    }
  }
}
