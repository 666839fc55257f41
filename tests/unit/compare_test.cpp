// `ridgeline compare`: reading result files, the verdict rules, environment and benchmark-set
// checks, thresholds, normalisation and the reports; serving results (per-request samples, their
// percentile changes and gate, row pairing).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/regress/compare.hpp"
#include "ridgeline/regress/results.hpp"

using namespace ridgeline::bench;
using nlohmann::json;

namespace {

// A complete GPU profile (compare reads profiles with the format's typed reader): the committed
// H100 profile, whose rows the tests replace.
json committed_profile() {
  std::ifstream in(std::filesystem::path(RIDGELINE_SOURCE_DIR) / "perfmodel/profiles/h100-sxm.json");
  return json::parse(in);
}

// A complete measurement object with the given summary (no spread beyond mad and noise).
json measurement(int count, double median, double mad, double noise) {
  return {{"seconds",
           {{"count", count},
            {"median", median},
            {"mean", median},
            {"min", median},
            {"max", median},
            {"stddev", 0.0},
            {"p10", median},
            {"p90", median},
            {"mad", mad},
            {"noise", noise}}},
          {"repetitions", count},
          {"stop_reason", "noise_reached"},
          {"throttled", false},
          {"throttle_reasons", json::array()},
          {"sm_clock_mhz", {{"min", 1980}, {"max", 1980}}}};
}

}  // namespace

namespace {

// Google Benchmark JSON with per-repetition entries (times in ns) and the aggregates GB adds.
json gbench(const std::map<std::string, std::vector<double>>& runs, const std::string& gpu = "",
            const std::string& build_type = "Release") {
  json benchmarks = json::array();
  for (const auto& [name, times] : runs) {
    for (std::size_t i = 0; i < times.size(); ++i) {
      benchmarks.push_back({{"name", name},
                            {"run_name", name},
                            {"run_type", "iteration"},
                            {"repetitions", times.size()},
                            {"repetition_index", i},
                            {"iterations", 100},
                            {"real_time", times[i]},
                            {"cpu_time", times[i] * 0.5},
                            {"time_unit", "ns"}});
    }
    benchmarks.push_back({{"name", name + "_median"},
                          {"run_name", name},
                          {"run_type", "aggregate"},
                          {"aggregate_name", "median"},
                          {"repetitions", times.size()},
                          {"real_time", 1e12},
                          {"cpu_time", 1e12},
                          {"time_unit", "ns"}});
  }
  json context = {
      {"host_name", "box"},
      {"num_cpus", 2},
      {"ridgeline_ridgeline", json{{"build_type", build_type}, {"git_sha", "abc123"}}.dump()},
      {"ridgeline_time_utc", "2026-11-21T10:00:00Z"}};
  if (!gpu.empty()) {
    context["ridgeline_gpu"] = json{{"name", gpu}, {"driver_version", "580.1"}}.dump();
  }
  return {{"context", context}, {"benchmarks", benchmarks}};
}

std::vector<double> around(double center, double step, int n = 10) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(center + step * (i - n / 2));
  return v;
}

}  // namespace

TEST(Results, GoogleBenchmarkRepetitionsAndUnits) {
  json doc = gbench({{"BM_a", {100, 110, 120}}});
  doc["benchmarks"][1]["time_unit"] = "us";  // one repetition reported in microseconds
  doc["benchmarks"][1]["real_time"] = 0.11;
  doc["benchmarks"][1]["cpu_time"] = 0.055;
  const auto r = parse_results(doc, "t.json", time_metric::real_time);
  EXPECT_EQ(r.format, "google-benchmark");
  EXPECT_EQ(r.git_sha, "abc123");
  EXPECT_EQ(r.environment["ridgeline"]["build_type"], "Release");
  ASSERT_EQ(r.benchmarks.size(), 1u);
  const auto& s = r.benchmarks.at("BM_a");
  ASSERT_EQ(s.seconds.size(), 3u);  // the aggregate entry is ignored
  EXPECT_NEAR(s.seconds[1], 110e-9, 1e-18);
  EXPECT_NEAR(s.stats.median, 110e-9, 1e-18);
  const auto c = parse_results(doc, "t.json", time_metric::cpu_time);
  EXPECT_NEAR(c.benchmarks.at("BM_a").stats.median, 55e-9, 1e-18);
}

TEST(Results, ErroredBenchmarkIsKeptWithItsError) {
  json doc = gbench({{"BM_a", {1, 2, 3}}});
  doc["benchmarks"].push_back({{"name", "BM_gpu"},
                               {"run_name", "BM_gpu"},
                               {"run_type", "iteration"},
                               {"error_occurred", true},
                               {"error_message", "no CUDA device"}});
  const auto r = parse_results(doc, "t.json", time_metric::real_time);
  EXPECT_EQ(r.benchmarks.at("BM_gpu").error, "no CUDA device");
}

TEST(Results, GpuProfileRows) {
  json doc = committed_profile();
  json linear_block;
  for (const auto& r : doc["rows"]) {
    if (r["kind"] == "linear_block") linear_block = r;
  }
  doc["rows"] = json::array({
      {{"kind", "gemm"},
       {"dtype", "bf16"},
       {"m", 8192},
       {"n", 8192},
       {"k", 8192},
       {"algorithm_index", 3},
       {"flops", 2.0 * 8192 * 8192 * 8192},
       {"flops_per_second", 7.9e14},
       {"measurement", measurement(20, 2e-3, 1e-5, 0.002)}},
      linear_block,  // no measurement: skipped
  });
  const auto r = parse_results(doc, "p.json", time_metric::real_time);
  ASSERT_EQ(r.benchmarks.size(), 1u);
  const auto& [name, s] = *r.benchmarks.begin();
  // Identity: kind plus configuration fields, not run-time outputs such as algorithm_index.
  EXPECT_EQ(name, "gemm/dtype=bf16/k=8192/m=8192/n=8192");
  EXPECT_TRUE(s.summary_only);
  EXPECT_EQ(s.stats.count, 20u);
  EXPECT_DOUBLE_EQ(s.iqr_seconds, 2e-5);
  // A measurement missing a statistic, or a profile missing a field, is an error naming it.
  auto message = [](const json& j) {
    try {
      parse_results(j, "p.json", time_metric::real_time);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  json no_p90 = doc;
  no_p90["rows"][0]["measurement"]["seconds"].erase("p90");  // once read as the median
  EXPECT_NE(message(no_p90).find("p.json: rows[0].measurement.seconds.p90: missing (schema "
                                 "ridgeline.gpu_profile/v1)"),
            std::string::npos)
      << message(no_p90);
  json no_flops = doc;
  no_flops["rows"][0].erase("flops");
  EXPECT_NE(message(no_flops).find("rows[0].flops: missing"), std::string::npos)
      << message(no_flops);
  json no_bandwidth = doc;
  no_bandwidth.erase("bandwidth");
  EXPECT_NE(message(no_bandwidth).find("p.json: bandwidth: missing"), std::string::npos)
      << message(no_bandwidth);
}

TEST(Results, CorruptPartialAndForeignFilesAreClearErrors) {
  const json doc = gbench({{"BM_a", {1, 2, 3}}});
  auto message = [](const json& j) {
    try {
      parse_results(j, "x.json", time_metric::real_time);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(json::array()).find("not a result"), std::string::npos);
  EXPECT_NE(message(json{{"foo", 1}}).find("not a result this reader knows"), std::string::npos);
  EXPECT_NE(message(json{{"benchmarks", 3}}).find("not an array"), std::string::npos);
  EXPECT_NE(message(json{{"benchmarks", json::array()}}).find("no measured benchmarks"),
            std::string::npos);
  json bad = doc;
  bad["benchmarks"][0]["real_time"] = "fast";
  EXPECT_NE(message(bad).find("benchmarks[0]: 'real_time' is missing or not a number"),
            std::string::npos)
      << message(bad);
  json schema = {{"schema", "other.thing/v2"}, {"rows", json::array()}};
  EXPECT_NE(message(schema).find("unknown schema"), std::string::npos);

  // Files: truncated JSON says so; a missing file is an io_error.
  const auto dir =
      std::filesystem::temp_directory_path() / ("rl_results_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string text = doc.dump();
  {
    std::ofstream(dir / "partial.json") << text.substr(0, text.size() / 2);
    std::ofstream(dir / "empty.json") << "  \n";
  }
  try {
    load_results(dir / "partial.json", time_metric::real_time);
    ADD_FAILURE() << "partial file accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_results(dir / "empty.json", time_metric::real_time), std::invalid_argument);
  EXPECT_THROW(load_results(dir / "missing.json", time_metric::real_time), ridgeline::io_error);
  std::filesystem::remove_all(dir);
}

TEST(Compare, VerdictRules) {
  // slower/faster: significant, beyond the threshold and beyond the spread.
  EXPECT_EQ(decide(0.10, 0.001, 0.02, 0.02, 0.05, 0.05), verdict::slower);
  EXPECT_EQ(decide(-0.10, 0.001, 0.02, 0.02, 0.05, 0.05), verdict::faster);
  // Significant but below the threshold: unchanged.
  EXPECT_EQ(decide(0.03, 0.001, 0.01, 0.01, 0.05, 0.05), verdict::unchanged);
  // Beyond the threshold but not significant: cannot tell.
  EXPECT_EQ(decide(0.10, 0.2, 0.02, 0.02, 0.05, 0.05), verdict::noisy);
  // Spread of either side above the threshold: too noisy, unless the change exceeds the spread.
  EXPECT_EQ(decide(0.01, 0.5, 0.08, 0.01, 0.05, 0.05), verdict::noisy);
  EXPECT_EQ(decide(0.07, 0.001, 0.01, 0.08, 0.05, 0.05), verdict::noisy);
  EXPECT_EQ(decide(0.50, 0.001, 0.01, 0.08, 0.05, 0.05), verdict::slower);
  EXPECT_EQ(decide(0.01, 0.5, 0.01, 0.01, 0.05, 0.05), verdict::unchanged);
}

TEST(Compare, DetectsAShiftAndPassesAnAaComparison) {
  const auto base = parse_results(gbench({{"BM_a", around(1000, 2)}, {"BM_b", around(500, 1)}}),
                                  "base", time_metric::real_time);
  const auto same = parse_results(gbench({{"BM_a", around(1001, 2)}, {"BM_b", around(500, 1)}}),
                                  "same", time_metric::real_time);
  const auto slow = parse_results(gbench({{"BM_a", around(1200, 2)}, {"BM_b", around(400, 1)}}),
                                  "slow", time_metric::real_time);
  const auto aa = compare_results(base, same, {});
  EXPECT_FALSE(aa.regressed());
  EXPECT_EQ(aa.count(verdict::unchanged), 2);
  const auto c = compare_results(base, slow, {});
  ASSERT_EQ(c.rows.size(), 2u);
  EXPECT_EQ(c.rows[0].name, "BM_a");
  EXPECT_EQ(c.rows[0].result, verdict::slower);
  EXPECT_NEAR(c.rows[0].change, 1199.0 / 999.0 - 1, 1e-9);  // medians of around(): center - 1
  EXPECT_EQ(c.rows[0].test, "mann-whitney exact");
  EXPECT_LT(c.rows[0].p_value, 1e-4);
  EXPECT_EQ(c.rows[1].result, verdict::faster);
  EXPECT_TRUE(c.regressed());
  const std::string md = to_markdown(c);
  EXPECT_NE(md.find("1 slower, 1 faster, 0 unchanged, 0 too noisy"), std::string::npos) << md;
  EXPECT_NE(md.find("| `BM_a` |"), std::string::npos);
  EXPECT_NE(md.find("**slower**"), std::string::npos);
  EXPECT_EQ(to_json(c)["regressed"], true);
  EXPECT_NE(to_text(c).find("REGRESSION"), std::string::npos);
}

TEST(Compare, FewRepetitionsAreTooNoisyToTell) {
  const auto base = parse_results(gbench({{"BM_a", {100, 101}}}), "b", time_metric::real_time);
  const auto next = parse_results(gbench({{"BM_a", {200, 201}}}), "n", time_metric::real_time);
  const auto c = compare_results(base, next, {});
  EXPECT_EQ(c.rows[0].result, verdict::noisy);
  EXPECT_NE(c.rows[0].note.find("repetitions"), std::string::npos);
}

TEST(Compare, PerBenchmarkThresholds) {
  compare_options o;
  o.threshold = 0.05;
  o.thresholds = {{"BM_a", 0.5}, {"BM_*", 0.3}, {"BM_long*", 0.4}};
  EXPECT_DOUBLE_EQ(threshold_for(o, "BM_a"), 0.5);       // exact name
  EXPECT_DOUBLE_EQ(threshold_for(o, "BM_b"), 0.3);       // glob
  EXPECT_DOUBLE_EQ(threshold_for(o, "BM_long_x"), 0.4);  // the longest glob wins
  EXPECT_DOUBLE_EQ(threshold_for(o, "other"), 0.05);
  const auto base = parse_results(gbench({{"BM_a", around(1000, 2)}}), "b", time_metric::real_time);
  const auto slow = parse_results(gbench({{"BM_a", around(1200, 2)}}), "n", time_metric::real_time);
  EXPECT_EQ(compare_results(base, slow, o).rows[0].result, verdict::unchanged);  // 20 % < 50 %
}

TEST(Compare, EnvironmentMismatchIsRefusedUnlessAllowed) {
  const auto h100 = parse_results(gbench({{"BM_a", around(1000, 2)}}, "NVIDIA H100 80GB HBM3"), "b",
                                  time_metric::real_time);
  const auto h200 = parse_results(gbench({{"BM_a", around(1000, 2)}}, "NVIDIA H200"), "n",
                                  time_metric::real_time);
  const auto debug =
      parse_results(gbench({{"BM_a", around(1000, 2)}}, "NVIDIA H100 80GB HBM3", "Debug"), "d",
                    time_metric::real_time);
  const auto cpu = parse_results(gbench({{"BM_a", around(1000, 2)}}), "c", time_metric::real_time);
  for (const auto* other : {&h200, &debug, &cpu}) {
    try {
      compare_results(h100, *other, {});
      ADD_FAILURE() << "compared across environments: " << other->source;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("different environments"), std::string::npos);
    }
  }
  compare_options o;
  o.allow_environment_mismatch = true;
  const auto c = compare_results(h100, h200, o);
  ASSERT_FALSE(c.environment.empty());
  EXPECT_EQ(c.environment[0].field, "gpu.name");
  EXPECT_NE(to_markdown(c).find("differs; compared anyway"), std::string::npos);
  EXPECT_NO_THROW(compare_results(h100, h100, {}));
}

TEST(Compare, BenchmarkSetsThatDoNotMatch) {
  const auto ab = parse_results(gbench({{"BM_a", around(1000, 2)}, {"BM_b", around(10, 1)}}), "b",
                                time_metric::real_time);
  const auto ac = parse_results(gbench({{"BM_a", around(1000, 2)}, {"BM_c", around(10, 1)}}), "n",
                                time_metric::real_time);
  const auto c_only = parse_results(gbench({{"BM_c", around(10, 1)}}), "c", time_metric::real_time);
  try {
    compare_results(ab, ac, {});
    ADD_FAILURE() << "differing sets accepted";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("benchmark sets differ"), std::string::npos) << m;
    EXPECT_NE(m.find("BM_b"), std::string::npos) << m;
    EXPECT_NE(m.find("BM_c"), std::string::npos) << m;
  }
  compare_options o;
  o.allow_missing = true;
  const auto c = compare_results(ab, ac, o);
  EXPECT_EQ(c.rows.size(), 1u);
  EXPECT_EQ(c.only_in_base, std::vector<std::string>{"BM_b"});
  EXPECT_EQ(c.only_in_next, std::vector<std::string>{"BM_c"});
  EXPECT_THROW(compare_results(ab, c_only, o), std::invalid_argument);  // nothing in common
  o.filter = "BM_a";
  o.allow_missing = false;
  EXPECT_EQ(compare_results(ab, ac, o).rows.size(), 1u);  // the filter makes the sets match
}

TEST(Compare, NormalizeByCancelsMachineSpeed) {
  // The new machine is 30 % slower across the board, the yardstick included: no regression.
  const auto base = parse_results(gbench({{"BM_ref", around(1000, 2)}, {"BM_a", around(500, 1)}}),
                                  "b", time_metric::real_time);
  const auto next =
      parse_results(gbench({{"BM_ref", around(1300, 2.6)}, {"BM_a", around(650, 1.3)}}), "n",
                    time_metric::real_time);
  EXPECT_TRUE(compare_results(base, next, {}).regressed());
  compare_options o;
  o.normalize_by = "BM_ref";
  const auto c = compare_results(base, next, o);
  EXPECT_FALSE(c.regressed());
  ASSERT_EQ(c.rows.size(), 1u);  // the reference gets no verdict
  EXPECT_NEAR(c.rows[0].change, 0.0, 1e-9);
  ASSERT_TRUE(c.reference_change);
  EXPECT_NEAR(*c.reference_change, 0.3, 1e-9);
  o.normalize_by = "BM_missing";
  EXPECT_THROW(compare_results(base, next, o), std::invalid_argument);
}

TEST(Compare, SummaryOnlyRowsUseAZTestOnMedians) {
  auto profile = [](double median, double noise) {
    json doc = committed_profile();
    json row;
    for (const auto& r : doc["rows"]) {
      if (r["kind"] == "bandwidth" && r["op"] == "read") row = r;
    }
    row["measurement"] = measurement(20, median, median * 0.005, noise);
    doc["rows"] = json::array({row});
    return doc;
  };
  const auto base = parse_results(profile(1e-3, 0.002), "b", time_metric::real_time);
  const auto slow = parse_results(profile(1.1e-3, 0.002), "n", time_metric::real_time);
  const auto same = parse_results(profile(1.001e-3, 0.002), "s", time_metric::real_time);
  const auto c = compare_results(base, slow, {});
  EXPECT_EQ(c.rows[0].test, "z on medians");
  EXPECT_EQ(c.rows[0].result, verdict::slower);
  EXPECT_EQ(compare_results(base, same, {}).rows[0].result, verdict::unchanged);
}

TEST(Results, AutomaticMetricFollowsTheBenchmark) {
  // gbench() reports cpu_time = real_time / 2.
  const json doc = gbench({{"BM_cpu", {100, 100, 100}},
                           {"BM_gpu/manual_time", {100, 100, 100}},
                           {"BM_wall/real_time", {100, 100, 100}}});
  const auto r = parse_results(doc, "t.json", time_metric::automatic);
  EXPECT_NEAR(r.benchmarks.at("BM_cpu").stats.median, 50e-9, 1e-18);
  EXPECT_NEAR(r.benchmarks.at("BM_gpu/manual_time").stats.median, 100e-9, 1e-18);
  EXPECT_NEAR(r.benchmarks.at("BM_wall/real_time").stats.median, 100e-9, 1e-18);
  EXPECT_EQ(parse_time_metric("auto"), time_metric::automatic);
  EXPECT_THROW(parse_time_metric("wall"), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Serving results (ridgeline.kv/v1 of replay and load): per-request samples, percentiles, pairing.
namespace {

namespace schema = ridgeline::schema;

struct serving_row_spec {
  std::string label;
  std::vector<double> ttft, tpot, e2e;  // per request; -1: undefined
  double output_tokens_per_second = 250;
};

json environment_block(bool with_gpu) {
  json env = {{"time_utc", "2026-11-21T10:00:00Z"},
              {"host", {{"hostname", "box"}, {"kernel", "Linux 6"}, {"cpu_threads", 2}}},
              {"ridgeline",
               {{"version", "0.1"},
                {"git_sha", "abc123"},
                {"git_dirty", false},
                {"build_type", "Release"},
                {"cxx_compiler", "g++"},
                {"cuda_compiler", ""},
                {"built_with_cuda", false}}}};
  if (with_gpu) {
    env["gpu"] = {{"name", "NVIDIA H100 80GB HBM3"},
                  {"compute_capability", "9.0"},
                  {"cuda_runtime_version", "13.0"},
                  {"sm_count", 132},
                  {"memory_bytes", std::int64_t{85} * 1000 * 1000 * 1000}};
  }
  return env;
}

std::vector<double> defined(const std::vector<double>& v) {
  std::vector<double> out;
  for (double x : v) {
    if (x != -1) out.push_back(x);
  }
  return out;
}

// A serving-results document written by core's writer, as replay ("cuda", with its GPU) and load
// ("http", the client's host only) write theirs.
json serving_doc(const std::vector<serving_row_spec>& rows, const std::string& executor = "cuda") {
  schema::serving_results doc;
  doc.env = schema::environment_from_block(environment_block(executor != "http"));
  doc.config.workload = "generator:requests=5";
  doc.config.model = "tiny";
  doc.config.executor = executor;
  for (const auto& spec : rows) {
    schema::serving_row r;
    r.capacity = spec.label;
    r.output_tokens_per_second = spec.output_tokens_per_second;
    r.ttft_seconds = schema::distribution_of(defined(spec.ttft));
    r.tpot_seconds = schema::distribution_of(defined(spec.tpot));
    r.e2e_seconds = schema::distribution_of(defined(spec.e2e));
    schema::serving_measured m;
    m.executor = executor;
    m.device = "test";
    auto& q = m.requests;
    const std::size_t n = spec.ttft.size();
    for (std::size_t i = 0; i < n; ++i) {
      q.id.push_back(static_cast<std::int64_t>(i));
      q.prompt_tokens.push_back(8);
      q.output_tokens.push_back(4);
      q.cached_tokens.push_back(0);
      q.preemptions.push_back(0);
      q.outcome.push_back(spec.e2e[i] == -1 ? "rejected" : "finished");
      q.arrival_seconds.push_back(0.5 * static_cast<double>(i));
      q.submit_lag_seconds.push_back(0);
    }
    q.ttft_seconds = spec.ttft;
    q.tpot_seconds = spec.tpot;
    q.e2e_seconds = spec.e2e;
    r.measured = m;
    doc.rows.push_back(r);
  }
  return schema::to_json(doc);
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

const std::vector<double> k_ttft = {0.1, 0.2, 0.3, 0.4};
const std::vector<double> k_tpot = {0.01, 0.02, 0.03, 0.04};
const std::vector<double> k_e2e = {1.0, 2.0, 3.0, 4.0};

}  // namespace

TEST(Results, ServingRowsGiveOneBenchmarkPerLatency) {
  const json doc = serving_doc({{"engine pool",
                                 {0.1, 0.2, -1, 0.3, 0.4},
                                 {0.01, -1, 0.02, 0.03, 0.04},
                                 {1.0, 2.0, -1, 3.0, 4.0},
                                 250}});
  const result_set r = parse_results(doc, "replay.json", time_metric::automatic);
  EXPECT_EQ(r.format, "ridgeline.kv/v1");
  EXPECT_FALSE(r.client_environment);
  EXPECT_EQ(r.git_sha, "abc123");
  std::vector<std::string> names;
  for (const auto& [name, s] : r.benchmarks) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "serving/engine pool/e2e", "serving/engine pool/seconds_per_output_token",
                       "serving/engine pool/tpot", "serving/engine pool/ttft"}));
  // One sample per request, the undefined ones (-1) skipped.
  const auto& ttft = r.benchmarks.at("serving/engine pool/ttft");
  EXPECT_EQ(ttft.seconds, (std::vector<double>{0.1, 0.2, 0.3, 0.4}));
  EXPECT_TRUE(ttft.per_request);
  EXPECT_FALSE(ttft.summary_only);
  EXPECT_DOUBLE_EQ(ttft.stats.median, 0.25);
  EXPECT_EQ(r.benchmarks.at("serving/engine pool/tpot").seconds,
            (std::vector<double>{0.01, 0.02, 0.03, 0.04}));
  EXPECT_EQ(r.benchmarks.at("serving/engine pool/e2e").stats.count, 4u);
  // Throughput as a time per output token: one value a run, summary only, no percentiles.
  const auto& tput = r.benchmarks.at("serving/engine pool/seconds_per_output_token");
  EXPECT_TRUE(tput.summary_only);
  EXPECT_FALSE(tput.per_request);
  EXPECT_EQ(tput.stats.count, 1u);
  EXPECT_DOUBLE_EQ(tput.stats.median, 1.0 / 250);
  ASSERT_EQ(r.serving_rows.size(), 1u);
  EXPECT_EQ(r.serving_rows[0].key, "engine pool");

  // A load run: several levels, labels as load writes them ("rate 4/s" holds a slash); a repeated
  // label gets #2.
  const json load = serving_doc({{"rate 4/s", k_ttft, k_tpot, k_e2e},
                                 {"trace", k_ttft, k_tpot, k_e2e},
                                 {"trace", k_ttft, k_tpot, k_e2e}},
                                "http");
  const result_set l = parse_results(load, "load.json", time_metric::automatic);
  EXPECT_TRUE(l.client_environment);
  EXPECT_TRUE(l.benchmarks.count("serving/rate 4/s/ttft"));
  EXPECT_TRUE(l.benchmarks.count("serving/trace#2/e2e"));
  ASSERT_EQ(l.serving_rows.size(), 3u);
  EXPECT_EQ(l.serving_rows[2].key, "trace#2");
}

TEST(Results, ServingFieldsAreReadStrictly) {
  const json good = serving_doc({{"engine pool", k_ttft, k_tpot, k_e2e}});
  json missing = good;
  missing["rows"][0]["measured"]["requests"].erase("tpot_seconds");
  EXPECT_EQ(what_of([&] { parse_results(missing, "r.json", time_metric::automatic); }),
            "r.json: rows[0].measured.requests.tpot_seconds: missing (schema ridgeline.kv/v1)");
  json negative = good;
  negative["rows"][0]["measured"]["requests"]["ttft_seconds"][2] = -0.5;
  EXPECT_EQ(what_of([&] { parse_results(negative, "r.json", time_metric::automatic); }),
            "r.json: rows[0].measured.requests.ttft_seconds[2]: negative and not -1 (undefined) "
            "(schema ridgeline.kv/v1)");
  json mistyped = good;
  mistyped["rows"][0]["measured"]["requests"]["e2e_seconds"][1] = "slow";
  EXPECT_NE(what_of([&] { parse_results(mistyped, "r.json", time_metric::automatic); })
                .find("r.json: rows[0].measured.requests.e2e_seconds"),
            std::string::npos);
  // Another required field of the format, outside the columns compare uses.
  json no_config = good;
  no_config["config"].erase("model");
  EXPECT_NE(what_of([&] { parse_results(no_config, "r.json", time_metric::automatic); })
                .find("r.json: config.model: missing"),
            std::string::npos);
  // A kv simulation (no measured rows) holds nothing to compare.
  json simulated = good;
  simulated["rows"][0].erase("measured");
  EXPECT_NE(what_of([&] { parse_results(simulated, "kv.json", time_metric::automatic); })
                .find("kv.json: serving results without a measured row"),
            std::string::npos);
  // A metric no request defines is kept with an error, so compare names it.
  const json unfinished = serving_doc({{"engine pool", {-1, -1}, {-1, -1}, {-1, -1}}});
  const result_set r = parse_results(unfinished, "u.json", time_metric::automatic);
  EXPECT_NE(r.benchmarks.at("serving/engine pool/ttft").error.find("no request of 2"),
            std::string::npos);
  const result_set base = parse_results(good, "good.json", time_metric::automatic);
  EXPECT_NE(what_of([&] { compare_results(base, r, {}); })
                .find("serving/engine pool/ttft (error in u.json: no request of 2"),
            std::string::npos);
}

// p50, p90 and p99 by hand (linear interpolation at position q (n - 1) of the sorted samples):
// base 0.1 0.2 0.3 0.4: p50 = 0.25, p90 = 0.3 + 0.7 x 0.1 = 0.37, p99 = 0.3 + 0.97 x 0.1 = 0.397
// new  0.1 0.2 0.3 0.5: p50 = 0.25, p90 = 0.3 + 0.7 x 0.2 = 0.44, p99 = 0.3 + 0.97 x 0.2 = 0.494
TEST(Compare, ServingPercentileChangesByHand) {
  const auto base = parse_results(serving_doc({{"engine pool", k_ttft, k_tpot, k_e2e, 250}}),
                                  "replay.json", time_metric::automatic);
  const auto next = parse_results(
      serving_doc({{"trace", {0.1, 0.2, 0.3, 0.5}, k_tpot, k_e2e, 200}}, "http"), "load.json",
      time_metric::automatic);
  compare_options o;
  o.percentile_thresholds = {{0.5, 0.05}, {0.9, 0.05}, {0.99, 0.10}, {0.95, 0.5}};
  const comparison c = compare_results(base, next, o);
  // One row on each side: paired whatever the labels, compared under BASE's names.
  ASSERT_EQ(c.row_pairs.size(), 1u);
  EXPECT_EQ(c.row_pairs[0], (std::pair<std::string, std::string>{"engine pool", "trace"}));
  ASSERT_EQ(c.rows.size(), 4u);
  const benchmark_comparison& ttft = c.rows[3];
  ASSERT_EQ(ttft.name, "serving/engine pool/ttft");
  ASSERT_EQ(ttft.percentiles.size(), 4u);  // p50, p90, p95 (a threshold names it), p99
  const double expected[][3] = {{0.5, 0.25, 0.25}, {0.9, 0.37, 0.44}, {0.95, 0.385, 0.47},
                                {0.99, 0.397, 0.494}};
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& p = ttft.percentiles[i];
    EXPECT_DOUBLE_EQ(p.quantile, expected[i][0]);
    EXPECT_NEAR(p.base, expected[i][1], 1e-12);
    EXPECT_NEAR(p.next, expected[i][2], 1e-12);
    EXPECT_NEAR(p.change, expected[i][2] / expected[i][1] - 1, 1e-12);
  }
  EXPECT_NEAR(ttft.percentiles[1].change, 0.189189189189, 1e-9);
  EXPECT_NEAR(ttft.percentiles[3].change, 0.244332493703, 1e-9);
  EXPECT_FALSE(ttft.percentiles[0].exceeded);
  EXPECT_TRUE(ttft.percentiles[1].exceeded);
  EXPECT_FALSE(ttft.percentiles[2].exceeded);  // 21.6% against 50%
  EXPECT_TRUE(ttft.percentiles[3].exceeded);
  EXPECT_EQ(c.percentile_failures,
            (std::vector<std::string>{"serving/engine pool/ttft p90 +18.9% > 5.0%",
                                      "serving/engine pool/ttft p99 +24.4% > 10.0%"}));
  EXPECT_TRUE(c.percentile_gate_failed());
  // Identical tpot and e2e: every percentile change is 0; throughput has none (one value a run).
  for (const auto* name : {"serving/engine pool/tpot", "serving/engine pool/e2e"}) {
    const auto it = std::find_if(c.rows.begin(), c.rows.end(),
                                 [&](const auto& r) { return r.name == name; });
    ASSERT_NE(it, c.rows.end());
    for (const auto& p : it->percentiles) EXPECT_EQ(p.change, 0.0) << name;
  }
  const auto& tput = c.rows[1];
  EXPECT_EQ(tput.name, "serving/engine pool/seconds_per_output_token");
  EXPECT_TRUE(tput.percentiles.empty());
  EXPECT_NEAR(tput.change, 250.0 / 200.0 - 1, 1e-12);  // 1/200 against 1/250 s per token
  EXPECT_EQ(tput.result, verdict::noisy);              // one value a run: nothing to test
  // The reports carry them.
  const std::string text = to_text(c);
  EXPECT_NE(text.find("p50"), std::string::npos) << text;
  EXPECT_NE(text.find("+18.9% (> 5.0%)"), std::string::npos) << text;
  EXPECT_NE(text.find("percentile gate (p50 5.0%, p90 5.0%, p95 50.0%, p99 10.0%): FAILED"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("serving row 'trace' of NEW compared with row 'engine pool'"),
            std::string::npos)
      << text;
  const json j = to_json(c);
  EXPECT_EQ(j["percentile_gate"]["passed"], false);
  EXPECT_EQ(j["row_pairs"][0]["new"], "trace");
  const json& pj = j["rows"][3]["percentiles"];
  ASSERT_EQ(pj.size(), 4u);
  EXPECT_EQ(pj[1]["percentile"], "p90");
  EXPECT_NEAR(pj[1]["change"].get<double>(), 0.44 / 0.37 - 1, 1e-12);
  EXPECT_EQ(pj[1]["exceeded"], true);
  EXPECT_FALSE(j["rows"][1].contains("percentiles"));
  EXPECT_NE(to_markdown(c).find("**+24.4% (> 10.0%)**"), std::string::npos);
  // Wide enough thresholds pass; without thresholds there is no gate at all.
  o.percentile_thresholds = {{0.5, 0.05}, {0.9, 0.2}, {0.99, 0.25}};
  EXPECT_FALSE(compare_results(base, next, o).percentile_gate_failed());
  const comparison plain = compare_results(base, next, {});
  EXPECT_EQ(plain.rows[3].percentiles.size(), 3u);
  EXPECT_FALSE(to_json(plain).contains("percentile_gate"));
}

TEST(Compare, PercentileGateNeedsPerRequestSamples) {
  const auto g = parse_results(gbench({{"BM_x", around(100, 1)}}), "g.json",
                               time_metric::automatic);
  compare_options o;
  o.percentile_thresholds = {{0.5, 0.05}};
  EXPECT_NE(what_of([&] { compare_results(g, g, o); }).find("need per-request samples"),
            std::string::npos);
  // Google Benchmark repetitions get no percentiles.
  EXPECT_TRUE(compare_results(g, g, {}).rows[0].percentiles.empty());
}

TEST(Compare, ServingRowPairing) {
  const auto two = parse_results(serving_doc({{"rate 2/s", k_ttft, k_tpot, k_e2e, 100},
                                              {"rate 4/s", k_ttft, k_tpot, k_e2e, 200}}),
                                 "a.json", time_metric::automatic);
  const auto swapped = parse_results(serving_doc({{"x", k_ttft, k_tpot, k_e2e, 200},
                                                  {"y", k_ttft, k_tpot, k_e2e, 100}}),
                                     "b.json", time_metric::automatic);
  const auto one = parse_results(serving_doc({{"trace", k_ttft, k_tpot, k_e2e}}), "c.json",
                                 time_metric::automatic);
  // auto with several rows: by label only, and these share none.
  EXPECT_NE(
      what_of([&] { compare_results(two, swapped, {}); }).find("no benchmark appears in both"),
      std::string::npos);
  compare_options o;
  o.pair_rows = row_pairing::order;
  const comparison c = compare_results(two, swapped, o);
  ASSERT_EQ(c.row_pairs.size(), 2u);
  // rate 2/s (100 tok/s) against x (200 tok/s): the time per token halves.
  auto change_of = [&](const std::string& name) {
    const auto it = std::find_if(c.rows.begin(), c.rows.end(),
                                 [&](const auto& r) { return r.name == name; });
    return it == c.rows.end() ? std::nan("") : it->change;
  };
  EXPECT_NEAR(change_of("serving/rate 2/s/seconds_per_output_token"), -0.5, 1e-12);
  EXPECT_NEAR(change_of("serving/rate 4/s/seconds_per_output_token"), 1.0, 1e-12);
  EXPECT_EQ(to_json(c)["options"]["pair_rows"], "order");
  EXPECT_NE(what_of([&] { compare_results(two, one, o); })
                .find("--pair-rows order: a.json has 2 serving rows and c.json has 1"),
            std::string::npos);
  const auto g = parse_results(gbench({{"BM_x", around(100, 1)}}), "g.json",
                               time_metric::automatic);
  EXPECT_NE(what_of([&] { compare_results(g, g, o); }).find("--pair-rows order"),
            std::string::npos);
  o.pair_rows = row_pairing::label;
  const auto replay = parse_results(serving_doc({{"engine pool", k_ttft, k_tpot, k_e2e}}),
                                    "r.json", time_metric::automatic);
  EXPECT_NE(what_of([&] { compare_results(replay, one, o); }).find("no benchmark appears in both"),
            std::string::npos);
  EXPECT_EQ(parse_row_pairing("auto"), row_pairing::automatic);
  EXPECT_THROW(parse_row_pairing("name"), std::invalid_argument);
}

TEST(Compare, LoadRunsDoNotEnforceTheServersGpu) {
  // A replay on an H100 against a load run, whose environment is its client's (no GPU).
  const auto replay = parse_results(serving_doc({{"engine pool", k_ttft, k_tpot, k_e2e}}),
                                    "replay.json", time_metric::automatic);
  // The client was built otherwise too (a RelWithDebInfo client against a Release server).
  json load_doc = serving_doc({{"trace", k_ttft, k_tpot, k_e2e}}, "http");
  load_doc["environment"]["ridgeline"]["build_type"] = "RelWithDebInfo";
  const auto load = parse_results(load_doc, "load.json", time_metric::automatic);
  const comparison c = compare_results(replay, load, {});
  for (const auto& d : c.environment) EXPECT_FALSE(d.blocking) << d.field;
  ASSERT_FALSE(c.environment.empty());
  EXPECT_EQ(c.environment[0].field, "gpu");
  EXPECT_FALSE(c.environment[0].blocking);
  EXPECT_NE(c.notes.back().find("a load run's environment is its client's host"),
            std::string::npos);
  // Two in-process runs, one with a GPU and one without, still differ in a blocking way.
  json no_gpu = serving_doc({{"engine pool", k_ttft, k_tpot, k_e2e}}, "cpu");
  no_gpu["environment"] = environment_block(false);
  const auto cpu = parse_results(no_gpu, "cpu.json", time_metric::automatic);
  EXPECT_NE(what_of([&] { compare_results(replay, cpu, {}); }).find("different environments"),
            std::string::npos);
}

// The committed replays (docs/results/serving/run2, H100) read through the same path.
TEST(Compare, CommittedReplayResults) {
  const std::filesystem::path dir =
      std::filesystem::path(RIDGELINE_SOURCE_DIR) / "docs/results/serving/run2";
  const result_set cold = load_results(dir / "prefix_cold.json.gz", time_metric::automatic);
  const result_set warm = load_results(dir / "prefix_warm.json.gz", time_metric::automatic);
  EXPECT_EQ(cold.benchmarks.size(), 4u);
  const schema::serving_results typed = schema::read_serving_results(dir / "prefix_warm.json.gz");
  const auto& q = typed.rows[0].measured->requests;
  const std::vector<double> ttft = defined(q.ttft_seconds);
  const auto& series = warm.benchmarks.at("serving/engine pool/ttft");
  EXPECT_EQ(series.seconds, ttft);
  EXPECT_EQ(series.stats.count, static_cast<std::size_t>(typed.rows[0].ttft_seconds.count));
  // The file's own p50/p90 (distribution_of, the same quantile) agree with the samples'.
  EXPECT_NEAR(quantile(series.seconds, 0.5), typed.rows[0].ttft_seconds.quantiles->p50, 1e-12);
  EXPECT_NEAR(quantile(series.seconds, 0.9), typed.rows[0].ttft_seconds.quantiles->p90, 1e-12);
  EXPECT_NEAR(warm.benchmarks.at("serving/engine pool/seconds_per_output_token").stats.median,
              1.0 / typed.rows[0].output_tokens_per_second, 1e-15);
  const comparison c = compare_results(cold, warm, {});
  ASSERT_EQ(c.rows.size(), 4u);
  const auto& p99 = c.rows[3].percentiles[2];
  EXPECT_DOUBLE_EQ(p99.quantile, 0.99);
  EXPECT_NEAR(p99.change,
              quantile(series.seconds, 0.99) /
                      quantile(cold.benchmarks.at("serving/engine pool/ttft").seconds, 0.99) -
                  1,
              1e-12);
  // A run against itself: every change 0, any gate passes.
  const result_set chat = load_results(dir / "chat.json.gz", time_metric::automatic);
  compare_options o;
  o.percentile_thresholds = {{0.5, 0.001}, {0.99, 0.001}};
  const comparison self = compare_results(chat, chat, o);
  EXPECT_FALSE(self.percentile_gate_failed());
  EXPECT_FALSE(self.regressed());
}
