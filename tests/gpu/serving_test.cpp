// The serving loop on the cuda executor (tiny model, deterministic mode): a request's greedy tokens
// are bitwise the same alone and inside a served batch of ragged, chunked, mixed steps; a pool
// sized to force preemption and eviction finishes every request, and its greedy tokens equal
// those of an ample pool (recompute by prefill gives the bits decode gave); a prefix hit gives the
// same tokens as the cold computation; cancels free blocks.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "gpu_test_util.hpp"
#include "ridgeline/engine/cpu_engine.hpp"
#include "ridgeline/engine/cuda_engine.hpp"
#include "ridgeline/engine/serving.hpp"

using namespace ridgeline;

namespace {

model_preset tiny_model() { return {"tiny-serve", 2, 256, 4, 2, 64, 520, 777, 1024, false}; }

engine_options options(int kv_blocks) {
  engine_options o;
  o.num_kv_blocks = kv_blocks;
  o.batch_invariant = true;
  o.seed = 7;
  o.max_tokens = 256;
  o.max_seqs = 32;
  o.graph_table_blocks = 8;
  return o;
}

std::vector<token_id> prompt_of(int seed, int n) {
  std::vector<token_id> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = (seed * 131 + i * 17 + 3) % 777;
  return t;
}

// Serves the requests (id -> prompt, max tokens), submitted in order, `stagger` steps apart;
// returns every request's tokens and the run's preemption count.
struct served {
  std::map<std::uint64_t, std::vector<token_id>> tokens;
  std::int64_t preemptions = 0, evictions = 0, hit_tokens = 0;
  std::vector<serving_record> records;
};
served serve(cuda_engine& exec, int kv_blocks, const std::vector<serving_request>& reqs,
             int stagger, std::int64_t max_batched_tokens = 256) {
  const model_preset m = tiny_model();
  kv_cache_manager kv(make_kv_cache_config(m, dtype::bf16, 16, kv_blocks));
  scheduler_config sc;
  sc.max_batched_tokens = max_batched_tokens;
  sc.max_running = 32;
  serving_loop loop(exec, kv, sc, m, steady_seconds);
  served out;
  std::size_t next = 0;
  int since = stagger;
  while (next < reqs.size() || loop.has_work()) {
    if (next < reqs.size() && since >= stagger) {
      serving_request q = reqs[next++];
      q.arrival_seconds = steady_seconds();
      auto* dst = &out.tokens[q.id];
      q.on_token = [dst](const token_event& e) { dst->push_back(e.token); };
      loop.submit(std::move(q));
      since = 0;
      continue;
    }
    loop.step();
    ++since;
    loop.take_finished(out.records);
  }
  loop.take_finished(out.records);
  kv.check_invariants();
  EXPECT_EQ(kv.pool().num_used(), 0);
  out.preemptions = loop.sched().counters().preemptions;
  out.evictions = kv.counters().evictions_tier1;
  out.hit_tokens = kv.counters().hit_tokens_tier1;
  return out;
}

serving_request request(std::uint64_t id, std::vector<token_id> prompt, int max_tokens) {
  serving_request q;
  q.id = id;
  q.prompt = std::move(prompt);
  q.max_tokens = max_tokens;
  return q;
}

}  // namespace

TEST(Serving, GreedyTokensAloneEqualTokensInsideAServedBatch) {
  RIDGELINE_REQUIRE_GPU();
  cuda_engine exec(tiny_model(), options(512));
  const auto target = request(0, prompt_of(1, 77), 40);
  const served alone = serve(exec, 512, {target}, 0);
  std::vector<serving_request> batch;
  for (int k = 1; k <= 12; ++k) batch.push_back(request(k, prompt_of(k + 10, 20 + 37 * k % 300), 30));
  batch.insert(batch.begin() + 5, target);
  const served together = serve(exec, 512, batch, 2, 96);  // chunked, mixed, ragged steps
  ASSERT_EQ(alone.tokens.at(0).size(), 40u);
  EXPECT_EQ(together.tokens.at(0), alone.tokens.at(0));
}

TEST(Serving, ForcedPreemptionFinishesEveryRequestWithTheAmplePoolsTokens) {
  RIDGELINE_REQUIRE_GPU();
  std::vector<serving_request> reqs;
  for (int k = 0; k < 16; ++k) reqs.push_back(request(k, prompt_of(k, 60 + 13 * k), 48));
  cuda_engine ample_exec(tiny_model(), options(512));
  const served ample = serve(ample_exec, 512, reqs, 0);
  EXPECT_EQ(ample.preemptions, 0);
  // 40 blocks of 16 tokens for 16 requests of up to 300 tokens: preemption and eviction.
  cuda_engine tight_exec(tiny_model(), options(40));
  const served tight = serve(tight_exec, 40, reqs, 0);
  EXPECT_GT(tight.preemptions, 0);
  ASSERT_EQ(tight.records.size(), reqs.size());
  for (const auto& r : tight.records) {
    EXPECT_EQ(r.record.outcome, request_outcome::finished) << r.record.reject_reason;
    EXPECT_EQ(r.record.output_tokens, 48);
  }
  int differing = 0;
  for (const auto& q : reqs) differing += tight.tokens.at(q.id) != ample.tokens.at(q.id);
  EXPECT_EQ(differing, 0) << "recompute by prefill after preemption changed greedy tokens";
}

TEST(Serving, PrefixHitGivesTheColdTokensAndCancelFreesBlocks) {
  RIDGELINE_REQUIRE_GPU();
  cuda_engine exec(tiny_model(), options(256));
  const auto p = prompt_of(3, 200);
  auto extended = p;
  for (int i = 0; i < 9; ++i) extended.push_back((i * 7) % 777);
  // Cold: each alone on a fresh engine state (prefix caching cannot help the first request).
  const served cold = serve(exec, 256, {request(1, extended, 16)}, 0);
  // Warm: the shared 200-token prompt first, then the extended one hits 12 full blocks.
  const served warm = serve(exec, 256, {request(0, p, 4), request(1, extended, 16)}, 1000);
  EXPECT_EQ(warm.hit_tokens, 192);
  EXPECT_EQ(warm.tokens.at(1), cold.tokens.at(1));

  const model_preset m = tiny_model();
  kv_cache_manager kv(make_kv_cache_config(m, dtype::bf16, 16, 256));
  serving_loop loop(exec, kv, scheduler_config{}, m, steady_seconds);
  loop.submit(request(5, p, 100));
  loop.step();
  loop.step();
  EXPECT_GT(kv.pool().num_used(), 0);
  EXPECT_TRUE(loop.cancel(5));
  EXPECT_EQ(kv.pool().num_used(), 0);
  std::vector<serving_record> recs;
  loop.take_finished(recs);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].record.outcome, request_outcome::cancelled);
}

TEST(Serving, HostTierHitsAreCopiedOverPcieAndGiveTheColdTokens) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  const auto a = prompt_of(21, 160);
  auto again = a;
  for (int i = 0; i < 7; ++i) again.push_back(100 + i);
  auto run = [&](int host_blocks, std::vector<token_id>& last, std::int64_t& tier2_hits,
                 double& copy_seconds, std::int64_t& loaded) {
    engine_options o = options(20);
    o.host_kv_blocks = host_blocks;
    cuda_engine exec(m, o);
    kv_cache_config kc = make_kv_cache_config(m, dtype::bf16, 16, 20);
    kc.host_blocks = host_blocks;
    kc.record_transfers = true;
    kv_cache_manager kv(kc);
    serving_loop loop(exec, kv, scheduler_config{}, m, steady_seconds);
    auto serve_one = [&](serving_request q) {
      loop.submit(std::move(q));
      while (loop.has_work()) {
        const step_record* r = loop.step();
        copy_seconds += r->copy_seconds;
        loaded += r->blocks_to_gpu;
      }
    };
    serve_one(request(0, a, 4));
    for (int k = 1; k <= 6; ++k) serve_one(request(k, prompt_of(40 + k, 150), 4));
    serving_request q = request(99, again, 12);
    q.on_token = [&last](const token_event& e) { last.push_back(e.token); };
    serve_one(std::move(q));
    tier2_hits = kv.counters().hit_tokens_tier2;
  };
  std::vector<token_id> warm, cold;
  std::int64_t hits = 0, hits_cold = 0, loaded = 0, loaded_cold = 0;
  double copy = 0, copy_cold = 0;
  run(64, warm, hits, copy, loaded);
  run(0, cold, hits_cold, copy_cold, loaded_cold);
  EXPECT_EQ(hits, 160);
  EXPECT_EQ(loaded, 10);
  EXPECT_GT(copy, 0.0) << "the copies' CUDA-event time";
  EXPECT_EQ(hits_cold, 0);
  ASSERT_EQ(warm.size(), 12u);
  EXPECT_EQ(warm, cold);
}

namespace {

// Runs every step on both executors over the same block tables (each its own KV pool) and hands
// the CPU's tokens back (teacher forcing): the served run follows the CPU's history, and each
// step's GPU logits are checked against the CPU's with the engine tests' rule.
class lockstep_executor final : public executor {
 public:
  lockstep_executor(cuda_engine& gpu, cpu_engine& cpu, int vocab)
      : m_gpu(gpu), m_cpu(cpu), m_vocab(vocab) {}
  step_output step(std::span<const step_sequence> seqs) override {
    const step_output g = m_gpu.step(seqs);
    step_output c = m_cpu.step(seqs);
    EXPECT_EQ(g.logits.size(), c.logits.size());
    for (std::size_t row = 0; row * m_vocab < c.logits.size() && row < g.tokens.size(); ++row) {
      const float* cr = &c.logits[row * m_vocab];
      const float* gr = &g.logits[row * m_vocab];
      bool bad = false;
      for (int v = 0; v < m_vocab; ++v) {
        const double err = std::fabs(double(gr[v]) - cr[v]);
        const double tol = 0.03 + 0.03 * std::fabs(cr[v]);
        worst = std::max(worst, err / tol);
        bad |= !(err <= tol);
      }
      logit_errors += bad;
      std::vector<float> sorted(cr, cr + m_vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      const double margin = sorted[0] - sorted[1];
      if (g.tokens[row] != c.tokens[row] && margin > 2 * (0.03 + 0.03 * std::fabs(sorted[0]))) {
        ++token_mismatches;
      }
      ++rows;
    }
    ++steps;
    return c;
  }
  void copy_blocks(std::span<const block_transfer> t) override {
    m_gpu.copy_blocks(t);
    m_cpu.copy_blocks(t);
  }
  std::int32_t host_blocks() const override { return std::min(m_gpu.host_blocks(), m_cpu.host_blocks()); }
  double worst = 0;
  std::int64_t logit_errors = 0, token_mismatches = 0, rows = 0, steps = 0;

 private:
  cuda_engine& m_gpu;
  cpu_engine& m_cpu;
  int m_vocab;
};

}  // namespace

TEST(Serving, CudaAgreesWithTheCpuExecutorOnAServedWorkloadTeacherForced) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  engine_options o = options(48);
  o.batch_invariant = false;
  o.return_logits = true;
  o.host_kv_blocks = 32;
  cuda_engine gpu(m, o);
  cpu_engine cpu(m, gpu.download_weights(), 48);
  cpu.set_host_blocks(32);
  lockstep_executor both(gpu, cpu, m.vocab);
  kv_cache_config kc = make_kv_cache_config(m, dtype::bf16, 16, 48);
  kc.host_blocks = 32;
  kc.record_transfers = true;
  kv_cache_manager kv(kc);
  scheduler_config sc;
  sc.max_batched_tokens = 80;  // chunked prefill, mixed steps
  serving_loop loop(both, kv, sc, m, steady_seconds);
  // Ragged prompts with a shared 64-token prefix, a pool small enough to preempt and evict.
  const auto shared = prompt_of(5, 64);
  for (int k = 0; k < 10; ++k) {
    auto p = shared;
    const auto tail = prompt_of(100 + k, 10 + 23 * k % 150);
    p.insert(p.end(), tail.begin(), tail.end());
    loop.submit(request(k, std::move(p), 24));
  }
  while (loop.has_work()) loop.step();
  std::vector<serving_record> recs;
  loop.take_finished(recs);
  ASSERT_EQ(recs.size(), 10u);
  for (const auto& r : recs) EXPECT_EQ(r.record.outcome, request_outcome::finished);
  EXPECT_GT(loop.sched().counters().preemptions + kv.counters().evictions_tier1, 0);
  EXPECT_GT(kv.counters().hit_tokens_tier1 + kv.counters().hit_tokens_tier2, 0);
  EXPECT_EQ(both.logit_errors, 0) << "worst logit error at " << both.worst << " of its tolerance";
  EXPECT_EQ(both.token_mismatches, 0);
  std::printf("served lockstep: %lld steps, %lld sampled rows, worst logit error %.3f of tolerance\n",
              static_cast<long long>(both.steps), static_cast<long long>(both.rows), both.worst);
}

// Overlap on the GPU: steps queued behind the running one take their ids from its samples on the
// device; in deterministic mode every request gets the tokens it gets without overlap.
TEST(Serving, StepsQueuedAheadOnTheGpuGiveTheSameTokens) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  auto serve_all = [&](bool overlap, std::int64_t& ahead, double& gap_median) {
    cuda_engine exec(m, options(256));
    kv_cache_manager kv(make_kv_cache_config(m, dtype::bf16, 16, 256));
    scheduler_config sc;
    sc.max_batched_tokens = 128;
    serving_loop loop(exec, kv, sc, m, steady_seconds, overlap);
    std::map<std::uint64_t, std::vector<token_id>> out;
    for (int k = 0; k < 12; ++k) {
      serving_request q = request(k, prompt_of(k + 3, 15 + 17 * k % 90), 40);
      auto* dst = &out[q.id];
      q.on_token = [dst](const token_event& e) { dst->push_back(e.token); };
      loop.submit(std::move(q));
    }
    while (loop.has_work()) loop.step();
    std::vector<serving_record> recs;
    loop.take_finished(recs);
    EXPECT_EQ(recs.size(), 12u);
    EXPECT_EQ(kv.pool().num_used(), 0);
    ahead = loop.steps_planned_ahead();
    std::vector<double> gaps;
    for (const auto& r : loop.steps()) {
      if (r.gap_seconds >= 0 && r.prefill_tokens == 0) gaps.push_back(r.gap_seconds);
    }
    std::sort(gaps.begin(), gaps.end());
    gap_median = gaps.empty() ? -1 : gaps[gaps.size() / 2];
    return out;
  };
  std::int64_t a0 = 0, a1 = 0;
  double g0 = 0, g1 = 0;
  const auto plain = serve_all(false, a0, g0);
  const auto overlapped = serve_all(true, a1, g1);
  EXPECT_EQ(a0, 0);
  EXPECT_GT(a1, 20);
  EXPECT_EQ(plain, overlapped);
  std::printf("overlap: %lld steps queued ahead; decode-step GPU idle median %.1f us without, "
              "%.1f us with\n", static_cast<long long>(a1), g0 * 1e6, g1 * 1e6);
}

// serve --max-logprobs on the GPU: token events carry the sampled token's log-probability and
// the top 4, the same with steps queued ahead (deterministic mode: bitwise), greedy tokens are
// their top-1 entry, and the tokens equal those of an engine built without log-probabilities.
TEST(Serving, TokenEventsCarryLogprobsWithStepsQueuedAheadOnTheGpu) {
  RIDGELINE_REQUIRE_GPU();
  const model_preset m = tiny_model();
  struct seen {
    token_id token;
    float logprob;
    std::vector<std::int32_t> ids;
    std::vector<float> lps;
  };
  auto serve_all = [&](bool overlap, int top) {
    engine_options o = options(256);
    o.top_logprobs = top;
    cuda_engine exec(m, o);
    kv_cache_manager kv(make_kv_cache_config(m, dtype::bf16, 16, 256));
    scheduler_config sc;
    sc.max_batched_tokens = 128;
    serving_loop loop(exec, kv, sc, m, steady_seconds, overlap);
    std::map<std::uint64_t, std::vector<seen>> out;
    for (int k = 0; k < 8; ++k) {
      serving_request q = request(k, prompt_of(k + 40, 11 + 19 * k % 80), 24);
      if (k % 2 == 1) {
        q.sampling.temperature = 0.9f;
        q.sampling.seed = 1000 + static_cast<std::uint64_t>(k);
      }
      auto* dst = &out[q.id];
      q.on_token = [dst](const token_event& e) {
        dst->push_back({e.token, e.logprob, {e.top_ids.begin(), e.top_ids.end()},
                        {e.top_logprobs.begin(), e.top_logprobs.end()}});
      };
      loop.submit(std::move(q));
    }
    while (loop.has_work()) loop.step();
    std::vector<serving_record> recs;
    loop.take_finished(recs);
    EXPECT_EQ(recs.size(), 8u);
    EXPECT_EQ(kv.pool().num_used(), 0);
    return out;
  };
  const auto plain = serve_all(false, 4);
  const auto ahead = serve_all(true, 4);
  const auto off = serve_all(true, 0);
  for (const auto& [id, events] : plain) {
    ASSERT_EQ(events.size(), 24u) << id;
    const auto& other = ahead.at(id);
    const auto& none = off.at(id);
    ASSERT_EQ(other.size(), events.size());
    ASSERT_EQ(none.size(), events.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      const seen& e = events[i];
      ASSERT_EQ(e.ids.size(), 4u);
      EXPECT_LE(e.logprob, 0.0f);
      EXPECT_TRUE(std::is_sorted(e.lps.rbegin(), e.lps.rend()));
      if (id % 2 == 0) {
        EXPECT_EQ(e.ids[0], e.token) << "request " << id << " token " << i;
        EXPECT_EQ(e.lps[0], e.logprob);
      }
      EXPECT_EQ(other[i].token, e.token) << "request " << id << " token " << i;
      EXPECT_EQ(other[i].logprob, e.logprob);
      EXPECT_EQ(other[i].ids, e.ids);
      EXPECT_EQ(other[i].lps, e.lps);
      EXPECT_EQ(none[i].token, e.token) << "log-probabilities changed the tokens";
      EXPECT_TRUE(std::isnan(none[i].logprob) && none[i].ids.empty());
    }
  }
}
