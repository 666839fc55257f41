// Scheduler: continuous batching step by step, chunked prefill under the token budget, FCFS,
// preemption of the youngest by recompute, rejections with reasons, and that no request is lost.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/engine/workload.hpp"

using namespace ridgeline;

namespace {

std::vector<token_id> prompt_of(int seed, int n) {
  std::vector<token_id> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = (seed * 131 + i * 17) % 32000;
  return t;
}

kv_cache_config kv_config(std::int32_t blocks, std::int32_t block_tokens = 4) {
  kv_cache_config c;
  c.block_tokens = block_tokens;
  c.num_blocks = blocks;
  return c;
}

// Runs the scheduler to the end with step time 1, tokens 7; returns the records by id.
std::map<std::uint64_t, request_record> drain(scheduler& s, double& now, int max_steps = 100000) {
  std::map<std::uint64_t, request_record> out;
  std::vector<request_record> recs;
  s.take_finished(recs);
  for (int i = 0; i < max_steps && s.has_work(); ++i) {
    const auto& p = s.schedule();
    std::vector<token_id> sampled;
    for (const auto& e : p.sequences) {
      if (e.samples) sampled.push_back(7);
    }
    now += 1;
    s.complete(sampled, now);
    s.take_finished(recs);
  }
  for (auto& r : recs) out[r.id] = r;
  return out;
}

}  // namespace

TEST(Scheduler, PrefillThenDecodeWithStepTimes) {
  kv_cache_manager kv(kv_config(64));
  scheduler s({}, kv);
  s.submit(1, 0.0, prompt_of(1, 10), 3);
  const auto& p = s.schedule();
  ASSERT_EQ(p.sequences.size(), 1u);
  EXPECT_TRUE(p.sequences[0].prefill);
  EXPECT_TRUE(p.sequences[0].samples);
  EXPECT_EQ(p.shape.prefill_tokens, 10);
  EXPECT_DOUBLE_EQ(p.shape.attention_pairs, 10 * 5.5);
  s.complete(std::vector<token_id>{5}, 0.5);
  const auto& d = s.schedule();
  ASSERT_EQ(d.sequences.size(), 1u);
  EXPECT_FALSE(d.sequences[0].prefill);
  EXPECT_EQ(d.shape.decode_tokens, 1);
  EXPECT_EQ(d.shape.context_tokens, 10);
  EXPECT_EQ(s.tokens(d.sequences[0].request).back(), 5);
  s.complete(std::vector<token_id>{6}, 0.75);
  s.schedule();
  s.complete(std::vector<token_id>{8}, 1.25);
  std::vector<request_record> recs;
  s.take_finished(recs);
  ASSERT_EQ(recs.size(), 1u);
  const auto& r = recs[0];
  EXPECT_EQ(r.output_tokens, 3);
  EXPECT_DOUBLE_EQ(r.ttft_seconds(), 0.5);
  EXPECT_DOUBLE_EQ(r.e2e_seconds(), 1.25);
  EXPECT_DOUBLE_EQ(r.tpot_seconds(), (1.25 - 0.5) / 2);
  ASSERT_EQ(s.itl_seconds().size(), 2u);
  EXPECT_DOUBLE_EQ(s.itl_seconds()[0], 0.25);
  EXPECT_DOUBLE_EQ(s.itl_seconds()[1], 0.5);
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(kv.pool().num_used(), 0);
}

TEST(Scheduler, ChunkedPrefillRespectsTokenBudgetAndDecodesGoFirst) {
  kv_cache_manager kv(kv_config(256));
  scheduler_config c;
  c.max_batched_tokens = 8;
  scheduler s(c, kv);
  s.submit(1, 0.0, prompt_of(1, 3), 5);
  s.submit(2, 0.1, prompt_of(2, 20), 2);
  auto p = s.schedule();  // 3 tokens of #1, 5 of #2
  ASSERT_EQ(p.sequences.size(), 2u);
  EXPECT_EQ(p.sequences[0].new_tokens, 3);
  EXPECT_EQ(p.sequences[1].new_tokens, 5);
  EXPECT_FALSE(p.sequences[1].samples);
  s.complete(std::vector<token_id>{1}, 1);
  p = s.schedule();  // decode #1 (1 token) + 7 prompt tokens of #2
  ASSERT_EQ(p.sequences.size(), 2u);
  EXPECT_EQ(p.sequences[0].new_tokens, 1);
  EXPECT_EQ(p.sequences[1].new_tokens, 7);
  EXPECT_EQ(p.sequences[1].context_before, 5);
  EXPECT_EQ(p.shape.prefill_tokens + p.shape.decode_tokens, 8);
  s.complete(std::vector<token_id>{1}, 2);
  p = s.schedule();  // decode #1 + last 8 of #2 -> too many: 1 + 7, then 1 more
  EXPECT_LE(p.shape.prefill_tokens + p.shape.decode_tokens, 8);
}

TEST(Scheduler, WithoutChunkingLongPromptIsRejectedAndShortOnesWait) {
  kv_cache_manager kv(kv_config(256));
  scheduler_config c;
  c.max_batched_tokens = 8;
  c.chunked_prefill = false;
  scheduler s(c, kv);
  s.submit(1, 0.0, prompt_of(1, 9), 2);
  s.submit(2, 0.0, prompt_of(2, 6), 2);
  s.submit(3, 0.0, prompt_of(3, 6), 2);
  const auto& p = s.schedule();  // #2 fits, #3 does not (6 + 6 > 8) and waits
  ASSERT_EQ(p.sequences.size(), 1u);
  EXPECT_EQ(p.sequences[0].id, 2u);
  double now = 0;
  s.complete(std::vector<token_id>{1}, now);
  auto recs = drain(s, now);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[1].outcome, request_outcome::rejected);
  EXPECT_NE(recs[1].reject_reason.find("without chunked prefill"), std::string::npos);
  EXPECT_EQ(recs[2].outcome, request_outcome::finished);
  EXPECT_EQ(recs[3].outcome, request_outcome::finished);
}

TEST(Scheduler, RejectsWhatCanNeverRunWithAReason) {
  kv_cache_manager kv(kv_config(4));  // 16 tokens in all
  scheduler_config c;
  c.max_model_len = 12;
  scheduler s(c, kv);
  s.submit(1, 0.0, prompt_of(1, 10), 5);  // 15 > context 12
  s.submit(2, 0.0, {}, 5);
  s.submit(3, 0.0, prompt_of(3, 4), 0);
  s.submit(4, 0.0, prompt_of(4, 8), 4);  // fits: 11 tokens of KV
  scheduler_config big = c;
  big.max_model_len = 0;
  kv_cache_manager kv2(kv_config(4));
  scheduler s2(big, kv2);
  s2.submit(5, 0.0, prompt_of(5, 16), 1);  // 16 + 1 - 1 = 16 tokens of KV: fits exactly
  s2.submit(6, 0.0, prompt_of(6, 16), 2);  // 17 tokens of KV: one block too many
  double now = 0;
  auto recs = drain(s, now);
  auto recs2 = drain(s2, now);
  EXPECT_NE(recs[1].reject_reason.find("exceeds the context"), std::string::npos);
  EXPECT_EQ(recs[2].reject_reason, "empty prompt");
  EXPECT_NE(recs[3].reject_reason.find("max output"), std::string::npos);
  EXPECT_EQ(recs[4].outcome, request_outcome::finished);
  EXPECT_EQ(recs2[5].outcome, request_outcome::finished);
  EXPECT_EQ(recs2[6].outcome, request_outcome::rejected);
  EXPECT_NE(recs2[6].reject_reason.find("whole KV cache"), std::string::npos);
}

TEST(Scheduler, PreemptsYoungestWhenBlocksRunOutAndRecomputes) {
  // 6 blocks of 4 tokens; two requests of 8 prompt tokens each growing by 8: they cannot both
  // finish without one giving its blocks back.
  kv_cache_manager kv(kv_config(6));
  scheduler s({}, kv);
  s.submit(1, 0.0, prompt_of(1, 8), 9);
  s.submit(2, 0.5, prompt_of(2, 8), 9);
  double now = 0;
  bool saw = false;
  std::vector<request_record> recs;
  while (s.has_work()) {
    const auto& p = s.schedule();
    if (p.preemptions > 0) {
      saw = true;
      // The older request keeps running; the younger one went back to waiting.
      ASSERT_EQ(p.sequences.size(), 1u);
      EXPECT_EQ(p.sequences[0].id, 1u);
      EXPECT_EQ(s.num_waiting(), 1);
    }
    std::vector<token_id> sampled;
    for (const auto& e : p.sequences) {
      if (e.samples) sampled.push_back(3);
    }
    s.complete(sampled, now += 1);
    s.take_finished(recs);
    kv.check_invariants();
  }
  EXPECT_TRUE(saw);
  ASSERT_EQ(recs.size(), 2u);
  const auto& young = recs[0].id == 2 ? recs[0] : recs[1];
  EXPECT_EQ(young.outcome, request_outcome::finished);
  EXPECT_GE(young.preemptions, 1);
  EXPECT_EQ(young.output_tokens, 9);
  EXPECT_GE(s.counters().preemptions, 1);
  // What it had computed is computed again, less what the prefix cache still held.
  EXPECT_GT(young.preempted_tokens_recomputed + young.cached_tokens, 0);
  EXPECT_EQ(kv.pool().num_used(), 0);
}

TEST(Scheduler, SecondRequestHitsThePrefixTheFirstComputed) {
  kv_cache_manager kv(kv_config(64));
  scheduler s({}, kv);
  auto a = prompt_of(1, 18);
  auto b = a;
  b.push_back(99);
  s.submit(1, 0.0, a, 2);
  double now = 0;
  drain(s, now);
  s.submit(2, now, b, 2);
  auto recs = drain(s, now);
  EXPECT_EQ(recs[2].cached_tokens, 16);  // 4 full blocks of the 18 shared tokens
  EXPECT_EQ(kv.counters().hit_tokens_tier1, 16);
  EXPECT_EQ(kv.counters().lookup_tokens, 18 + 19);
}

// Random arrivals, lengths and a small cache: every request comes back exactly once, finished
// with all its tokens or rejected with a reason, and the cache is empty at the end.
TEST(SchedulerProperty, NoRequestIsLost) {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    std::mt19937_64 rng(seed);
    kv_cache_manager kv(kv_config(40, 4));
    scheduler_config c;
    c.max_running = 1 + static_cast<std::int32_t>(seed * 2);
    c.max_batched_tokens = 16 + static_cast<std::int64_t>(seed * 5);
    scheduler s(c, kv);
    std::map<std::uint64_t, std::int32_t> want;
    double now = 0;
    std::vector<request_record> recs;
    std::uint64_t next_id = 0;
    for (int step = 0; step < 20000 && (next_id < 300 || s.has_work()); ++step) {
      if (next_id < 300 && rng() % 3 == 0) {
        const auto out = static_cast<std::int32_t>(1 + rng() % 40);
        want[next_id] = out;
        s.submit(next_id, now,
                 prompt_of(static_cast<int>(rng() % 4), 1 + static_cast<int>(rng() % 150)), out);
        ++next_id;
      }
      if (!s.has_work()) continue;
      const auto& p = s.schedule();
      std::vector<token_id> sampled;
      for (const auto& e : p.sequences) {
        if (e.samples) sampled.push_back(1);
      }
      s.complete(sampled, now += 0.01);
      s.take_finished(recs);
      if (step % 97 == 0) kv.check_invariants();
    }
    ASSERT_FALSE(s.has_work());
    ASSERT_EQ(recs.size(), 300u) << "seed " << seed;
    std::set<std::uint64_t> ids;
    int rejected = 0;
    for (const auto& r : recs) {
      EXPECT_TRUE(ids.insert(r.id).second) << "request " << r.id << " came back twice";
      if (r.outcome == request_outcome::finished) {
        EXPECT_EQ(r.output_tokens, want[r.id]);
        EXPECT_GE(r.first_token_seconds, r.arrival_seconds);
        EXPECT_GE(r.finish_seconds, r.first_token_seconds);
      } else {
        EXPECT_FALSE(r.reject_reason.empty());
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 0);  // prompts up to 150 + 40 tokens against 160 tokens of cache
    EXPECT_GT(s.counters().preemptions, 0);
    // The scheduler's counters are the sums of what the records say.
    std::int64_t preemptions = 0, recomputed = 0;
    for (const auto& r : recs) {
      preemptions += r.preemptions;
      recomputed += r.preempted_tokens_recomputed;
    }
    EXPECT_EQ(s.counters().preemptions, preemptions);
    EXPECT_EQ(s.counters().preempted_tokens_recomputed, recomputed);
    EXPECT_EQ(kv.pool().num_used(), 0);
    kv.check_invariants();
  }
}

namespace {

// Seconds = a linear function of every field of the shape, so two different shapes (almost
// surely) give different times.
struct shape_model final : step_time_model {
  double step_seconds(const step_shape& s) const override {
    return 1e-3 * s.sequences + 1e-5 * static_cast<double>(s.prefill_tokens) +
           1e-4 * static_cast<double>(s.decode_tokens) + 1e-6 * s.sampled_tokens +
           1e-8 * static_cast<double>(s.context_tokens) + 1e-9 * s.attention_pairs +
           1e-2 * s.tier2_blocks_loaded;
  }
  std::string description() const override { return "shape"; }
  double prefill_flops(std::int64_t t) const override { return static_cast<double>(t); }
  double prefill_seconds(std::int64_t t) const override { return static_cast<double>(t) * 1e-6; }
};

}  // namespace

// The executor seam: a plan's sequences carry the KV manager's block tables and the scheduler's
// tokens, their shape is the plan's, and the simulated executor times and "samples" them.
TEST(Executor, PlanSequencesMatchThePlanAndTheSimulatedExecutorRunsThem) {
  kv_cache_manager kv(kv_config(40, 4));
  scheduler_config c;
  c.max_batched_tokens = 24;  // chunked prefills beside decodes
  scheduler s(c, kv);
  for (int i = 0; i < 6; ++i) {
    s.submit(static_cast<std::uint64_t>(i), 0.0, prompt_of(i, 5 + 7 * i), 4 + i);
  }
  const shape_model model;
  simulated_executor exec(model);
  std::vector<step_sequence> seqs;
  double now = 0;
  int decode_entries = 0;
  std::vector<request_record> recs;
  while (s.has_work()) {
    const step_plan& p = s.schedule();
    plan_sequences(p, s, kv, seqs);
    ASSERT_EQ(seqs.size(), p.sequences.size());
    for (std::size_t j = 0; j < seqs.size(); ++j) {
      const auto& e = p.sequences[j];
      const auto& q = seqs[j];
      EXPECT_EQ(q.context_before, e.context_before);
      EXPECT_EQ(q.new_tokens, e.new_tokens);
      EXPECT_EQ(q.samples, e.samples);
      EXPECT_EQ(q.prefill, e.prefill);
      EXPECT_EQ(q.blocks.data(), kv.block_table(e.sequence).data());
      EXPECT_GE(static_cast<std::int64_t>(q.blocks.size()) * 4, q.context_before + q.new_tokens);
      EXPECT_EQ(q.tokens.data(), s.tokens(e.request).data());
      decode_entries += !e.prefill;
      seqs[j].sampling.seed = 100 + e.id;
      seqs[j].sampling.step = static_cast<std::uint64_t>(s.generated(e.request));
    }
    const step_shape shape = shape_of(seqs);
    EXPECT_EQ(shape.sequences, p.shape.sequences);
    EXPECT_EQ(shape.prefill_tokens, p.shape.prefill_tokens);
    EXPECT_EQ(shape.decode_tokens, p.shape.decode_tokens);
    EXPECT_EQ(shape.sampled_tokens, p.shape.sampled_tokens);
    EXPECT_EQ(shape.context_tokens, p.shape.context_tokens);
    EXPECT_EQ(shape.attention_pairs, p.shape.attention_pairs);
    exec.load_host_blocks(2);
    const step_output out = exec.step(seqs);
    step_shape with_copies = p.shape;
    with_copies.tier2_blocks_loaded = 2;
    EXPECT_EQ(out.forward_seconds, model.step_seconds(with_copies));
    std::size_t k = 0;
    for (std::size_t j = 0; j < seqs.size(); ++j) {
      if (!seqs[j].samples) continue;
      ASSERT_LT(k, out.tokens.size());
      EXPECT_EQ(out.tokens[k++],
                segment_token(seqs[j].sampling.seed,
                              static_cast<std::int64_t>(seqs[j].sampling.step)));
    }
    EXPECT_EQ(k, out.tokens.size());
    s.complete(out.tokens, now += out.forward_seconds);
    s.take_finished(recs);
  }
  EXPECT_EQ(recs.size(), 6u);
  EXPECT_GT(decode_entries, 0);
  // The host-tier copies are announced once: the next step is back to the model's time alone.
  s.submit(99, now, prompt_of(9, 3), 1);
  const step_plan& p = s.schedule();
  plan_sequences(p, s, kv, seqs);
  EXPECT_EQ(exec.step(seqs).forward_seconds, model.step_seconds(p.shape));
  EXPECT_THROW(exec.step({}), std::invalid_argument);
}
