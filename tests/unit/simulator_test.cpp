// Simulated executor: replays of the shipped real traces (Mooncake hit ratio against the paper,
// the hit-rate curve against capacity), latency definitions on a hand-checked case, chat sessions.
#include <gtest/gtest.h>

#include <cmath>

#include "ridgeline/engine/simulator.hpp"

using namespace ridgeline;

namespace {

const std::string k_traces = std::string(RIDGELINE_SOURCE_DIR) + "/data/traces/";

gpu_profile h100() {
  gpu_profile p;
  p.key = "h100-sxm";
  p.source = "datasheet";
  p.datasheet_bytes_per_second = 3.35e12;
  p.peaks[dtype::bf16] = {0, 989e12};
  return p;
}

// Every step takes the same time: latencies become step counts.
struct constant_model final : step_time_model {
  double seconds;
  explicit constant_model(double s) : seconds(s) {}
  double step_seconds(const step_shape&) const override { return seconds; }
  std::string description() const override { return "constant"; }
  double prefill_flops(std::int64_t t) const override { return static_cast<double>(t); }
  double prefill_seconds(std::int64_t t) const override { return static_cast<double>(t) * 1e-6; }
};

double token_hit_ratio(const simulation_result& r) {
  return static_cast<double>(r.kv.hit_tokens_tier1 + r.kv.hit_tokens_tier2) /
         static_cast<double>(r.kv.lookup_tokens);
}

}  // namespace

TEST(Simulator, MooncakeUnlimitedHitRatioNearPaper) {
  const workload w = load_mooncake_trace(k_traces + "mooncake_synthetic_trace.jsonl");
  ASSERT_EQ(w.requests.size(), 3993u);
  const auto& m = model_preset_by_name("llama-3-70b");
  simulation_config c;
  c.kv = make_kv_cache_config(m, dtype::bf16, 512,
                              static_cast<std::int32_t>(unlimited_blocks(w, 512)));
  c.scheduler.max_model_len = 0;
  c.scheduler.max_batched_tokens = 16384;
  const auto r = simulate(w, c, roofline_step_time_model(m, h100()));
  EXPECT_EQ(r.finished, 3993);
  EXPECT_EQ(r.kv.evictions_tier1, 0);
  const double hit = token_hit_ratio(r);
  // Mooncake FAST'25 reports ~66% for this trace with unlimited capacity (docs/kv.md says how
  // we count). Offline count over the trace: 65.0% (full blocks) / 65.1% (partial blocks too).
  std::printf("mooncake unlimited: token hit %.4f block hit %.4f (%lld / %lld tokens)\n", hit,
              static_cast<double>(r.kv.hit_blocks_tier1) / static_cast<double>(r.kv.lookup_blocks),
              static_cast<long long>(r.kv.hit_tokens_tier1), static_cast<long long>(r.kv.lookup_tokens));
  // The replay is deterministic: it gives these counts exactly (a change to the scheduler, the
  // KV manager or the trace parser that moves them must say why), so the ratio is pinned tight.
  EXPECT_NEAR(hit, 0.650431, 1e-4);
  // The paper's ~66% is context, not the pin: a loose sanity check that our counting still lands
  // near it.
  EXPECT_NEAR(hit, 0.66, 0.03) << "far from Mooncake FAST'25's ~66%";
  EXPECT_EQ(r.kv.hit_tokens_tier1, 39802880);
  EXPECT_EQ(r.kv.lookup_tokens, 61194628);
  EXPECT_EQ(r.kv.hit_blocks_tier1, 77740);
  EXPECT_EQ(r.kv.lookup_blocks, 117888);
}

TEST(Simulator, MooncakeHitRateFallsAsCapacityShrinks) {
  const workload w = load_mooncake_trace(k_traces + "mooncake_synthetic_trace.jsonl");
  const auto& m = model_preset_by_name("llama-3-70b");
  const roofline_step_time_model model(m, h100());
  const auto unlimited = unlimited_blocks(w, 512);
  double previous = 1.0;
  for (double fraction : {1.0, 0.2, 0.05, 0.01}) {
    simulation_config c;
    c.kv = make_kv_cache_config(
        m, dtype::bf16, 512, static_cast<std::int32_t>(static_cast<double>(unlimited) * fraction));
    c.scheduler.max_batched_tokens = 16384;
    const auto r = simulate(w, c, model);
    EXPECT_EQ(r.finished + r.rejected, 3993);
    const double hit = token_hit_ratio(r);
    EXPECT_LT(hit, previous - (fraction < 1.0 ? 0.02 : -1.0)) << "capacity fraction " << fraction;
    if (fraction < 1.0) {
      EXPECT_GT(r.kv.evictions_tier1, 0);
    }
    previous = hit;
  }
  EXPECT_LT(previous, 0.2);  // 1% of the working set keeps little
}

TEST(Simulator, LatenciesFollowTheDefinitions) {
  // Two requests, constant 10 ms steps, budget large enough for both prompts in one step.
  workload w;
  for (int i = 0; i < 2; ++i) {
    workload_request r;
    r.id = static_cast<std::uint64_t>(i);
    r.arrival_seconds = 0.0;
    r.prompt = {{static_cast<std::uint64_t>(100 + i), 40}};
    r.prompt_tokens = 40;
    r.output_tokens = i == 0 ? 4 : 1;
    r.output_seed = 7;
    w.requests.push_back(r);
  }
  simulation_config c;
  c.kv.block_tokens = 16;
  c.kv.num_blocks = 64;
  const auto r = simulate(w, c, constant_model(0.01));
  ASSERT_EQ(r.finished, 2);
  EXPECT_NEAR(r.requests[0].ttft_seconds(), 0.01, 1e-12);
  EXPECT_NEAR(r.requests[0].e2e_seconds(), 0.04, 1e-12);
  EXPECT_NEAR(r.requests[0].tpot_seconds(), 0.01, 1e-12);
  EXPECT_FALSE(r.requests[1].has_tpot());  // one output token: TPOT undefined
  ASSERT_EQ(r.itl_seconds.size(), 3u);
  for (double g : r.itl_seconds) EXPECT_NEAR(g, 0.01, 1e-12);
  EXPECT_EQ(r.steps, 4);
}

TEST(Simulator, ChatTurnsHitTheConversationUnlessEvicted) {
  const auto w = generate_workload(parse_generator_spec(
      "sessions=40,turns=fixed:4,think=fixed:20,message=fixed:64,output=fixed:32,system=256,"
      "system_prompts=1,rate=2,seed=3"));
  const auto& m = model_preset_by_name("llama-2-7b");
  const roofline_step_time_model model(m, h100());
  simulation_config big;
  big.kv =
      make_kv_cache_config(m, dtype::bf16, 16, static_cast<std::int32_t>(unlimited_blocks(w, 16)));
  const auto rb = simulate(w, big, model);
  simulation_config small = big;
  small.kv.num_blocks = 200;  // 3200 tokens: idle conversations lose their blocks
  const auto rs = simulate(w, small, model);
  EXPECT_EQ(rb.finished, 160);
  EXPECT_EQ(rs.finished, 160);
  // Follow-ups arrive after their previous turn plus think time.
  for (std::size_t i = 0; i + 1 < w.requests.size(); ++i) {
    if (w.requests[i].next_turn < 0) continue;
    const auto& next = rb.requests[static_cast<std::size_t>(w.requests[i].next_turn)];
    EXPECT_NEAR(next.arrival_seconds, rb.requests[i].finish_seconds + 20, 1e-9);
  }
  const double hb = token_hit_ratio(rb), hs = token_hit_ratio(rs);
  EXPECT_GT(hb, 0.7);  // every turn but the first reuses the whole conversation
  EXPECT_LT(hs, hb - 0.2);
  EXPECT_EQ(rb.kv.recomputed_tokens, 0);
  EXPECT_GT(rs.kv.recomputed_tokens, 0);  // turns that missed recompute their prefix
  EXPECT_GT(rs.recompute_flops, 0);
  EXPECT_GT(rb.flops_saved, rs.flops_saved);
}

TEST(Simulator, HostTierTurnsEvictionsIntoSlowerHits) {
  const auto w = generate_workload(parse_generator_spec(
      "sessions=40,turns=fixed:4,think=fixed:20,message=fixed:64,output=fixed:32,system=256,"
      "rate=2,seed=3"));
  const auto& m = model_preset_by_name("llama-2-7b");
  const roofline_step_time_model model(m, h100());
  simulation_config c;
  c.kv = make_kv_cache_config(m, dtype::bf16, 16, 200);
  const auto without = simulate(w, c, model);
  c.kv.host_blocks = 100000;
  const auto with = simulate(w, c, model);
  EXPECT_EQ(without.kv.hit_tokens_tier2, 0);
  EXPECT_GT(with.kv.hit_tokens_tier2, 0);
  EXPECT_GT(with.kv.tier2_blocks_loaded, 0);
  EXPECT_GT(token_hit_ratio(with), token_hit_ratio(without));
}

TEST(Simulator, AzureConvReplayFinishesEveryRequest) {
  const workload w = load_azure_trace(k_traces + "azure_llm_2023_conv.csv");
  const auto& m = model_preset_by_name("llama-2-7b");
  simulation_config c;
  c.kv =
      make_kv_cache_config(m, dtype::bf16, 16, blocks_for_budget(m, dtype::bf16, 16, 40LL << 30));
  c.scheduler.max_model_len = m.max_context;
  const auto r = simulate(w, c, roofline_step_time_model(m, h100()));
  EXPECT_EQ(r.finished + r.rejected, 19366);
  EXPECT_GT(r.rejected, 0);  // prompts + outputs beyond Llama-2's 4096-token context
  for (const auto& q : r.requests) {
    if (q.outcome == request_outcome::rejected) {
      EXPECT_EQ(q.reject_kind, "exceeds_context");
    }
  }
  EXPECT_EQ(r.kv.hit_tokens_tier1, 0);  // unique prompts: nothing to share
}

namespace {

// Constant 10 ms steps and a constant loop gap before each.
struct gap_model final : step_time_model {
  double gap;
  explicit gap_model(double g) : gap(g) {}
  double step_seconds(const step_shape&) const override { return 0.01; }
  std::string description() const override { return "constant with a loop gap"; }
  double prefill_flops(std::int64_t t) const override { return static_cast<double>(t); }
  double prefill_seconds(std::int64_t t) const override { return static_cast<double>(t) * 1e-6; }
  double loop_gap_seconds(const step_shape&) const override { return gap; }
};

workload_request request_at(std::uint64_t id, double arrival, std::int64_t output) {
  workload_request r;
  r.id = id;
  r.arrival_seconds = arrival;
  r.prompt = {{100 + id, 40}};
  r.prompt_tokens = 40;
  r.output_tokens = output;
  r.output_seed = 7;
  return r;
}

}  // namespace

TEST(Simulator, LoopGapIsPartOfEveryStepsPeriod) {
  workload w;
  w.requests.push_back(request_at(0, 0.0, 4));
  simulation_config c;
  c.kv.block_tokens = 16;
  c.kv.num_blocks = 64;
  const auto r = simulate(w, c, gap_model(0.001));
  ASSERT_EQ(r.finished, 1);
  // Each of the 4 steps takes 1 ms of loop gap, then 10 ms of forward pass.
  EXPECT_NEAR(r.requests[0].ttft_seconds(), 0.011, 1e-12);
  EXPECT_NEAR(r.requests[0].e2e_seconds(), 0.044, 1e-12);
  EXPECT_NEAR(r.requests[0].tpot_seconds(), 0.011, 1e-12);
  EXPECT_NEAR(r.busy_seconds, 0.04, 1e-12);  // the forward passes only
  EXPECT_NEAR(r.simulated_seconds, 0.044, 1e-12);
  // The models kv uses have none: the period is the step.
  EXPECT_NEAR(simulate(w, c, constant_model(0.01)).requests[0].e2e_seconds(), 0.04, 1e-12);
}

TEST(Simulator, OverlapQueuesTheNextDecodeStepBeforeAnArrivalJoins) {
  // A decodes from 10 ms on; B arrives at 25 ms, during A's third step. Without overlap B is
  // prefilled in the step planned at 30 ms; with it that step (A's fourth) was planned and queued
  // at 20 ms, when nothing waited, so B joins the one after it.
  workload w;
  w.requests.push_back(request_at(0, 0.0, 10));
  w.requests.push_back(request_at(1, 0.025, 3));
  simulation_config c;
  c.kv.block_tokens = 16;
  c.kv.num_blocks = 64;
  const auto off = simulate(w, c, constant_model(0.01));
  c.overlap = true;
  const auto on = simulate(w, c, constant_model(0.01));
  ASSERT_EQ(off.finished, 2);
  ASSERT_EQ(on.finished, 2);
  EXPECT_NEAR(off.requests[1].ttft_seconds(), 0.015, 1e-12);
  EXPECT_NEAR(on.requests[1].ttft_seconds(), 0.025, 1e-12);
  // A's tokens come one per step either way; the steps planned ahead change no token count.
  EXPECT_NEAR(on.requests[0].e2e_seconds(), off.requests[0].e2e_seconds(), 1e-12);
  EXPECT_EQ(on.decode_tokens, off.decode_tokens);
  EXPECT_EQ(on.itl_seconds.size(), off.itl_seconds.size());
}
