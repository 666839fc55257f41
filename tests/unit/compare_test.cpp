// `ridgeline compare`: reading result files, the verdict rules, environment and benchmark-set
// checks, thresholds, normalisation and the reports.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ridgeline/regress/compare.hpp"
#include "ridgeline/regress/results.hpp"
#include "ridgeline/core/errors.hpp"

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
