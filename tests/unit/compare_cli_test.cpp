// `ridgeline compare` and `ridgeline history` as a user runs them: exit codes (0 ok, 1 regression,
// 2 bad input, 4 unreadable file), one-line errors, the files they write; and the tools/regress
// functions the two commands call (compare_inputs.hpp, trend.hpp); serving results of a real load
// run and of the committed replays through both commands.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/load/test_server.hpp"
#include "ridgeline/regress/compare.hpp"
#include "ridgeline/regress/compare_inputs.hpp"
#include "ridgeline/regress/trend.hpp"

using namespace ridgeline;
namespace fs = std::filesystem;
using nlohmann::json;

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
int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

struct fixture_dir {
  fs::path path;
  fixture_dir() {
    path = fs::temp_directory_path() /
           ("rl_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~fixture_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

// Google Benchmark JSON: BM_a and BM_b with 10 repetitions each, BM_a scaled by `a_factor`.
std::string gbench_text(double a_factor, const std::string& time = "2026-11-21T10:00:00Z",
                        const std::string& build_type = "Release") {
  json benchmarks = json::array();
  for (const auto& [name, base] :
       std::vector<std::pair<std::string, double>>{{"BM_a", 1000}, {"BM_b", 50}}) {
    for (int i = 0; i < 10; ++i) {
      const double t = base * (1 + 0.001 * i) * (name == "BM_a" ? a_factor : 1.0);
      benchmarks.push_back({{"name", name},
                            {"run_name", name},
                            {"run_type", "iteration"},
                            {"real_time", t},
                            {"cpu_time", t},
                            {"time_unit", "ns"}});
    }
  }
  json context = {
      {"ridgeline_ridgeline", json{{"build_type", build_type}, {"git_sha", "abc"}}.dump()},
      {"ridgeline_time_utc", time}};
  return json{{"context", context}, {"benchmarks", benchmarks}}.dump(1);
}

}  // namespace

TEST(CompareCli, ExitCodes) {
  fixture_dir d;
  const auto base = d.write("base.json", gbench_text(1.0));
  const auto same = d.write("same.json", gbench_text(1.0));
  const auto slow = d.write("slow.json", gbench_text(1.10));
  auto r = run({"compare", base, same});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("0 slower, 0 faster, 2 unchanged"), std::string::npos) << r.out;

  const std::string md = (d.path / "comment.md").string();
  const std::string js = (d.path / "cmp.json").string();
  r = run({"compare", base, slow, "--markdown", md, "--json-output", js});
  EXPECT_EQ(r.code, cli::failure) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  EXPECT_NE(r.err.find("1 benchmark(s) slower"), std::string::npos) << r.err;
  std::ifstream in(md);
  const std::string comment((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(comment.find("**Regression**"), std::string::npos) << comment;
  std::ifstream jin(js);
  EXPECT_EQ(json::parse(jin)["rows"][0]["verdict"], "slower");

  // The same slowdown under a generous per-benchmark threshold passes.
  r = run({"compare", base, slow, "--threshold-for", "BM_a=15%"});
  EXPECT_EQ(r.code, 0) << r.err;
  const auto thresholds = d.write("t.json", R"({"_comment": "why", "BM_*": 0.2})");
  r = run({"compare", base, slow, "--thresholds", thresholds});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(CompareCli, BadInputsAreOneLineErrors) {
  fixture_dir d;
  const auto base = d.write("base.json", gbench_text(1.0));
  const std::string full = gbench_text(1.0);
  const auto partial = d.write("partial.json", full.substr(0, full.size() / 3));
  const auto debug = d.write("debug.json", gbench_text(1.0, "2026-11-21T10:00:00Z", "Debug"));
  auto r = run({"compare", base, partial});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err), 1);
  r = run({"compare", base, debug});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("ridgeline.build_type 'Release' vs 'Debug'"), std::string::npos) << r.err;
  EXPECT_EQ(run({"compare", base, debug, "--allow-env-mismatch"}).code, 0);
  r = run({"compare", base, (d.path / "missing.json").string()});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(lines(r.err), 1);
  EXPECT_EQ(run({"compare", base, base, "--threshold", "-3"}).code, cli::bad_input);
  EXPECT_EQ(run({"compare", base, base, "--metric", "wall"}).code, cli::bad_input);
  EXPECT_EQ(run({"compare", base, base, "--threshold-for", "BM_a"}).code, cli::bad_input);
  EXPECT_EQ(run({"compare", base}).code, cli::bad_input);
}

TEST(HistoryCli, AddShowExport) {
  fixture_dir d;
  const std::string db = (d.path / "h.db").string();
  for (int i = 0; i < 8; ++i) {
    // snprintf rather than string concatenation: GCC 12 raises a false -Wrestrict on the latter.
    char when[32], file[32], sha[32];
    std::snprintf(when, sizeof when, "2026-11-21T10:%02d:00Z", i);
    std::snprintf(file, sizeof file, "r%d.json", i);
    std::snprintf(sha, sizeof sha, "sha%d", i);
    const auto f = d.write(file, gbench_text(i < 6 ? 1.0 : 1.3, when));
    const auto r = run({"history", "--db", db, "add", f, "--branch", "main", "--sha", sha});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  auto r = run({"history", "show", "--db", db, "--benchmark", "BM_a"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("step detected"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("BM_b"), std::string::npos);
  r = run({"history", "show", "--db", db, "--benchmark", "BM_a", "--fail-on-change-point"});
  EXPECT_EQ(r.code, cli::failure);
  const std::string chart = (d.path / "chart.json").string();
  r = run({"history", "show", "--db", db, "--json", "-o", chart});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["benchmarks"].size(), 2u);
  EXPECT_EQ(j["benchmarks"][0]["y_median_seconds"].size(), 8u);
  EXPECT_EQ(j["benchmarks"][0]["change_points"][0]["start_git_sha"], "sha6");
  EXPECT_TRUE(j["benchmarks"][1]["change_points"].empty());
  EXPECT_TRUE(fs::exists(chart));
  r = run({"history", "export", "--db", db});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ridgeline_benchmark_change_point{benchmark=\"BM_a\",branch=\"main\"} 1"),
            std::string::npos)
      << r.out;
  r = run({"history", "export", "--db", db, "--pushgateway", "http://127.0.0.1:1"});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(lines(r.err), 1);
}

TEST(HistoryCli, BadFilesLeaveTheHistoryAlone) {
  fixture_dir d;
  const std::string db = (d.path / "h.db").string();
  const auto good = d.write("good.json", gbench_text(1.0));
  ASSERT_EQ(run({"history", "add", "--db", db, good}).code, 0);
  const std::string full = gbench_text(1.0);
  const auto partial = d.write("partial.json", full.substr(0, full.size() - 10));
  // One bad file among good ones: nothing is added.
  auto r = run({"history", "add", "--db", db, good, partial});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1);
  r = run({"history", "show", "--db", db, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["benchmarks"][0]["points"].size(), 1u);
  const auto corrupt = d.write("corrupt.db", std::string(4096, 'z'));
  r = run({"history", "add", "--db", corrupt, good});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_NE(r.err.find("not an SQLite database"), std::string::npos) << r.err;
  r = run({"history", "show", "--db", (d.path / "none.db").string()});
  EXPECT_EQ(r.code, cli::io_failure);
  EXPECT_EQ(run({"history", "show", "--db", db, "--benchmark", "nothing*"}).code, cli::bad_input);
}

TEST(CompareCli, SeveralFilesOfOneRunAreMerged) {
  fixture_dir d;
  const auto base = d.write("base.json", gbench_text(1.0));
  json other = json::parse(gbench_text(1.0));
  for (auto& b : other["benchmarks"]) {
    std::string name = "X";  // appended, not "X" + name: GCC 12 raises a false -Wrestrict there
    name += b["name"].get<std::string>();
    b["name"] = name;
    b["run_name"] = b["name"];
  }
  const auto extra = d.write("extra.json", other.dump());
  auto r = run({"compare", base + "," + extra, base + "," + extra});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("XBM_a"), std::string::npos) << r.out;
  r = run({"compare", base + "," + base, base});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("appears in both"), std::string::npos) << r.err;
  r = run({"compare", base + "," + extra, base});
  EXPECT_EQ(r.code, cli::bad_input);  // XBM_* missing in NEW
}

// The inputs compare reads (tools/regress/compare_inputs.hpp), called as a library.
TEST(CompareInputs, ThresholdsAndResultLists) {
  EXPECT_DOUBLE_EQ(bench::parse_threshold("5%", "t"), 0.05);
  EXPECT_DOUBLE_EQ(bench::parse_threshold("0.2", "t"), 0.2);
  EXPECT_THROW(bench::parse_threshold("0", "t"), std::invalid_argument);
  EXPECT_THROW(bench::parse_threshold("5x", "t"), std::invalid_argument);
  fixture_dir d;
  const auto t = d.write("t.json", R"({"_comment": "x", "BM_a": 0.1, "BM_b*": 0.25})");
  const auto thresholds = bench::load_thresholds(t);
  ASSERT_EQ(thresholds.size(), 2u);
  EXPECT_DOUBLE_EQ(thresholds.at("BM_b*"), 0.25);
  const auto bad = d.write("bad.json", R"({"BM_a": "fast"})");
  try {
    bench::load_thresholds(bad);
    FAIL() << "a non-number threshold was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'BM_a' is not a number"), std::string::npos) << e.what();
  }
  // Two files of one run merge; a blocking environment difference names both files.
  const auto a = d.write("a.json", gbench_text(1.0));
  const auto debug = d.write("debug.json", gbench_text(1.0, "2026-11-21T10:00:00Z", "Debug"));
  EXPECT_THROW(bench::load_result_list(",", bench::time_metric::automatic), std::invalid_argument);
  try {
    bench::load_result_list(a + "," + debug, bench::time_metric::automatic);
    FAIL() << "different build types were merged";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("different environments"), std::string::npos) << e.what();
  }
}

TEST(CompareInputs, PercentileThresholds) {
  const auto t = bench::parse_percentile_thresholds("p50=5%,p90=0.05,p99.9=10%");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_DOUBLE_EQ(t.at(0.5), 0.05);
  EXPECT_DOUBLE_EQ(t.at(0.9), 0.05);
  EXPECT_DOUBLE_EQ(t.begin()->first, 0.5);
  EXPECT_EQ(t.rbegin()->first, 0.999);  // not 0.9990000000000001
  EXPECT_EQ(bench::percentile_label(t.rbegin()->first), "p99.9");
  for (const std::string bad : {"", "p50", "50=5%", "p=5%", "p0=5%", "p100=5%", "pxx=5%",
                                "p50=5%,,p90=5%", "p50=5%,p50=6%", "p50=0", "p50=fast"}) {
    EXPECT_THROW(bench::parse_percentile_thresholds(bad), std::invalid_argument) << bad;
  }
}

// history show's trend (tools/regress/trend.hpp): table, chart data and the recent-change flag.
TEST(HistoryTrend, StepInTheNewestRunsIsRecent) {
  fixture_dir d;
  const std::string db = (d.path / "h.db").string();
  for (int i = 0; i < 8; ++i) {
    char when[32], file[32];
    std::snprintf(when, sizeof when, "2026-11-21T10:%02d:00Z", i);
    std::snprintf(file, sizeof file, "r%d.json", i);
    ASSERT_EQ(
        run({"history", "--db", db, "add", d.write(file, gbench_text(i < 6 ? 1.0 : 1.3, when))})
            .code,
        0);
  }
  const bench::history h(db, {true, 1000});
  const bench::trend t = bench::history_trend(h, {"BM_a", "", 0, 0.05});
  EXPECT_TRUE(t.recent_change);
  EXPECT_EQ(t.chart.at("schema"), "ridgeline.history_trend/v1");
  ASSERT_EQ(t.chart.at("benchmarks").size(), 1u);
  EXPECT_NE(t.table.find("step detected"), std::string::npos) << t.table;
  EXPECT_FALSE(bench::history_trend(h, {"BM_b", "", 0, 0.05}).recent_change);
  try {
    bench::history_trend(h, {"nothing*", "main", 0, 0.05});
    FAIL() << "an unmatched glob was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no benchmark matches 'nothing*' on branch main"),
              std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Serving results: a real load run (`ridgeline load` against the test server, written by load's
// writer) and the committed replays (docs/results/serving/run2), through compare and history.
namespace {

const fs::path k_replays = fs::path(RIDGELINE_SOURCE_DIR) / "docs/results/serving/run2";

// One `ridgeline load` run of 12 requests against the in-process test server.
std::string load_run_file(const fixture_dir& d, const std::string& name) {
  load::test_server_options so;
  so.first_token_seconds = 0.01;
  so.token_interval_seconds = 0.002;
  load::test_server server(so);
  const std::string path = (d.path / name).string();
  const result r = run({"load", "--url", server.url(), "--model", "test", "--generator",
                        "requests=12,rate=50,prompt=fixed:6,output=fixed:8,seed=1", "-o", path,
                        "--no-progress"});
  EXPECT_EQ(r.code, 0) << r.err;
  return path;
}

}  // namespace

TEST(CompareCli, ServingResultsAndThePercentileGate) {
  fixture_dir d;
  const std::string load_file = load_run_file(d, "load.json");
  const json doc = json::parse(std::ifstream(load_file));
  ASSERT_EQ(doc["rows"].size(), 1u);
  const std::string label = doc["rows"][0]["capacity"];
  const std::string replay = (k_replays / "prefix_warm.json.gz").string();

  // A load run against itself: names from its row label, percentiles printed, nothing changed.
  const std::string js = (d.path / "cmp.json").string();
  auto r = run({"compare", load_file, load_file, "--percentile-thresholds", "p50=5%,p90=5%,p99=10%",
                "--json-output", js});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("serving/" + label + "/ttft"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("percentiles over requests"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("percentile gate (p50 5.0%, p90 5.0%, p99 10.0%): passed"),
            std::string::npos)
      << r.out;
  const json cmp = json::parse(std::ifstream(js));
  EXPECT_EQ(cmp["percentile_gate"]["passed"], true);
  for (const auto& row : cmp["rows"]) {
    if (row["name"] == "serving/" + label + "/seconds_per_output_token") continue;
    ASSERT_EQ(row["percentiles"].size(), 3u) << row.dump();
    EXPECT_EQ(row["percentiles"][2]["change"], 0.0);
  }

  // The committed H100 replay against the load run: one row each, paired by the automatic rule;
  // the load client's missing GPU is reported, not enforced. The workloads differ, so a 5% gate
  // fails: exit 1 with one line naming what broke it.
  r = run({"compare", replay, load_file, "--percentile-thresholds", "p50=5%"});
  EXPECT_EQ(r.code, cli::failure) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("percentile gate failed: serving/engine pool/"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("serving row '" + label + "' of NEW compared with row 'engine pool'"),
            std::string::npos)
      << r.out;
  // Pairing by label only: the two share no name.
  r = run({"compare", replay, load_file, "--pair-rows", "label"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("no benchmark appears in both"), std::string::npos) << r.err;
}

TEST(CompareCli, BadServingInputsAreOneLineErrors) {
  fixture_dir d;
  const std::string replay = (k_replays / "prefix_warm.json.gz").string();
  json doc = json::parse(read_text_file(replay));
  doc["rows"][0]["measured"]["requests"].erase("e2e_seconds");
  const auto broken = d.write("broken.json", doc.dump());
  auto r = run({"compare", replay, broken});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(broken + ": rows[0].measured.requests.e2e_seconds: missing (schema "
                                "ridgeline.kv/v1)"),
            std::string::npos)
      << r.err;
  r = run({"history", "add", "--db", (d.path / "h.db").string(), broken});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(d.path / "h.db"));
  const auto base = d.write("base.json", gbench_text(1.0));
  for (const std::string bad : {"p50", "p50=5%,p50=6%", "q50=5%", "p100=5%", "p50=-1"}) {
    r = run({"compare", replay, replay, "--percentile-thresholds", bad});
    EXPECT_EQ(r.code, cli::bad_input) << bad;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("--percentile-thresholds"), std::string::npos) << r.err;
  }
  r = run({"compare", base, base, "--percentile-thresholds", "p99=10%"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_NE(r.err.find("need per-request samples"), std::string::npos) << r.err;
  r = run({"compare", replay, replay, "--pair-rows", "name"});
  EXPECT_EQ(r.code, cli::bad_input);
  EXPECT_EQ(lines(r.err), 1) << r.err;
}

TEST(HistoryCli, ServingResultsAreAddedUnderTheirNames) {
  fixture_dir d;
  const std::string db = (d.path / "h.db").string();
  const std::string load_file = load_run_file(d, "load.json");
  for (const char* f : {"prefix_cold.json.gz", "prefix_warm.json.gz"}) {
    const auto r = run({"history", "--db", db, "add", (k_replays / f).string()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("(4 benchmarks"), std::string::npos) << r.out;
  }
  ASSERT_EQ(run({"history", "--db", db, "add", load_file}).code, 0);
  auto r = run({"history", "show", "--db", db, "--json", "--benchmark", "serving/engine pool/*"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["benchmarks"].size(), 4u);
  EXPECT_EQ(j["benchmarks"][3]["name"], "serving/engine pool/ttft");
  ASSERT_EQ(j["benchmarks"][3]["points"].size(), 2u);
  // The stored median of the warm run (run 2) is the median of its per-request TTFTs.
  const auto warm =
      bench::load_results(k_replays / "prefix_warm.json.gz", bench::time_metric::automatic);
  const json* point = nullptr;
  for (const auto& p : j["benchmarks"][3]["points"]) {
    if (p["run_id"] == 2) point = &p;
  }
  ASSERT_NE(point, nullptr);
  EXPECT_DOUBLE_EQ((*point)["median_seconds"].get<double>(),
                   bench::median(warm.benchmarks.at("serving/engine pool/ttft").seconds));
  EXPECT_EQ((*point)["count"], warm.benchmarks.at("serving/engine pool/ttft").seconds.size());
  // The load run is under its own row label (history does not pair rows).
  const json doc = json::parse(std::ifstream(load_file));
  const std::string label = doc["rows"][0]["capacity"];
  r = run({"history", "show", "--db", db, "--json", "--benchmark", "serving/" + label + "/tpot"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["benchmarks"][0]["points"].size(), 1u);
}
