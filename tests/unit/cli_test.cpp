// The `ridgeline` command's parsing and error mapping: one line, the right exit code, no crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/report/report.hpp"
#include "ridgeline/telemetry/device.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/kv/kv.hpp"

using namespace ridgeline;

namespace {
struct result {
  int code;
  std::string out, err;
};
result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}
int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST(Cli, HelpAndVersion) {
  auto r = run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("probe"), std::string::npos);
  r = run({"probe", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Examples"), std::string::npos);
  EXPECT_EQ(run({"--version"}).code, 0);
}

TEST(Cli, ReportHelpListsEverySchemaItReads) {
  const auto r = run({"report", "--help"});
  EXPECT_EQ(r.code, 0);
  for (const auto& id : report::known_schemas()) EXPECT_NE(r.out.find(id), std::string::npos) << id;
  EXPECT_NE(r.out.find("ridgeline.roofline/v1"), std::string::npos);
  EXPECT_NE(r.out.find("ridgeline.diverge_compare/v1"), std::string::npos);
}

TEST(Cli, UnknownSubcommandOrFlag) {
  auto r = run({"frobnicate"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1);
  r = run({"probe", "--bogus"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1);
  EXPECT_EQ(run({}).code, cli::bad_input);
}

TEST(Cli, UnknownDtype) {
  auto r = run({"probe", "--dtypes", "bf16,fp4", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown dtype 'fp4'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, ImpossibleSizes) {
  auto r = run({"probe", "--max-bytes", "3GiB", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("power of two"), std::string::npos) << r.err;
  r = run({"probe", "--max-bytes", "lots", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  r = run({"probe", "--gemm-size", "100000000", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("absurd"), std::string::npos) << r.err;
  // Checked before any GPU is touched: the same answer with or without one.
  r = run({"sweep", "--gemm", "fast", "--batch", "1", "--context", "128", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--gemm fast: expected auto, cublas or skinny"), std::string::npos) << r.err;
}

// sweep takes --gpu keys like plan, kv and roofline (planner::resolve_gpu), checked before the GPU.
TEST(Cli, SweepGpuKeysResolveLikeEveryCommand) {
  auto r = run({"sweep", "--gpu", "b300", "--batch", "1", "--context", "128", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown GPU 'b300'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  if (metrics::device_count() > 0) return;  // the key is accepted; the run itself needs a GPU
  r = run({"sweep", "--gpu", "h100-sxm", "--batch", "1", "--context", "128", "-o", "",
           "--no-progress"});
  EXPECT_EQ(r.code, cli::no_device) << r.err;
}

TEST(Cli, UnwritableOutput) {
  auto r = run({"probe", "-o", "/nonexistent-dir/profile.json"});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_NE(r.err.find("cannot write /nonexistent-dir/profile.json"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, NoGpuIsAClearError) {
  if (metrics::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  auto r = run({"probe", "-o", "", "--no-progress"});
  EXPECT_EQ(r.code, cli::no_device);
  EXPECT_NE(r.err.find("needs a CUDA GPU"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(Cli, BadSizeIsOneLine) {
  // Sizes on the command line go through ridgeline::parse_bytes (text_test.cpp covers its rules).
  auto r = run({"probe", "--max-bytes", "4 parsecs", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown size unit in '4 parsecs'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(CliKv, MooncakeCurveJsonCsvAndTable) {
  const std::string trace = std::string(RIDGELINE_SOURCE_DIR) + "/data/traces/mooncake_synthetic_trace.jsonl";
  const auto dir = std::filesystem::temp_directory_path() / "ridgeline_cli_kv_test";
  std::filesystem::create_directories(dir);
  const auto json_path = (dir / "kv.json").string(), csv_path = (dir / "kv.csv").string();
  auto r = run({"kv", "--trace", trace, "--block-size", "512", "--model", "llama-3-70b",
                "--max-model-len", "0", "--capacity", "unlimited,10%,2000,8GiB", "-o", json_path,
                "--csv", csv_path, "--no-progress"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| unlimited |"), std::string::npos) << r.out;
  const auto doc = nlohmann::json::parse(read_text_file(json_path));
  EXPECT_EQ(doc.at("schema"), "ridgeline.kv/v1");
  EXPECT_TRUE(doc.contains("environment"));
  ASSERT_EQ(doc.at("rows").size(), 4u);
  const auto& rows = doc.at("rows");
  // Deterministic: exactly the simulator test's counts (Simulator.MooncakeUnlimitedHitRatioNearPaper).
  EXPECT_EQ(rows[0].at("hit_tokens").get<std::int64_t>(), 39802880);
  EXPECT_EQ(rows[0].at("lookup_tokens").get<std::int64_t>(), 61194628);
  EXPECT_EQ(rows[0].at("hit_blocks").get<std::int64_t>(), 77740);
  EXPECT_NEAR(rows[0].at("token_hit_rate").get<double>(), 0.650431, 1e-4);
  EXPECT_LT(rows[1].at("token_hit_rate").get<double>(), rows[0].at("token_hit_rate").get<double>());
  EXPECT_EQ(rows[2].at("capacity_blocks"), 2000);
  // 8 GiB of llama-3-70b bf16 KV (320 KiB per token) in blocks of 512 tokens: 51 blocks.
  EXPECT_EQ(rows[3].at("capacity_blocks"), 51);
  EXPECT_TRUE(rows[0].at("ttft_seconds").contains("p99"));
  EXPECT_TRUE(doc.at("config").at("definitions").contains("token_hit_rate"));
  const std::string csv = read_text_file(csv_path);
  EXPECT_EQ(lines(csv), 5);
  EXPECT_EQ(csv.rfind("capacity,capacity_blocks", 0), 0u);
}

TEST(CliKv, BadInputsGiveOneLineAndTheRightCode) {
  auto r = run({"kv", "--generator", "requests=10", "--model", "gpt-9", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown model preset 'gpt-9'"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  r = run({"kv", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("exactly one of --trace"), std::string::npos) << r.err;
  r = run({"kv", "--trace", "/nonexistent/t.csv", "-o", ""});
  EXPECT_EQ(r.code, cli::io_failure) << r.err;
  r = run({"kv", "--generator", "requests=10", "--capacity", "lots", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  r = run({"kv", "--generator", "requests=10", "--gpu", "b300", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("unknown GPU 'b300'"), std::string::npos) << r.err;
  r = run({"kv", "--generator", "requests=10", "-o", "/nonexistent/dir/out.json"});
  EXPECT_EQ(r.code, cli::io_failure);
  // A malformed trace: the line number reaches the user.
  const auto bad = std::filesystem::temp_directory_path() / "ridgeline_bad_trace.csv";
  std::ofstream(bad) << "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10\n";
  r = run({"kv", "--trace", bad.string(), "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find(":2: expected 3 columns"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
}

TEST(CliKv, GeneratorRunSmallCapacityRejectsWithReason) {
  auto r = run({"kv", "--generator", "requests=50,prompt=fixed:3000,output=fixed:8,rate=5",
                "--model", "tinyllama-1.1b", "--max-model-len", "0", "--capacity", "100,1000", "-o",
                "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  // 100 blocks of 16 = 1600 tokens: every 3008-token request exceeds the cache.
  EXPECT_EQ(doc.at("rows")[0].at("rejected"), 50);
  EXPECT_EQ(doc.at("rows")[0].at("rejected_by_reason").at("exceeds_cache"), 50);
  EXPECT_EQ(doc.at("rows")[1].at("finished"), 50);
  EXPECT_EQ(doc.at("rows")[1].at("rejected"), 0);
  // With the model's context (2048 tokens) they exceed the context instead.
  r = run({"kv", "--generator", "requests=5,prompt=fixed:3000,output=fixed:8", "--model",
           "tinyllama-1.1b", "--capacity", "1000", "-o", "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("rows")[0].at("rejected_by_reason").at("exceeds_context"), 5);
  // The table says what was left out, how much, why, and the flag that changes it.
  r = run({"kv", "--generator", "requests=8,prompt=fixed:3000,output=fixed:8,seed=2", "--model",
           "tinyllama-1.1b", "--capacity", "unlimited", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\nkv: 8 of 8 requests (100.0%) rejected: prompt + output beyond "
                       "tinyllama-1.1b's context limit of 2,048 tokens; hit rates and latencies "
                       "leave them out (--max-model-len N; 0: no limit)\n"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| unlimited | 1505 | unlimited |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("over the admitted requests"), std::string::npos) << r.out;
}

// Every reason is one line, however many capacities: the same count at each says "at every
// capacity", a count that moves with capacity is listed per capacity.
TEST(CliKv, RejectionLinesOnePerReason) {
  auto count_lines = [](const std::string& text, const std::string& start) {
    int n = 0;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) n += l.rfind(start, 0) == 0 ? 1 : 0;
    return n;
  };
  // 3,008 tokens each: beyond tinyllama's 2,048 at every capacity.
  auto r = run({"kv", "--generator", "requests=20,prompt=fixed:3000,output=fixed:8", "--model",
                "tinyllama-1.1b", "--capacity", "unlimited,50%,100", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("kv: 20 of 20 requests (100.0%) rejected at every capacity: prompt + "
                       "output beyond tinyllama-1.1b's context limit of 2,048 tokens"),
            std::string::npos) << r.out;
  EXPECT_EQ(count_lines(r.out, "kv: "), 1) << r.out;
  // Without the context limit only the 100-block cache (1,600 tokens) is too small.
  r = run({"kv", "--generator", "requests=20,prompt=fixed:3000,output=fixed:8", "--model",
           "tinyllama-1.1b", "--max-model-len", "0", "--capacity", "unlimited,100", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("kv: requests rejected: prompt + output larger than the whole KV cache: 0 "
                       "of 20 (0.0%) at unlimited, 20 of 20 (100.0%) at 100; hit rates and "
                       "latencies leave them out (a larger --capacity)"),
            std::string::npos) << r.out;
  EXPECT_EQ(count_lines(r.out, "kv: "), 1) << r.out;
  // With --json stdout is the document alone; the lines go to stderr.
  r = run({"kv", "--generator", "requests=20,prompt=fixed:3000,output=fixed:8", "--model",
           "tinyllama-1.1b", "--capacity", "1000", "-o", "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW((void)nlohmann::json::parse(r.out));
  EXPECT_EQ(count_lines(r.err, "kv: 20 of 20 requests (100.0%) rejected: prompt + output beyond "),
            1) << r.err;
  // Nothing left out, nothing said.
  r = run({"kv", "--generator", "requests=20,prompt=fixed:300,output=fixed:8", "--model",
           "tinyllama-1.1b", "--capacity", "unlimited,10%", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find(") rejected"), std::string::npos) << r.out;
  EXPECT_EQ(count_lines(r.out, "kv: "), 0) << r.out;
}

TEST(Kv, FormatCount) {
  EXPECT_EQ(kv::format_count(0), "0");
  EXPECT_EQ(kv::format_count(999), "999");
  EXPECT_EQ(kv::format_count(1000), "1,000");
  EXPECT_EQ(kv::format_count(8192), "8,192");
  EXPECT_EQ(kv::format_count(1234567), "1,234,567");
  EXPECT_EQ(kv::format_count(-61194628), "-61,194,628");
}

TEST(CliReplay, CpuRunWritesServingResultsWithMeasuredSection) {
  const auto out = std::filesystem::temp_directory_path() / "ridgeline_replay_cpu.json";
  auto r = run({"replay", "--cpu", "--generator",
                "requests=24,rate=40,prompt=uniform:8:120,output=uniform:2:12,system=48,system_prompts=2",
                "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ridgeline replay:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu executor"), std::string::npos) << r.out;
  const auto doc = schema::read_serving_results(out);
  ASSERT_EQ(doc.rows.size(), 1u);
  const auto& row = doc.rows[0];
  EXPECT_EQ(doc.config.executor.value_or(""), "cpu");
  EXPECT_EQ(doc.config.weight_format.value_or(""), "bf16");
  EXPECT_NE(r.out.find("cpu executor, bf16 weights"), std::string::npos) << r.out;
  EXPECT_EQ(doc.config.model, "tiny");
  EXPECT_EQ(row.finished, 24);
  ASSERT_TRUE(row.measured.has_value());
  const auto& m = *row.measured;
  EXPECT_EQ(std::ssize(m.steps.start_seconds), row.steps);
  EXPECT_EQ(m.requests.id.size(), 24u);
  EXPECT_GT(row.token_hit_rate, 0.0) << "shared system prompts should hit";
  EXPECT_GT(m.simulated_token_hit_rate, 0.0);
  EXPECT_GT(m.mean_running, 0.0);
  EXPECT_EQ(row.ttft_seconds.count, 24);
  for (std::size_t i = 0; i < m.requests.id.size(); ++i) {
    EXPECT_EQ(m.requests.outcome[i], "finished");
    EXPECT_GT(m.requests.ttft_seconds[i], 0.0);
    EXPECT_GE(m.requests.submit_lag_seconds[i], 0.0);
  }
}

// --weights reaches the replay: the cpu executor runs bf16 and says that the flag is the cuda
// executor's; the document names what ran; an unknown format is refused with the list.
TEST(CliReplay, WeightsFlag) {
  const auto out = std::filesystem::temp_directory_path() / "ridgeline_replay_weights.json";
  auto r = run({"replay", "--cpu", "--weights", "int4", "--generator",
                "requests=4,rate=40,prompt=fixed:16,output=fixed:3", "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("runs bf16 weights; --weights int4 applies to the cuda executor"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(schema::read_serving_results(out).config.weight_format.value_or(""), "bf16");
  r = run({"replay", "--cpu", "--weights", "int3", "--generator",
           "requests=4,rate=40,prompt=fixed:16,output=fixed:3", "-o", ""});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("int4"), std::string::npos) << r.err;
  std::filesystem::remove(out);
}

// A window cuts the trace and a context limit rejects requests: each says how many of how many,
// why, and the flag that changes it.
TEST(CliReplay, SaysWhatTheWindowAndTheSchedulerLeftOut) {
  auto r = run({"replay", "--cpu", "--generator",
                "requests=12,rate=40,prompt=fixed:16,output=fixed:4", "--requests", "5", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("replay: 7 of 12 requests of generator (58.3%) not replayed: they arrive "
                       "outside the window from --start 0 s to the end, or after its first "
                       "--requests 5 (--start, --duration, --requests; 0 for the last two: the "
                       "whole trace)\n"),
            std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(") rejected"), std::string::npos) << r.out;
  // prompt + output = 20: beyond a limit of 19 for every request, inside it for none.
  r = run({"replay", "--cpu", "--generator", "requests=6,rate=40,prompt=fixed:16,output=fixed:4",
           "--max-model-len", "19", "-o", ""});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("replay: 6 of 6 requests (100.0%) rejected: prompt + output beyond tiny's "
                       "context limit of 19 tokens; hit rates and latencies leave them out "
                       "(--max-model-len N, at most the model's context)"),
            std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not replayed"), std::string::npos) << r.out;  // the whole workload ran
  // --json: the document alone on stdout, the lines on stderr.
  r = run({"replay", "--cpu", "--generator", "requests=6,rate=40,prompt=fixed:16,output=fixed:4",
           "--requests", "4", "--max-model-len", "19", "-o", "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW((void)nlohmann::json::parse(r.out));
  EXPECT_NE(r.err.find("replay: 2 of 6 requests of generator (33.3%) not replayed"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("replay: 4 of 4 requests (100.0%) rejected: prompt + output beyond"),
            std::string::npos) << r.err;
}

// plan replays the first --requests of a trace, and every replay rejects what is beyond the
// model's context: both are said, with how many of how many and the flag.
TEST(CliPlan, SaysWhatTheRateSearchLeftOut) {
  const std::string trace =
      std::string(RIDGELINE_SOURCE_DIR) + "/data/traces/azure_llm_2023_conv.csv";
  auto r = run({"plan", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--tp", "1", "--workload",
                trace, "--requests", "100", "--slo", "ttft_p99=2s,tpot_p99=60ms"});
  ASSERT_EQ(r.code, 0) << r.err;
  // The committed trace holds 19,366 requests.
  EXPECT_NE(r.out.find("\nplan: 19,266 of 19,366 requests of " + trace +
                       " (99.5%) not replayed: the rate search replays the first 100 (--requests "
                       "N; 0: all)\n"),
            std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("context limit"), std::string::npos) << r.out;  // none beyond 8,192
  // Prompts of 1,900 to 2,100 tokens + 16 out: about a third beyond tinyllama's 2,048. Every
  // replay rejects those (the plan's rejected_requests), and the line says how many.
  r = run({"plan", "--model", "tinyllama-1.1b", "--gpu", "h100-sxm", "--tp", "1", "--workload",
           "rate=2,requests=60,prompt=uniform:1900:2100,output=fixed:16", "--slo",
           "ttft_p50=2s,tpot_p50=60ms", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);  // stdout: the document alone
  const std::int64_t rejected = doc.at("rows")[0].at("rejected_requests").get<std::int64_t>();
  EXPECT_GT(rejected, 5);
  EXPECT_LT(rejected, 40);
  EXPECT_NE(r.err.find("plan: " + std::to_string(rejected) +
                       " of 60 requests (" + format_percent(double(rejected) / 60) +
                       ") rejected in every replay: prompt + output beyond tinyllama-1.1b's "
                       "context of 2,048 tokens; the SLO terms count them as never served"),
            std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("more of 60"), std::string::npos) << r.err;  // the KV cache held the rest
  // A generator makes as many requests as asked: nothing cut, nothing beyond, nothing said.
  r = run({"plan", "--model", "tinyllama-1.1b", "--gpu", "h100-sxm", "--tp", "1", "--workload",
           "rate=2,requests=50,prompt=fixed:600,output=fixed:16", "--slo",
           "ttft_p99=2s,tpot_p99=60ms"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("\nplan: "), std::string::npos) << r.out;
}

TEST(CliReplay, BadInputsGiveOneLineAndTheRightCode) {
  auto r = run({"replay", "--cpu", "--generator", "requests=4", "--rate-scale", "0", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  EXPECT_NE(r.err.find("--rate-scale must be positive"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  r = run({"replay", "--cpu", "--generator", "requests=4,rate=1", "--start", "1000", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  EXPECT_NE(r.err.find("holds no request"), std::string::npos) << r.err;
  r = run({"replay", "--cpu", "--trace", "/nonexistent/t.csv", "-o", ""});
  EXPECT_EQ(r.code, cli::io_failure) << r.err;
  r = run({"replay", "--cpu", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  r = run({"replay", "--cpu", "--generator", "requests=4", "--host-memory", "1KiB", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  EXPECT_NE(r.err.find("--host-memory 1024 bytes holds 0 blocks"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  r = run({"replay", "--cpu", "--generator", "requests=4", "--host-memory", "lots", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  r = run({"replay", "--cpu", "--generator", "requests=4", "--gemm-candidates", "0", "-o", ""});
  EXPECT_EQ(r.code, cli::bad_input) << r.err;
  EXPECT_NE(r.err.find("--gemm-candidates must be at least 1"), std::string::npos) << r.err;
  // --overlap on the cpu executor serves every request.
  r = run({"replay", "--cpu", "--overlap", "--generator",
           "requests=6,rate=100,prompt=fixed:20,output=fixed:12", "-o", "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out.substr(r.out.find('{'))).at("rows")[0].at("finished"), 6);
  // A pool too small for any request: every request rejected with its reason, none lost.
  r = run({"replay", "--cpu", "--generator", "requests=5,rate=100,prompt=fixed:100,output=fixed:4",
           "--kv-blocks", "3", "-o", "", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("rows")[0].at("rejected_by_reason").at("exceeds_cache"), 5);
}
