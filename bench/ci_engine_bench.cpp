// The CI gate's benchmarks of the engine and the planner (part of ridgeline_ci_bench; main, the
// yardstick and the encoding benchmarks are in ci_bench.cpp): the KV cache manager (sequences
// allocating and freeing blocks; prefix lookups of real Mooncake prompts), one scheduler step of a
// full batch, a replay of a Mooncake slice through the simulator, parsing of the committed Mooncake
// and Azure traces, and `ridgeline plan`'s rate search. Inputs are fixed (committed traces, fixed
// seeds), so every run does the same work. Each iteration does `work_items` units (ci_gate.hpp),
// which the gate's slowdown injection raises by 20 %.
//   build/bench/ridgeline_ci_bench --benchmark_filter='BM_(engine|plan)_' --benchmark_repetitions=5
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ci_gate.hpp"
#include "ridgeline/core/schemas/plan.hpp"
#include "ridgeline/engine/executor.hpp"
#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/scheduler.hpp"
#include "ridgeline/engine/simulator.hpp"
#include "ridgeline/engine/workload.hpp"
#include "ridgeline/perfmodel/profiles.hpp"

extern char** environ;

namespace {

using namespace ridgeline;
using ridgeline::bench::ci::timed_loop;
using ridgeline::bench::ci::work_items;

std::string source_path(const std::string& relative) {
  return std::string(RIDGELINE_SOURCE_DIR) + "/" + relative;
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const workload& mooncake_trace() {
  static const workload w =
      load_mooncake_trace(source_path("data/traces/mooncake_synthetic_trace.jsonl"));
  return w;
}

// ------------------------------------------------------------------------------- KV manager

// One unit: 32 sequences each append a 1024-token prompt (64 blocks allocated, each hashed when
// full), then all are freed, odd and even ones apart so the LRU order is not the allocation order.
// The pool (8192 blocks) is smaller than the 256 distinct prompts cycled through, so from the
// second unit on every allocation evicts a cached block: free list, LRU and hash index all move.
void BM_engine_kv_alloc_free(benchmark::State& state) {
  constexpr int k_prompts = 256, k_prompt_tokens = 1024, k_batch = 32;
  std::vector<std::vector<token_id>> prompts(k_prompts);
  for (int p = 0; p < k_prompts; ++p) {
    prompts[p].resize(k_prompt_tokens);
    for (int i = 0; i < k_prompt_tokens; ++i) {
      prompts[p][i] = segment_token(1000 + static_cast<std::uint64_t>(p), i);
    }
  }
  kv_cache_config c;
  c.block_tokens = 16;
  c.num_blocks = 8192;
  kv_cache_manager kv(c);
  std::int64_t next = 0;
  seq_id seqs[k_batch];
  auto unit = [&] {
    for (auto& s : seqs) {
      s = kv.create_sequence();
      if (!kv.append(s, prompts[static_cast<std::size_t>(next++ % k_prompts)])) {
        throw std::logic_error("kv_alloc_free: pool exhausted");
      }
    }
    for (int i = 0; i < k_batch; i += 2) kv.free_sequence(seqs[i]);
    for (int i = 1; i < k_batch; i += 2) kv.free_sequence(seqs[i]);
  };
  for (int i = 0; i < 8; ++i) unit();  // fill the pool with cached blocks: steady state
  const std::int64_t items = work_items(state, "BM_engine_kv_alloc_free", 10);
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) unit();
    benchmark::ClobberMemory();
  });
  state.counters["evictions"] = static_cast<double>(kv.pool().evictions());
  state.SetItemsProcessed(state.iterations() * items * k_batch * (k_prompt_tokens / 16));
}
BENCHMARK(BM_engine_kv_alloc_free);

// Prefix lookups of real prompts: the cache holds every block of Mooncake requests 0-1999 (16-token
// blocks, unlimited capacity: 1.07 M distinct blocks), as after serving them; one unit looks up
// requests 2000-2099 (1.3 M prompt tokens). Their prefixes are shared with earlier requests by the
// trace's hash_ids, so some walks stop at once and others match thousands of blocks: 52 % of the
// tokens hit.
struct prefix_cache_case {
  static constexpr std::size_t k_cached = 2000, k_looked_up = 100;
  std::unique_ptr<kv_cache_manager> kv;
  std::vector<std::vector<token_id>> prompts;
  std::int64_t prompt_tokens = 0;

  prefix_cache_case() {
    const workload& w = mooncake_trace();
    kv_cache_config c;
    c.block_tokens = 16;
    c.track_recompute = false;
    std::int64_t blocks = 1;
    for (std::size_t i = 0; i < k_cached; ++i) blocks += w.requests[i].prompt_tokens / 16 + 1;
    c.num_blocks = static_cast<std::int32_t>(blocks);  // materialized only as used
    kv = std::make_unique<kv_cache_manager>(c);
    std::vector<token_id> tokens;
    for (std::size_t i = 0; i < k_cached; ++i) {
      materialize_prompt(w.requests[i], tokens);
      const seq_id s = kv->create_sequence();
      if (!kv->append(s, tokens)) throw std::logic_error("prefix_lookup: pool too small");
      kv->free_sequence(s);
    }
    prompts.resize(k_looked_up);
    for (std::size_t i = 0; i < k_looked_up; ++i) {
      materialize_prompt(w.requests[k_cached + i], prompts[i]);
      prompt_tokens += std::ssize(prompts[i]);
    }
  }
};

void BM_engine_kv_prefix_lookup(benchmark::State& state) {
  static const prefix_cache_case pc;  // built once (about 0.3 s), shared by every repetition
  const std::int64_t items = work_items(state, "BM_engine_kv_prefix_lookup", 5);
  std::int64_t matched = 0;
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      matched = 0;
      for (const auto& p : pc.prompts) matched += pc.kv->lookup(p, std::ssize(p) - 1).tier1_blocks;
    }
    benchmark::DoNotOptimize(matched);
  });
  if (matched == 0) state.SkipWithError("no lookup matched a cached block");
  state.counters["hit_ratio"] =
      static_cast<double>(matched * 16) / static_cast<double>(pc.prompt_tokens);
  state.SetItemsProcessed(state.iterations() * items * pc.prompt_tokens);
}
BENCHMARK(BM_engine_kv_prefix_lookup);

// ------------------------------------------------------------------------------- scheduler

// A serving loop in steady state without an executor: 320 live requests (up to 256 running, the
// rest waiting), each a shared 512-token system prompt (one of 4) and a lognormal user part, a
// token budget of 8192 per step with chunked prefill; a finished request is replaced by a new one
// at once. One unit is one step: schedule(), the step's sequences over the block tables
// (plan_sequences), complete() with one sampled token per sampling sequence, take_finished().
// Request k repeats the content of request k - 1024 (prompt and output), long after its blocks
// were evicted, so no structure grows without bound: the cost of a step does not drift.
class scheduler_loop {
 public:
  scheduler_loop() : m_kv(kv_config()), m_sched(sched_config(), m_kv) {
    std::mt19937_64 rng(20261121);
    std::lognormal_distribution<double> user(std::log(512.0), 0.8), output(std::log(128.0), 0.8);
    auto clamp = [](double x, double lo, double hi) { return std::min(std::max(x, lo), hi); };
    for (int i = 0; i < k_templates; ++i) {
      m_user_tokens.push_back(static_cast<std::int32_t>(clamp(user(rng), 16, 4096)));
      m_output_tokens.push_back(static_cast<std::int32_t>(clamp(output(rng), 8, 1024)));
    }
    for (int i = 0; i < k_live; ++i) submit();
    for (int i = 0; i < 4000; ++i) step();  // past the ramp-up: a full batch, a warm cache
    m_steps = 0;
    m_batch_sum = 0;
  }
  void step() {
    const step_plan& plan = m_sched.schedule();
    plan_sequences(plan, m_sched, m_kv, m_seqs);
    m_sampled.clear();
    for (const auto& s : plan.sequences) {
      // Output token g of request k is fixed by its template (as the prompt is), so the KV
      // manager's set of every hash ever seen stays bounded and the loop is stationary.
      if (s.samples) {
        m_sampled.push_back(
            segment_token(50000 + s.id % k_templates, m_sched.generated(s.request)));
      }
    }
    m_batch_sum += std::ssize(plan.sequences);
    ++m_steps;
    m_now += 0.025;
    m_sched.complete(m_sampled, m_now);
    m_sched.take_finished(m_left);
    for (std::size_t i = 0; i < m_left.size(); ++i) submit();
    m_left.clear();
  }
  double mean_batch() const { return m_steps ? double(m_batch_sum) / double(m_steps) : 0; }

 private:
  static constexpr int k_live = 320, k_templates = 1024, k_system = 512;
  static kv_cache_config kv_config() {
    kv_cache_config c;
    c.block_tokens = 16;
    c.num_blocks = 32768;  // ~21k blocks live at a time; the rest holds cached prefixes
    return c;
  }
  static scheduler_config sched_config() {
    scheduler_config c;
    c.max_running = 256;
    c.max_batched_tokens = 8192;
    c.record_itl = false;  // a list that grows without bound over an endless loop
    return c;
  }
  // Request k: system prompt k % 4, then the user part of template k % 1024 (distinct content per
  // template, so a prompt repeats only after 1024 requests, long after its blocks were evicted).
  void submit() {
    const std::uint64_t k = m_next++;
    const std::size_t t = k % k_templates;
    std::vector<token_id> prompt(static_cast<std::size_t>(k_system + m_user_tokens[t]));
    for (int i = 0; i < k_system; ++i) prompt[i] = segment_token(k % 4, i);
    for (std::int32_t i = 0; i < m_user_tokens[t]; ++i) {
      prompt[static_cast<std::size_t>(k_system + i)] = segment_token(100 + t, i);
    }
    m_sched.submit(k, m_now, std::move(prompt), m_output_tokens[t]);
  }

  kv_cache_manager m_kv;
  scheduler m_sched;
  std::vector<std::int32_t> m_user_tokens, m_output_tokens;
  std::vector<step_sequence> m_seqs;
  std::vector<token_id> m_sampled;
  std::vector<request_record> m_left;
  std::uint64_t m_next = 0;
  std::int64_t m_steps = 0, m_batch_sum = 0;
  double m_now = 0;
};

void BM_engine_scheduler_step(benchmark::State& state) {
  // One loop for every repetition: the warm-up runs once, and the loop's state (a stationary
  // serving mix) carries on from one repetition to the next.
  static scheduler_loop loop;
  const std::int64_t items = work_items(state, "BM_engine_scheduler_step", 10);
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) loop.step();
  });
  state.counters["mean_batch"] = loop.mean_batch();
  state.SetItemsProcessed(state.iterations() * items);  // steps
}
BENCHMARK(BM_engine_scheduler_step);

// ------------------------------------------------------------------------------- simulator

// The first 60 requests of the Mooncake trace (17 s of arrivals, 0.8 M prompt tokens) replayed
// through scheduler, KV manager (16-token blocks, a 40 GiB budget, prefix caching on) and the
// simulated executor with Llama-2-7B shapes on a datasheet H100 SXM. One unit is one replay.
void BM_engine_replay_mooncake(benchmark::State& state) {
  const workload w = window_of(mooncake_trace(), 0, 0, 60);
  const auto& m = model_preset_by_name("llama-2-7b");
  const gpu_profile g = planner::datasheet_profile(*datasheet_by_key("h100-sxm"));
  const roofline_step_time_model model(m, g);
  simulation_config c;
  c.kv =
      make_kv_cache_config(m, dtype::bf16, 16, blocks_for_budget(m, dtype::bf16, 16, 40LL << 30));
  c.scheduler.max_model_len = 0;
  const std::int64_t items = work_items(state, "BM_engine_replay_mooncake", 5);
  simulation_result r;
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) r = simulate(w, c, model);
  });
  if (r.finished != std::ssize(w.requests))
    state.SkipWithError("replay did not finish every request");
  state.counters["steps"] = static_cast<double>(r.steps);
}
BENCHMARK(BM_engine_replay_mooncake);

// ------------------------------------------------------------------------------- trace parsing

// The whole committed Mooncake trace (3,993 lines, 1.1 MB of JSON) from memory.
void BM_engine_trace_parse_mooncake(benchmark::State& state) {
  const std::string text = read_whole(source_path("data/traces/mooncake_synthetic_trace.jsonl"));
  const std::int64_t items = work_items(state, "BM_engine_trace_parse_mooncake", 5);
  std::size_t requests = 0;
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      std::istringstream in(text);
      requests = parse_mooncake_trace(in, "mooncake").requests.size();
    }
  });
  if (requests != 3993) state.SkipWithError("Mooncake trace: not 3993 requests");
  state.SetBytesProcessed(state.iterations() * items * std::ssize(text));
}
BENCHMARK(BM_engine_trace_parse_mooncake);

// The whole committed Azure conversation trace (19,366 rows, 0.7 MB of CSV) from memory.
void BM_engine_trace_parse_azure(benchmark::State& state) {
  const std::string text = read_whole(source_path("data/traces/azure_llm_2023_conv.csv"));
  const std::int64_t items = work_items(state, "BM_engine_trace_parse_azure", 5);
  std::size_t requests = 0;
  timed_loop(state, [&] {
    for (std::int64_t i = 0; i < items; ++i) {
      std::istringstream in(text);
      requests = parse_azure_trace(in, "azure").requests.size();
    }
  });
  if (requests != 19366) state.SkipWithError("Azure trace: not 19366 requests");
  state.SetBytesProcessed(state.iterations() * items * std::ssize(text));
}
BENCHMARK(BM_engine_trace_parse_azure);

// ------------------------------------------------------------------------------- planner

// `ridgeline plan`'s rate search, run as the command (bench/ may not link tools/plan; docs/
// architecture.md): Llama-2-7B on the measured H100 SXM, TP 1, 300 generated requests (seed 7),
// SLO p99 TTFT 1 s and p99 TPOT 30 ms, which each search meets below its cap after 11 replays.
// One unit is one search: an iteration is one command with `--gpu h100-sxm` listed `items` times
// (one row, one search each), so start-up is paid once per iteration. The time is the child's
// CPU time (user + system, from wait4), so waiting for the process and the parent's own work are
// not in it; its start-up is. The gate counts instructions instead (scripts/perf_gate.sh sets
// RIDGELINE_CI_BENCH_CHILD_COUNTS to a file prefix): the command then runs under its own callgrind,
// which writes PREFIX.<pid>, and is counted whole, start-up included (`ridgeline --version`:
// 0.10 G instructions in a CUDA build, 0.03 G in a CPU-only one).
double run_plan(const std::string& output_path, std::int64_t searches) {
  std::vector<std::string> args;
  const char* counts = std::getenv("RIDGELINE_CI_BENCH_CHILD_COUNTS");
  if (counts != nullptr && *counts != '\0') {
    args = {"valgrind", "--tool=callgrind", std::string("--callgrind-out-file=") + counts + ".%p"};
  }
  std::string gpus = "h100-sxm";
  for (std::int64_t i = 1; i < searches; ++i) gpus += ",h100-sxm";
  args.insert(args.end(), {RIDGELINE_BINARY, "plan", "--model", "llama-2-7b", "--gpu", gpus,
                           "--workload", "rate=4,requests=300,seed=7", "--requests", "300",
                           "--slo", "ttft_p99=1s,tpot_p99=30ms", "--tp", "1", "-o", output_path});
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) throw std::runtime_error("wait4 failed");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("ridgeline plan failed (status " + std::to_string(status) + ")");
  }
  auto seconds = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void BM_plan_rate_search(benchmark::State& state) {
  const std::string output = (std::filesystem::temp_directory_path() /
                              ("ridgeline_ci_plan_" + std::to_string(getpid()) + ".json"))
                                 .string();
  const std::int64_t items = work_items(state, "BM_plan_rate_search", 5);
  try {
    timed_loop(state, [&] { state.SetIterationTime(run_plan(output, items)); });
    // The last plan, read by its format's reader: every search ran to an SLO-bound rate.
    const schema::plan_document plan = schema::read_plan(output);
    bool searched = std::ssize(plan.rows) == items;
    for (const auto& row : plan.rows) {
      searched = searched && row.simulations == 11 && row.rate_capped == false &&
                 row.max_rate_per_gpu.has_value();
    }
    if (!searched) {
      state.SkipWithError("the plan did not search the rate to the SLO in 11 replays per row");
    } else {
      state.counters["max_rate_per_gpu"] = *plan.rows[0].max_rate_per_gpu;
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  std::filesystem::remove(output);
}
BENCHMARK(BM_plan_rate_search)->UseManualTime();

}  // namespace
