// `ridgeline load` through the command line (cli::run in-process) against the test server on
// 127.0.0.1: a run writes a kv/v1 file that core's reader and load's own reader both take, merge
// gives the same percentiles as one run over all the samples, and bad input gets one line and
// exit code 2 (unreachable URL, malformed trace, bad SLO spec, impossible options).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/load/results.hpp"
#include "ridgeline/load/test_server.hpp"

namespace ridgeline {
namespace {

struct outcome {
  int code = 0;
  std::string out, err;
};

outcome run_cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  args.push_back("--no-progress");
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}

std::filesystem::path temp_dir() {
  auto d =
      std::filesystem::temp_directory_path() / ("ridgeline_load_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

load::test_server_options fast() {
  load::test_server_options o;
  o.first_token_seconds = 0.01;
  o.token_interval_seconds = 0.002;
  return o;
}

TEST(LoadCli, RunWritesServingResultsThatMerge) {
  load::test_server server(fast());
  const auto dir = temp_dir();
  const std::string a = (dir / "a.json").string(), b = (dir / "b.json.gz").string(),
                    m = (dir / "m.json").string();
  const std::vector<std::string> common = {"load",
                                           "--url",
                                           server.url(),
                                           "--model",
                                           "test",
                                           "--concurrency",
                                           "2,4",
                                           "--scrape-interval",
                                           "100ms",
                                           "--slo",
                                           "ttft_p99=1s,tpot_p99=100ms"};
  auto args = common;
  args.insert(args.end(),
              {"--generator", "requests=10,prompt=fixed:6,output=fixed:8,seed=1", "-o", a});
  const outcome r1 = run_cli(args);
  ASSERT_EQ(r1.code, 0) << r1.err;
  EXPECT_NE(r1.out.find("concurrency 2"), std::string::npos) << r1.out;
  EXPECT_NE(r1.out.find("TTFT = first content chunk"), std::string::npos);
  args = common;
  args.insert(args.end(),
              {"--generator", "requests=14,prompt=fixed:6,output=fixed:8,seed=2", "-o", b});
  ASSERT_EQ(run_cli(args).code, 0);
  // core's kv/v1 reader takes it: executor http, one row per level, a measured section.
  const schema::serving_results kv = schema::read_serving_results(a);
  EXPECT_EQ(kv.config.executor.value(), "http");
  ASSERT_EQ(kv.rows.size(), 2u);
  EXPECT_EQ(kv.rows[0].capacity, "concurrency 2");
  EXPECT_EQ(kv.rows[0].finished, 10);
  ASSERT_TRUE(kv.rows[0].measured);
  EXPECT_EQ(kv.rows[0].measured->requests.id.size(), 10u);
  EXPECT_EQ(kv.rows[0].ttft_seconds.count, 10);
  EXPECT_EQ(kv.rows[0].itl_seconds.count, 10 * 7);
  // Merge: exactly the percentiles of all samples together.
  const outcome rm = run_cli({"load", "merge", a, b, "-o", m});
  ASSERT_EQ(rm.code, 0) << rm.err;
  const load::load_run la = load::read_load_run(a), lb = load::read_load_run(b),
                       lm = load::read_load_run(m);
  ASSERT_EQ(lm.levels.size(), 2u);
  EXPECT_EQ(lm.levels[0].records.size(), 24u);
  std::vector<double> ttft;
  for (const auto* run : {&la, &lb}) {
    for (const auto& r : run->levels[0].records) ttft.push_back(load::ttft_of(r));
  }
  const schema::serving_results mk = schema::read_serving_results(m);
  std::sort(ttft.begin(), ttft.end());
  // Exact up to the rounding of moving b's times onto a's clock.
  EXPECT_NEAR(mk.rows[0].ttft_seconds.quantiles->p99, bench::quantile_sorted(ttft, 0.99), 1e-12);
  EXPECT_NEAR(mk.rows[0].ttft_seconds.quantiles->p50, bench::quantile_sorted(ttft, 0.5), 1e-12);
  EXPECT_EQ(mk.rows[0].finished, 24);
  // Round trip: reading and writing again gives the same document.
  EXPECT_EQ(load::document_of(la).at("rows"), nlohmann::json::parse(read_text_file(a)).at("rows"));
}

TEST(LoadCli, BadInputGetsOneLineAndExitCode2) {
  load::test_server server(fast());
  const auto dir = temp_dir();
  const std::string bad_trace = (dir / "bad.jsonl").string();
  std::ofstream(bad_trace) << "{\"timestamp\": 0, \"input_length\": \"many\"}\n";
  std::string closed_url;
  {
    load::test_server gone(fast());
    closed_url = gone.url();
  }
  const std::string gen = "requests=2";
  const std::vector<std::vector<std::string>> cases = {
      {"load", "--url", closed_url, "--model", "m", "--generator", gen},
      {"load", "--url", "127.0.0.1:8000", "--model", "m", "--generator", gen},
      {"load", "--url", server.url(), "--model", "m", "--trace", bad_trace},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--slo", "ttft_p99=soon"},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--rate", "2",
       "--concurrency", "4"},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--find-max"},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--itl-rule", "even"},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--rate", "-1"},
      {"load", "--url", server.url(), "--generator", gen},
      {"load", "--url", server.url(), "--model", "m"},
      {"load", "--url", server.url(), "--model", "m", "--generator", gen, "--header", "NoColon"},
      {"load", "merge", "only-one.json"},
  };
  for (auto args : cases) {
    args.insert(args.end(), {"-o", ""});
    if (args[1] == "merge") args.resize(3);
    const outcome r = run_cli(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, cli::bad_input) << joined << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << joined << "\n" << r.err;
  }
}

}  // namespace
}  // namespace ridgeline
